//! A feed adapter's publishing loop, reusable and tested (tests/api/example_adapter.rs).
//!
//! Batches carry increasing `seq` numbers and stay queued until the server acks them;
//! one socket carries every batch while it lives. After any disconnect the adapter reconnects with exponential backoff and full
//! jitter and re-sends every unacknowledged batch in order: ticks the server already
//! applied come back as `duplicates`, so a retry never counts volume twice.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Reconnect delays: 200 ms doubling up to 10 s, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What a run achieved, as the server acknowledged it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Batches the server refused whole (an `error` reply instead of an `ack`).
    pub refused_batches: u64,
    pub connections: u64,
}

pub struct Publisher {
    url: String,
    key: String,
    /// The next seq to assign. Start it above anything a previous run used (the server
    /// remembers the highest seq per key): the examples start from the clock.
    next_seq: u64,
    next_req_id: u64,
    /// Batches sent (or to be sent) and not yet acknowledged: (req_id, message text).
    unacked: VecDeque<(u64, String)>,
    /// The open socket, kept across batches, and how many of `unacked` it carried.
    socket: Option<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    sent: usize,
    pub totals: Totals,
}

impl Publisher {
    pub fn new(url: impl Into<String>, key: impl Into<String>, first_seq: u64) -> Publisher {
        Publisher {
            url: url.into(),
            key: key.into(),
            next_seq: first_seq,
            next_req_id: 1,
            unacked: VecDeque::new(),
            socket: None,
            sent: 0,
            totals: Totals::default(),
        }
    }

    /// Queues one batch; each tick gets the next seq.
    pub fn enqueue(&mut self, ticks: Vec<Value>) {
        let ticks: Vec<Value> = ticks
            .into_iter()
            .map(|mut tick| {
                tick["seq"] = json!(self.next_seq);
                self.next_seq += 1;
                tick
            })
            .collect();
        let req_id = self.next_req_id;
        self.next_req_id += 1;
        let text = json!({"op":"publish","req_id":req_id,"ticks":ticks}).to_string();
        self.unacked.push_back((req_id, text));
    }

    pub fn pending(&self) -> usize {
        self.unacked.len()
    }

    /// Delivers every queued batch over the open socket (connecting when there is
    /// none), reconnecting as often as needed, until all are acknowledged or
    /// `give_up_after` passes without progress.
    pub async fn flush(&mut self, give_up_after: Duration) -> Result<(), String> {
        let mut attempt: u32 = 0;
        let mut last_progress = tokio::time::Instant::now();
        while !self.unacked.is_empty() {
            if last_progress.elapsed() > give_up_after {
                return Err(format!(
                    "{} batches still unacknowledged",
                    self.unacked.len()
                ));
            }
            match self.deliver().await {
                Ok(()) => {
                    last_progress = tokio::time::Instant::now();
                    attempt = 0;
                }
                Err(e) => {
                    // The socket is unusable: drop it; everything unacked is re-sent on
                    // the next connection.
                    self.socket = None;
                    self.sent = 0;
                    let delay = backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    eprintln!("publisher: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        Ok(())
    }

    /// Sends what this socket has not carried yet and reads acks until none is owed.
    async fn deliver(&mut self) -> Result<(), String> {
        if self.socket.is_none() {
            let mut request = self
                .url
                .as_str()
                .into_client_request()
                .map_err(|e| e.to_string())?;
            let auth = format!("Bearer {}", self.key)
                .parse()
                .map_err(|_| "bad key".to_string())?;
            request.headers_mut().insert("Authorization", auth);
            let (socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            self.socket = Some(socket);
            self.sent = 0;
            self.totals.connections += 1;
        }
        let socket = self.socket.as_mut().expect("connected above");
        for (_, text) in self.unacked.iter().skip(self.sent) {
            socket
                .send(Message::Text(text.clone()))
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        self.sent = self.unacked.len();
        while !self.unacked.is_empty() {
            let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .map_err(|_| "no ack within 10 s".to_string())?;
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(reason))) => {
                    return Err(format!("closed by server: {reason:?}"))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("connection ended".into()),
            };
            let reply: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let req_id = reply["req_id"].as_u64();
            if reply["type"] == "ack" {
                self.totals.accepted += reply["accepted"].as_u64().unwrap_or(0);
                self.totals.duplicates += reply["duplicates"].as_u64().unwrap_or(0);
                self.totals.rejected += reply["rejected"].as_array().map_or(0, |r| r.len() as u64);
            } else {
                // The server refused the batch as a whole (malformed or over the batch
                // limit): sending it again would be refused again, so it is dropped.
                eprintln!("publisher: batch {req_id:?} refused: {reply}");
                self.totals.refused_batches += 1;
            }
            let before = self.unacked.len();
            self.unacked.retain(|(id, _)| Some(*id) != req_id);
            self.sent -= before - self.unacked.len();
        }
        Ok(())
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base * 2^attempt)].
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(rand::random::<f64>())
}
