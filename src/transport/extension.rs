//! permessage-deflate (RFC 7692): reading a client's offers and choosing one.
//!
//! What we accept and answer:
//! - `server_no_context_takeover`: honoured (each message compressed alone).
//! - `server_max_window_bits=N` (8-15): honoured (back-references at most 2^N bytes)
//!   and echoed, as §7.1.2.1 requires.
//! - `client_max_window_bits` (with or without a value): accepted and not answered;
//!   it only says what the client could do.
//! - `client_no_context_takeover`: always in our answer, offered or not (§7.1.1.2
//!   allows it), so every client message is a DEFLATE stream of its own and one
//!   inflater per worker serves every connection.
//!
//! An offer with an unknown parameter, a repeated one or a bad value is declined
//! (§7.1: the server then tries the next offer, or goes on without compression).

use actix_http::RequestHead;

/// The parameters of a permessage-deflate offer we accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMessageDeflate {
    /// Back-references reach at most 2^this bytes (15 = DEFLATE's own 32 KiB).
    pub server_max_window_bits: u8,
    /// Each server message is compressed without the earlier ones.
    pub server_no_context_takeover: bool,
}

impl PerMessageDeflate {
    /// The `Sec-WebSocket-Extensions` value of our answer.
    pub fn response_header(&self, requested_window_bits: bool) -> String {
        let mut value = String::from("permessage-deflate; client_no_context_takeover");
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if requested_window_bits {
            value.push_str("; server_max_window_bits=");
            value.push_str(&self.server_max_window_bits.to_string());
        }
        value
    }
}

/// The first acceptable permessage-deflate offer of the request, and whether it named
/// `server_max_window_bits` (which the answer must then echo).
pub fn negotiate(head: &RequestHead) -> Option<(PerMessageDeflate, bool)> {
    head.headers
        .get_all("sec-websocket-extensions")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(parse_offer)
}

/// One offer (`name; param; param=value`), if it is an acceptable permessage-deflate.
fn parse_offer(offer: &str) -> Option<(PerMessageDeflate, bool)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut accepted = PerMessageDeflate {
        server_max_window_bits: 15,
        server_no_context_takeover: false,
    };
    let mut seen: Vec<String> = Vec::new();
    let mut window_bits_requested = false;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => accepted.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(bits)) => {
                accepted.server_max_window_bits = window_bits(bits)?;
                window_bits_requested = true;
            }
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) => {
                window_bits(bits)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some((accepted, window_bits_requested))
}

/// A window size of 8 to 15 bits, written as a plain decimal (no sign, no leading 0).
fn window_bits(value: &str) -> Option<u8> {
    let valid =
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && !value.starts_with('0');
    let bits: u8 = value.parse().ok().filter(|_| valid)?;
    (8..=15).contains(&bits).then_some(bits)
}

/// A parameter value as a token, or a quoted string holding one (RFC 6455 §9.1).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('"')),
        None => Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<(PerMessageDeflate, bool)> {
        value.split(',').find_map(parse_offer)
    }

    #[test]
    fn what_browsers_and_libraries_offer_is_accepted() {
        // Chromium and Firefox; Python websockets; Node ws with perMessageDeflate.
        for value in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            "permessage-deflate",
        ] {
            assert!(offer(value).is_some(), "{value}");
        }
        let (deflate, echoed) = offer("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(deflate.server_max_window_bits, 15);
        assert!(!echoed);
        assert_eq!(
            deflate.response_header(echoed),
            "permessage-deflate; client_no_context_takeover"
        );
    }

    #[test]
    fn server_parameters_are_honoured_and_echoed() {
        let (deflate, echoed) =
            offer("permessage-deflate; server_no_context_takeover; server_max_window_bits=\"9\"")
                .unwrap();
        assert_eq!(deflate.server_max_window_bits, 9);
        assert!(deflate.server_no_context_takeover);
        assert_eq!(
            deflate.response_header(echoed),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             server_max_window_bits=9"
        );
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_is_tried() {
        for value in [
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(offer(value), None, "{value}");
        }
        let (deflate, _) = offer(
            "permessage-deflate; server_max_window_bits=99, permessage-deflate; \
             server_max_window_bits=10",
        )
        .unwrap();
        assert_eq!(deflate.server_max_window_bits, 10);
    }
}
