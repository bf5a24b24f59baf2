//! Client frames, reduced to what a session acts on. Shared by the viewer stream and
//! the ingest socket: fragment reassembly under a size limit, refusal of binary data,
//! and the close code for each protocol fault.

use actix_http::ws::{CloseCode, CloseReason, Item, Message, ProtocolError};
use actix_web::web::Bytes;

/// What a session does with one inbound frame.
#[derive(Debug)]
pub enum Inbound {
    /// A complete text message.
    Text(String),
    /// A WebSocket ping to answer.
    Ping(Bytes),
    /// A pong, a fragment of a message still being assembled, or a no-op.
    Nothing,
    /// The client closed; echo its reason.
    Closed(Option<CloseReason>),
}

/// Why the connection must end because of what the client sent.
#[derive(Debug)]
pub enum Fault {
    /// We close with this code and reason.
    Close(CloseCode, String),
    /// The stream ended without a close frame.
    Gone,
}

/// Reassembles fragmented text messages, up to `limit` bytes.
#[derive(Debug)]
pub struct InboundFrames {
    limit: usize,
    partial: Option<Vec<u8>>,
}

impl InboundFrames {
    pub fn new(limit: usize) -> InboundFrames {
        InboundFrames {
            limit,
            partial: None,
        }
    }

    pub fn accept(
        &mut self,
        frame: Option<Result<Message, ProtocolError>>,
    ) -> Result<Inbound, Fault> {
        let message = match frame {
            None => return Err(Fault::Gone),
            Some(Ok(message)) => message,
            Some(Err(ProtocolError::Overflow)) => return Err(self.too_big()),
            Some(Err(ProtocolError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Fault::Close(
                    CloseCode::Invalid,
                    "text frame is not UTF-8".into(),
                ))
            }
            Some(Err(e)) => return Err(Fault::Close(CloseCode::Protocol, e.to_string())),
        };
        match message {
            Message::Text(text) => Ok(Inbound::Text(text.to_string())),
            Message::Binary(_) | Message::Continuation(Item::FirstBinary(_)) => Err(Fault::Close(
                CloseCode::Unsupported,
                "binary frames are not accepted; send JSON text".into(),
            )),
            Message::Continuation(Item::FirstText(part)) => {
                self.partial = Some(part.to_vec());
                self.check_size()
            }
            Message::Continuation(Item::Continue(part)) => {
                self.partial
                    .as_mut()
                    .ok_or_else(unexpected_continuation)?
                    .extend_from_slice(&part);
                self.check_size()
            }
            Message::Continuation(Item::Last(part)) => {
                let mut buffer = self.partial.take().ok_or_else(unexpected_continuation)?;
                buffer.extend_from_slice(&part);
                if buffer.len() > self.limit {
                    return Err(self.too_big());
                }
                String::from_utf8(buffer).map(Inbound::Text).map_err(|_| {
                    Fault::Close(CloseCode::Invalid, "text message is not UTF-8".into())
                })
            }
            Message::Ping(payload) => Ok(Inbound::Ping(payload)),
            Message::Pong(_) | Message::Nop => Ok(Inbound::Nothing),
            Message::Close(reason) => Ok(Inbound::Closed(reason)),
        }
    }

    fn check_size(&self) -> Result<Inbound, Fault> {
        match &self.partial {
            Some(buffer) if buffer.len() > self.limit => Err(self.too_big()),
            _ => Ok(Inbound::Nothing),
        }
    }

    fn too_big(&self) -> Fault {
        Fault::Close(
            CloseCode::Size,
            format!("message larger than {} bytes", self.limit),
        )
    }
}

/// A continuation with no text message in progress (a refused binary one, or nothing).
fn unexpected_continuation() -> Fault {
    Fault::Close(CloseCode::Protocol, "unexpected continuation frame".into())
}
