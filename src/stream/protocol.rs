//! The viewer wire protocol: client requests in, server messages out (contract §2).
//!
//! Client messages are rare, so they are parsed through `serde_json::Value` for precise
//! error messages (and to echo `req_id` even when the rest is malformed). Server data
//! messages (`snapshot`, `update`, `heartbeat`) are written by hand into the worker's
//! scratch buffer by the viewer; the rare control messages go through serde.

use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::wire::{peek_req_id, ErrorCode, ReqId};

/// A request from a viewer.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Subscribe { symbols: Vec<String> },
    Unsubscribe { symbols: Vec<String> },
    Snapshot,
    Set { max_hz: f64 },
    Ping,
}

/// A request that could not be carried out (wholly or in part). Sent as an `error`
/// message; the connection stays open.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    pub req_id: Option<ReqId>,
    pub code: ErrorCode,
    pub message: String,
    pub symbols: Vec<String>,
}

impl RequestError {
    pub fn new(req_id: Option<ReqId>, code: ErrorCode, message: impl Into<String>) -> Self {
        RequestError {
            req_id,
            code,
            message: message.into(),
            symbols: Vec::new(),
        }
    }

    pub fn with_symbols(mut self, symbols: Vec<String>) -> Self {
        self.symbols = symbols;
        self
    }
}

/// Parses one text frame into `(req_id, request)`.
pub fn parse_request(text: &str) -> Result<(Option<ReqId>, Request), RequestError> {
    let bad = |req_id: Option<ReqId>, message: String| {
        RequestError::new(req_id, ErrorCode::BadRequest, message)
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad(None, format!("message is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(bad(None, "message must be a JSON object".into()));
    };
    let req_id = match object.get("req_id") {
        None => None,
        Some(Value::Number(_) | Value::String(_)) => peek_req_id(text),
        Some(_) => return Err(bad(None, "req_id must be a number or a string".into())),
    };
    let op = match object.get("op") {
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err(bad(req_id, "op must be a string".into())),
        None => return Err(bad(req_id, "missing field `op`".into())),
    };
    let allowed: &[&str] = match op {
        "subscribe" | "unsubscribe" => &["op", "req_id", "symbols"],
        "set" => &["op", "req_id", "max_hz"],
        "snapshot" | "ping" => &["op", "req_id"],
        _ => {
            return Err(RequestError::new(
                req_id,
                ErrorCode::UnknownOp,
                format!(
                    "unknown op {op:?}; expected subscribe, unsubscribe, snapshot, set or ping"
                ),
            ))
        }
    };
    if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(
            req_id,
            format!("unknown field `{unknown}` for op {op:?}"),
        ));
    }
    let request = match op {
        "subscribe" | "unsubscribe" => {
            let symbols = symbol_list(&object).map_err(|m| bad(req_id.clone(), m))?;
            if op == "subscribe" {
                Request::Subscribe { symbols }
            } else {
                Request::Unsubscribe { symbols }
            }
        }
        "set" => {
            let max_hz = match object.get("max_hz") {
                Some(Value::Number(n)) => n.as_f64().filter(|hz| hz.is_finite() && *hz > 0.0),
                None => return Err(bad(req_id, "missing field `max_hz`".into())),
                Some(_) => None,
            }
            .ok_or_else(|| bad(req_id.clone(), "max_hz must be a positive number".into()))?;
            Request::Set { max_hz }
        }
        "snapshot" => Request::Snapshot,
        _ => Request::Ping,
    };
    Ok((req_id, request))
}

fn symbol_list(object: &Map<String, Value>) -> Result<Vec<String>, String> {
    match object.get("symbols") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err("symbols must be an array of strings".to_string()),
            })
            .collect(),
        Some(_) => Err("symbols must be an array of strings".into()),
        None => Err("missing field `symbols`".into()),
    }
}

/// A frequency printed the way people write it: `10`, not `10.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hz(pub f64);

impl Serialize for Hz {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

/// Control messages (everything but the data messages written by hand).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage<'a> {
    Welcome {
        session: &'a str,
        compression: &'a str,
        max_hz: Hz,
        heartbeat_ms: u64,
        t: i64,
    },
    Subscriptions {
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<&'a ReqId>,
        symbols: &'a [&'a str],
    },
    Settings {
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<&'a ReqId>,
        max_hz: Hz,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<&'a ReqId>,
        t: i64,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<&'a ReqId>,
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        symbols: &'a [String],
    },
}

impl ControlMessage<'_> {
    /// The message's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlMessage::Welcome { .. } => "welcome",
            ControlMessage::Subscriptions { .. } => "subscriptions",
            ControlMessage::Settings { .. } => "settings",
            ControlMessage::Pong { .. } => "pong",
            ControlMessage::Error { .. } => "error",
        }
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self).expect("control messages always serialize");
    }
}

impl<'a> From<&'a RequestError> for ControlMessage<'a> {
    fn from(e: &'a RequestError) -> Self {
        ControlMessage::Error {
            req_id: e.req_id.as_ref(),
            code: e.code,
            message: &e.message,
            symbols: &e.symbols,
        }
    }
}

