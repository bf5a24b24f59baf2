//! Server-to-client frame encoding (RFC 6455 §5.2) and a look at a client frame's
//! declared length. Server frames are never masked and never fragmented here, so the
//! header is 2, 4 or 10 bytes and the payload follows as is.

use actix_http::ws::{CloseReason, OpCode};

/// Appends one final (FIN) frame of `op` carrying `payload` to `out`.
pub fn write(op: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let opcode: u8 = match op {
        OpCode::Continue => 0x0,
        OpCode::Text => 0x1,
        OpCode::Binary => 0x2,
        OpCode::Close => 0x8,
        OpCode::Ping => 0x9,
        OpCode::Pong => 0xA,
        OpCode::Bad => unreachable!("we never send a bad opcode"),
    };
    out.reserve(10 + payload.len());
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// The payload of a close frame: the code, then as much of the description as fits
/// in a control frame (125 bytes in all), cut at a character boundary.
pub fn close_payload(reason: &CloseReason, out: &mut Vec<u8>) {
    out.extend_from_slice(&u16::from(reason.code).to_be_bytes());
    if let Some(description) = &reason.description {
        let mut end = description.len().min(123);
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        out.extend_from_slice(&description.as_bytes()[..end]);
    }
}

/// The payload length a client frame's header declares, once enough of the header is
/// buffered to tell. Lets the reader refuse an oversized frame before buffering it.
pub fn declared_len(buf: &[u8]) -> Option<u64> {
    let short = *buf.get(1)? & 0x7F;
    match short {
        126 => Some(u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]))),
        127 => Some(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => Some(u64::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::close_reason as reason;
    use actix_codec::Decoder;
    use actix_http::ws::{CloseCode, Codec, Frame};
    use actix_web::web::BytesMut;

    /// Decodes `bytes` as a client would (unmasked server frames).
    fn decode(bytes: &[u8]) -> Frame {
        let mut buf = BytesMut::from(bytes);
        let frame = Codec::new()
            .client_mode()
            .max_size(1 << 20)
            .decode(&mut buf)
            .expect("valid frame")
            .expect("complete frame");
        assert!(buf.is_empty(), "one frame, nothing left over");
        frame
    }

    #[test]
    fn every_length_class_round_trips_through_a_client_decoder() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = Vec::new();
            write(OpCode::Text, &payload, &mut out);
            let header = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + len, "length {len}");
            match decode(&out) {
                Frame::Text(text) => assert_eq!(&text[..], &payload[..]),
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    #[test]
    fn binary_ping_pong_and_close_frames_decode_as_sent() {
        let mut out = Vec::new();
        write(OpCode::Binary, &[0, 0, 0xFF, 0xFF], &mut out);
        assert!(matches!(decode(&out), Frame::Binary(b) if b[..] == [0, 0, 0xFF, 0xFF]));
        out.clear();
        write(OpCode::Ping, b"", &mut out);
        assert!(matches!(decode(&out), Frame::Ping(b) if b.is_empty()));
        out.clear();
        write(OpCode::Pong, b"x", &mut out);
        assert!(matches!(decode(&out), Frame::Pong(b) if &b[..] == b"x"));
        out.clear();
        let mut payload = Vec::new();
        close_payload(&reason(CloseCode::Other(4008), "slow"), &mut payload);
        write(OpCode::Close, &payload, &mut out);
        match decode(&out) {
            Frame::Close(Some(r)) => {
                assert_eq!(u16::from(r.code), 4008);
                assert_eq!(r.description.as_deref(), Some("slow"));
            }
            other => panic!("expected close, got {other:?}"),
        }
    }

    #[test]
    fn a_long_close_description_is_cut_to_fit_a_control_frame_at_a_char_boundary() {
        let mut payload = Vec::new();
        close_payload(&reason(CloseCode::Away, "é".repeat(100)), &mut payload);
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert_eq!(
            payload.len(),
            2 + 122,
            "61 two-byte characters fit in 123 bytes"
        );
    }

    #[test]
    fn declared_len_reads_each_header_form_and_waits_for_enough_bytes() {
        assert_eq!(declared_len(&[0x81]), None);
        assert_eq!(declared_len(&[0x81, 0x80 | 5]), Some(5));
        assert_eq!(declared_len(&[0x81, 0x80 | 126, 0x01]), None);
        assert_eq!(declared_len(&[0x81, 0x80 | 126, 0x01, 0x00]), Some(256));
        assert_eq!(declared_len(&[0x82, 0x80 | 127, 0, 0, 0, 1]), None);
        assert_eq!(
            declared_len(&[0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0]),
            Some(1 << 32)
        );
    }
}
