//! WebSocket frames (RFC 6455 §5.2): server frames written, client frames read.
//!
//! Server frames are never masked and never fragmented here, so their header is 2, 4
//! or 10 bytes and the payload follows as is. Client frames are checked from their
//! header before their payload is buffered: an oversized frame is refused by its
//! declared length, and every rule of §5 that a header can break (reserved bits
//! without an extension, reserved opcodes, fragmented or long control frames, a
//! missing mask) is a protocol error (1002) answered without reading further.

use actix_http::ws::{CloseCode, CloseReason, OpCode};
use actix_web::web::BytesMut;

/// Appends one final (FIN) frame of `op` carrying `payload` to `out`.
pub fn write(op: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    write_with(op, false, payload, out);
}

/// Appends one final frame of a compressed message (RSV1 set, RFC 7692 §6).
pub fn write_compressed(op: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    write_with(op, true, payload, out);
}

fn write_with(op: OpCode, rsv1: bool, payload: &[u8], out: &mut Vec<u8>) {
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
    out.push(0x80 | if rsv1 { 0x40 } else { 0 } | opcode);
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

/// A client frame, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1: set on the first frame of a compressed message (RFC 7692), when the
    /// connection negotiated compression.
    pub rsv1: bool,
    pub kind: Kind,
    pub payload: BytesMut,
}

/// A client frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Kind {
    fn from_opcode(opcode: u8) -> Option<Kind> {
        Some(match opcode {
            0x0 => Kind::Continuation,
            0x1 => Kind::Text,
            0x2 => Kind::Binary,
            0x8 => Kind::Close,
            0x9 => Kind::Ping,
            0xA => Kind::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        matches!(self, Kind::Close | Kind::Ping | Kind::Pong)
    }
}

/// A client frame that breaks the protocol: the close code and reason to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: CloseCode,
    pub reason: &'static str,
}

fn protocol(reason: &'static str) -> FrameError {
    FrameError {
        code: CloseCode::Protocol,
        reason,
    }
}

/// What a connection accepts in a client frame's header.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest payload of a plain frame.
    pub max_payload: usize,
    /// Largest payload of a compressed frame (RSV1 set), when compression was
    /// negotiated; `None`: RSV1 is a protocol error.
    pub max_compressed: Option<usize>,
}