/// The data messages' envelope: `{"type":"update","seq":8,"quotes":[` … `]}`, with the
/// request's `req_id` when the message answers one.
pub fn begin_quotes_message(kind: &str, seq: u64, req_id: Option<&ReqId>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    if let Some(req_id) = req_id {
        out.extend_from_slice(b"\",\"req_id\":");
        out.extend_from_slice(req_id.as_json().as_bytes());
        out.extend_from_slice(b",\"seq\":");
    } else {
        out.extend_from_slice(b"\",\"seq\":");
    }
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"quotes\":[");
}

pub fn end_quotes_message(out: &mut Vec<u8>) {
    out.extend_from_slice(b"]}");
}

pub fn write_heartbeat(seq: u64, t: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"heartbeat\",\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"t\":");
    out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes());
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn id(text: &str) -> ReqId {
        ReqId::from_raw(&RawValue::from_string(text.into()).unwrap()).unwrap()
    }

    #[test]
    fn req_ids_are_echoed_as_the_exact_text_sent() {
        for text in ["18446744073709551617", "1e2", "-0", "1.50", r#""x\"y""#] {
            let message = format!(r#"{{"op":"ping","req_id":{text}}}"#);
            let (req_id, _) = parse_request(&message).unwrap();
            assert_eq!(req_id.as_ref().map(ReqId::as_json), Some(text), "{message}");
            let mut out = Vec::new();
            ControlMessage::Pong {
                req_id: req_id.as_ref(),
                t: 1,
            }
            .write_to(&mut out);
            let expected = format!(r#"{{"type":"pong","req_id":{text},"t":1}}"#);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        assert_eq!(peek_req_id(r#"{"req_id":[1]}"#), None);
        assert_eq!(peek_req_id(r#"{"req_id":null}"#), None);
        assert_eq!(
            peek_req_id(r#"{"op":1, "req_id":7, "x":{"req_id":8}}"#),
            Some(id("7"))
        );
    }

    fn err(text: &str) -> RequestError {
        parse_request(text).unwrap_err()
    }

    #[test]
    fn parses_every_op() {
        assert_eq!(
            parse_request(r#"{"op":"subscribe","symbols":["aapl","MSFT"],"req_id":1}"#).unwrap(),
            (
                Some(id("1")),
                Request::Subscribe {
                    symbols: vec!["aapl".into(), "MSFT".into()]
                }
            )
        );
        assert_eq!(
            parse_request(r#"{"op":"unsubscribe","symbols":[]}"#).unwrap(),
            (None, Request::Unsubscribe { symbols: vec![] })
        );
        assert_eq!(
            parse_request(r#"{"op":"snapshot","req_id":"a"}"#).unwrap(),
            (Some(id(r#""a""#)), Request::Snapshot)
        );
        assert_eq!(
            parse_request(r#"{"op":"set","max_hz":2.5}"#).unwrap().1,
            Request::Set { max_hz: 2.5 }
        );
        assert_eq!(parse_request(r#"{"op":"ping"}"#).unwrap().1, Request::Ping);
    }

    #[test]
    fn malformed_messages_are_bad_requests_with_req_id_when_known() {
        for text in [
            "",
            "nope",
            "[1]",
            "1",
            r#"{"op":1}"#,
            r#"{"req_id":[1],"op":"ping"}"#,
        ] {
            assert_eq!(err(text).code, ErrorCode::BadRequest, "{text:?}");
        }
        let e = err(r#"{"op":"ping","req_id":7,"extra":true}"#);
        assert_eq!((e.code, e.req_id), (ErrorCode::BadRequest, Some(id("7"))));
        assert!(e.message.contains("extra"));
        let e = err(r#"{"op":"subscribe","req_id":3,"symbols":"AAPL"}"#);
        assert_eq!((e.code, e.req_id), (ErrorCode::BadRequest, Some(id("3"))));
        assert_eq!(
            err(r#"{"op":"subscribe","symbols":[1]}"#).code,
            ErrorCode::BadRequest
        );
        assert_eq!(err(r#"{"op":"set"}"#).code, ErrorCode::BadRequest);
        for hz in ["0", "-1", "\"2\"", "null"] {
            let text = format!(r#"{{"op":"set","max_hz":{hz}}}"#);
            assert_eq!(err(&text).code, ErrorCode::BadRequest, "{text}");
        }
    }

    #[test]
    fn unknown_op_is_its_own_code() {
        let e = err(r#"{"op":"dance","req_id":9}"#);
        assert_eq!((e.code, e.req_id), (ErrorCode::UnknownOp, Some(id("9"))));
    }

    #[test]
    fn control_messages_match_the_contract() {
        let mut out = Vec::new();
        let req_id = id("4");
        ControlMessage::Settings {
            req_id: Some(&req_id),
            max_hz: Hz(2.0),
        }
        .write_to(&mut out);
        assert_eq!(out, br#"{"type":"settings","req_id":4,"max_hz":2}"#);
        out.clear();
        let e = RequestError::new(None, ErrorCode::UnknownSymbol, "no such symbol")
            .with_symbols(vec!["ZZZZ".into()]);
        ControlMessage::from(&e).write_to(&mut out);
        assert_eq!(
            out,
            br#"{"type":"error","code":"unknown_symbol","message":"no such symbol","symbols":["ZZZZ"]}"#
        );
    }
}
