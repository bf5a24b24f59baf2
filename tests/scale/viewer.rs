//! A dashboard as the tests see it: connects (through nginx), subscribes, merges
//! snapshots and updates into its view, and reconnects when its instance goes away,
//! as `frontend/ticker-client.js` does.

use std::collections::BTreeMap;

#[path = "../common/merge.rs"]
mod merge;
use merge::merge;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Viewer {
    url: String,
    symbols: Vec<String>,
    socket: Option<Socket>,
    /// The session id from the current connection's welcome.
    pub session: String,
    pub view: BTreeMap<String, Value>,
    pub reconnects: u32,
}

impl Viewer {
    pub async fn connect(url: &str, symbols: &[&str]) -> Viewer {
        let mut viewer = Viewer {
            url: url.to_owned(),
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            socket: None,
            session: String::new(),
            view: BTreeMap::new(),
            reconnects: 0,
        };
        assert!(viewer.try_connect().await, "viewer connects to {url}");
        viewer
    }

    /// Connects, reads the welcome, subscribes and merges the snapshot.
    async fn try_connect(&mut self) -> bool {
        // Like a browser on a page served by the same host: send its Origin, so the
        // server's origin check sees what a proxy forwards as Host.
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.url.as_str().into_client_request().unwrap();
        let authority = self
            .url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap();
        request
            .headers_mut()
            .insert("Origin", format!("http://{authority}").parse().unwrap());
        let Ok(Ok((mut socket, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(request),
        )
        .await
        else {
            return false;
        };
        let Ok(Some(Ok(Message::Text(welcome)))) =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await
        else {
            return false;
        };
        let welcome: Value = serde_json::from_str(&welcome).unwrap();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        self.session = welcome["session"].as_str().unwrap_or("").to_owned();
        let subscribe = json!({"op": "subscribe", "symbols": self.symbols, "req_id": 1});
        if socket
            .send(Message::Text(subscribe.to_string()))
            .await
            .is_err()
        {
            return false;
        }
        self.socket = Some(socket);
        // The snapshot replaces what we had: the baseline restarts on a new connection.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.read_one().await {
                Some(message) if message["type"] == "snapshot" => return true,
                Some(_) => continue,
                None => return false,
            }
        }
        false
    }

    /// Reads one message and merges it; `None` when the connection is gone,
    /// `Some(Null)` when nothing arrived for a second.
    async fn read_one(&mut self) -> Option<Value> {
        let socket = self.socket.as_mut()?;
        loop {
            let Ok(frame) = tokio::time::timeout(Duration::from_secs(1), socket.next()).await
            else {
                return Some(Value::Null);
            };
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    merge(&mut self.view, &message);
                    return Some(message);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    self.socket = None;
                    return None;
                }
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Reads and merges until `done(view)` holds, reconnecting (with a short backoff)
    /// whenever the connection drops. Panics after `within`.
    pub async fn until(
        &mut self,
        within: Duration,
        what: &str,
        mut done: impl FnMut(&BTreeMap<String, Value>) -> bool,
    ) {
        let deadline = Instant::now() + within;
        let mut backoff = Duration::from_millis(50);
        while !done(&self.view) {
            assert!(
                Instant::now() < deadline,
                "viewer never saw {what}; view: {:?}",
                self.view
            );
            if self.socket.is_none() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
                if self.try_connect().await {
                    self.reconnects += 1;
                }
                continue;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), self.read_one()).await;
        }
    }

    /// Waits until the viewer's quote of `symbol` equals `expected` field by field.
    pub async fn converge(&mut self, symbol: &str, expected: &Value, within: Duration) {
        let expected = expected.clone();
        self.until(within, &format!("{symbol} == {expected}"), |view| {
            view.get(symbol) == Some(&expected)
        })
        .await;
    }

    pub fn is_connected(&self) -> bool {
        self.socket.is_some()
    }
}
