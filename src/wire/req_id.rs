//! Request ids as clients send them, echoed exactly in replies and errors.

use serde::Serialize;
use serde_json::value::RawValue;

/// An echoed request id: any JSON number or string the client chose, kept as the exact
/// text it sent, so `18446744073709551617` or `1e2` comes back as written rather than
/// as the nearest `f64`.
#[derive(Debug, Clone)]
pub struct ReqId(Box<RawValue>);

impl ReqId {
    /// `Some` for a JSON number or string; anything else is not a request id.
    pub fn from_raw(raw: &RawValue) -> Option<ReqId> {
        let text = raw.get();
        text.starts_with(|c: char| c == '"' || c == '-' || c.is_ascii_digit())
            .then(|| ReqId(raw.to_owned()))
    }

    /// The id as JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for ReqId {
    fn eq(&self, other: &ReqId) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Serialize for ReqId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// The raw `req_id` of a message, every other field skipped unread.
#[derive(serde::Deserialize)]
struct OnlyReqId<'a> {
    #[serde(borrow)]
    req_id: Option<&'a RawValue>,
}

/// Only the `req_id` of a message (to echo it when the message itself is refused
/// unread, e.g. over the rate limit): a shallow parse that skips every other field.
pub fn peek_req_id(text: &str) -> Option<ReqId> {
    ReqId::from_raw(serde_json::from_str::<OnlyReqId>(text).ok()?.req_id?)
}