/// Takes one complete client frame off the front of `buf`; `Ok(None)` until the whole
/// frame is buffered. The payload limit is checked against the declared length,
/// before the payload is read.
pub fn decode(buf: &mut BytesMut, limits: Limits) -> Result<Option<Frame>, FrameError> {
    let (Some(&first), Some(&second)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let rsv1 = first & 0x40 != 0;
    if first & 0x30 != 0 {
        return Err(protocol("reserved bits set without an extension"));
    }
    let kind = Kind::from_opcode(first & 0x0F).ok_or_else(|| protocol("reserved opcode"))?;
    // RFC 7692 §6: RSV1 marks the first frame of a compressed data message only.
    if rsv1 && (limits.max_compressed.is_none() || kind.is_control() || kind == Kind::Continuation)
    {
        return Err(protocol("reserved bits set without an extension"));
    }
    if kind.is_control() && !fin {
        return Err(protocol("fragmented control frame"));
    }
    if second & 0x80 == 0 {
        return Err(protocol("client frames must be masked"));
    }
    let (len, header) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if kind.is_control() && len > 125 {
        return Err(protocol("control frame longer than 125 bytes"));
    }
    let max_payload = match (rsv1, limits.max_compressed) {
        (true, Some(max)) => max,
        _ => limits.max_payload,
    };
    if len > max_payload as u64 {
        return Err(FrameError {
            code: CloseCode::Size,
            reason: "frame larger than the message limit",
        });
    }
    let len = len as usize;
    let total = header + 4 + len;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mask: [u8; 4] = buf[header..header + 4].try_into().expect("4 bytes");
    let mut frame = buf.split_to(total);
    let mut payload = frame.split_off(header + 4);
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
    Ok(Some(Frame {
        fin,
        rsv1,
        kind,
        payload,
    }))
}

/// A close frame's payload as a reason: empty, or a valid code (RFC 6455 §7.4) and a
/// UTF-8 description.
pub fn parse_close(payload: &[u8]) -> Result<Option<CloseReason>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(protocol("close frame with a one-byte payload")),
        [high, low, rest @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(protocol("invalid close code"));
            }
            let description = std::str::from_utf8(rest).map_err(|_| FrameError {
                code: CloseCode::Invalid,
                reason: "close reason is not UTF-8",
            })?;
            Ok(Some(CloseReason {
                code: CloseCode::from(code),
                description: (!description.is_empty()).then(|| description.to_owned()),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: CloseCode, description: impl Into<String>) -> CloseReason {
        CloseReason {
            code,
            description: Some(description.into()),
        }
    }
    use actix_codec::Decoder;
    use actix_http::ws::{CloseCode, Codec, Frame};

    /// Decodes `bytes` as a client would (unmasked server frames).
    fn client_decode(bytes: &[u8]) -> Frame {
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
            match client_decode(&out) {
                Frame::Text(text) => assert_eq!(&text[..], &payload[..]),
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    #[test]
    fn binary_ping_pong_and_close_frames_decode_as_sent() {
        let mut out = Vec::new();
        write(OpCode::Binary, &[0, 0, 0xFF, 0xFF], &mut out);
        assert!(matches!(client_decode(&out), Frame::Binary(b) if b[..] == [0, 0, 0xFF, 0xFF]));
        out.clear();
        write(OpCode::Ping, b"", &mut out);
        assert!(matches!(client_decode(&out), Frame::Ping(b) if b.is_empty()));
        out.clear();
        write(OpCode::Pong, b"x", &mut out);
        assert!(matches!(client_decode(&out), Frame::Pong(b) if &b[..] == b"x"));
        out.clear();
        let mut payload = Vec::new();
        close_payload(&reason(CloseCode::Other(4008), "slow"), &mut payload);
        write(OpCode::Close, &payload, &mut out);
        match client_decode(&out) {
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

    /// A masked client frame, as a client library would write it.
    fn client_frame(first: u8, payload: &[u8]) -> BytesMut {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=65_535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        BytesMut::from(&out[..])
    }

    fn plain(max_payload: usize) -> Limits {
        Limits {
            max_payload,
            max_compressed: None,
        }
    }

    #[test]
    fn masked_frames_of_every_length_class_decode_whole_and_only_when_complete() {
        for len in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = client_frame(0x82, &payload);
            for cut in [1, 2, bytes.len() - 1] {
                let mut partial = BytesMut::from(&bytes[..cut]);
                assert_eq!(
                    decode(&mut partial, plain(1 << 20)),
                    Ok(None),
                    "{len}/{cut}"
                );
            }
            let mut buf = bytes.clone();
            buf.extend_from_slice(b"next");
            let frame = decode(&mut buf, plain(1 << 20)).unwrap().unwrap();
            assert_eq!((frame.fin, frame.kind), (true, Kind::Binary));
            assert_eq!(&frame.payload[..], &payload[..]);
            assert_eq!(&buf[..], b"next", "the rest stays buffered");
        }
    }

    #[test]
    fn header_faults_are_protocol_errors_before_any_payload_arrives() {
        let cases: [(&[u8], CloseCode); 8] = [
            (&[0xC1, 0x80], CloseCode::Protocol), // RSV1 without an extension
            (&[0xA1, 0x80], CloseCode::Protocol), // RSV2
            (&[0x91, 0x80], CloseCode::Protocol), // RSV3
            (&[0x83, 0x80], CloseCode::Protocol), // reserved data opcode
            (&[0x8B, 0x80], CloseCode::Protocol), // reserved control opcode
            (&[0x09, 0x80], CloseCode::Protocol), // fragmented ping
            (&[0x89, 0x80 | 126, 0, 126], CloseCode::Protocol), // long ping
            (&[0x81, 0x05], CloseCode::Protocol), // unmasked
        ];
        for (bytes, code) in cases {
            let mut buf = BytesMut::from(bytes);
            let error = decode(&mut buf, plain(4096)).expect_err("refused");
            assert_eq!(error.code, code, "{bytes:02x?}: {}", error.reason);
        }
        let mut huge = BytesMut::from(&[0x81, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0][..]);
        assert_eq!(
            decode(&mut huge, plain(4096)).unwrap_err().code,
            CloseCode::Size
        );
        // RSV1 on a data frame is fine once compression is negotiated, never on control
        // frames or continuations.
        let compressed_ok = Limits {
            max_payload: 4096,
            max_compressed: Some(5000),
        };
        let mut compressed = client_frame(0xC1, b"x");
        assert!(
            decode(&mut compressed, compressed_ok)
                .unwrap()
                .unwrap()
                .rsv1
        );
        let mut ping = client_frame(0xC9, b"");
        assert!(decode(&mut ping, compressed_ok).is_err());
        let mut continuation = client_frame(0xC0, b"x");
        assert!(decode(&mut continuation, compressed_ok).is_err());
        let mut big = client_frame(0xC1, &[0; 4500]);
        assert!(decode(&mut big, compressed_ok).unwrap().is_some());
        let mut too_big = client_frame(0x81, &[0; 4500]);
        assert_eq!(
            decode(&mut too_big, compressed_ok).unwrap_err().code,
            CloseCode::Size
        );
    }

    #[test]
    fn close_payloads_are_validated() {
        assert_eq!(parse_close(&[]), Ok(None));
        assert!(parse_close(&[3]).is_err());
        assert!(
            parse_close(&1005u16.to_be_bytes()).is_err(),
            "1005 is never sent"
        );
        assert!(parse_close(&999u16.to_be_bytes()).is_err());
        let mut invalid = 1000u16.to_be_bytes().to_vec();
        invalid.push(0xFF);
        assert_eq!(parse_close(&invalid).unwrap_err().code, CloseCode::Invalid);
        let mut ok = 4001u16.to_be_bytes().to_vec();
        ok.extend_from_slice(b"bye");
        let reason = parse_close(&ok).unwrap().unwrap();
        assert_eq!(u16::from(reason.code), 4001);
        assert_eq!(reason.description.as_deref(), Some("bye"));
    }
}
