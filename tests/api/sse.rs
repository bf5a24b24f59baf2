//! `GET /sse`: the viewer stream as Server-Sent Events, read over raw TCP (chunked
//! transfer, optionally gzip): the events and their ids, convergence on the REST
//! quotes, the gate, and every way the server ends a response.

use std::collections::BTreeMap;
use std::time::Duration;

use flate2::{Decompress, FlushDecompress};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{merge, spawn_app, spawn_app_with, TestApp, ADMIN_KEY};

/// One event: (name, id, data as JSON).
type SseEvent = (String, Option<u64>, Value);

/// An SSE response read by hand: the head, then chunks, then events.
struct SseClient {
    stream: TcpStream,
    head: String,
    /// Raw bytes not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked (and inflated) body bytes not yet parsed into events.
    text: Vec<u8>,
    gzip: Option<Decompress>,
    gzip_header_left: usize,
    ended: bool,
}

impl SseClient {
    async fn open(app: &TestApp, query: &str, headers: &str) -> SseClient {
        let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        let request = format!("GET /sse{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut client = SseClient {
            stream,
            head: String::new(),
            raw: Vec::new(),
            text: Vec::new(),
            gzip: None,
            gzip_header_left: 0,
            ended: false,
        };
        while !client.raw.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(client.fill().await, "the response head arrives");
        }
        let end = client
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap()
            + 4;
        client.head = String::from_utf8(client.raw[..end].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        client.raw.drain(..end);
        if client.head.contains("content-encoding: gzip") {
            client.gzip = Some(Decompress::new(false));
            client.gzip_header_left = 10;
        }
        client
    }

    fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("the server sends within 10 s")
            .unwrap_or(0);
        self.raw.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Moves complete chunks from `raw` into `text`; false once the last chunk came.
    fn dechunk(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = std::str::from_utf8(&self.raw[..line_end]).unwrap();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            let data = self.raw[line_end + 2..line_end + 2 + size].to_vec();
            self.raw.drain(..line_end + 2 + size + 2);
            if size == 0 {
                self.ended = true;
                return;
            }
            self.accept_body(&data);
        }
    }

    fn accept_body(&mut self, mut data: &[u8]) {
        let Some(inflater) = self.gzip.as_mut() else {
            self.text.extend_from_slice(data);
            return;
        };
        let skip = self.gzip_header_left.min(data.len());
        self.gzip_header_left -= skip;
        data = &data[skip..];
        let mut out = Vec::with_capacity(data.len() * 20 + 1024);
        let before = inflater.total_in();
        inflater
            .decompress_vec(data, &mut out, FlushDecompress::Sync)
            .expect("valid gzip data");
        // Each chunk inflates whole, at once: the server flushes per event (the
        // member's 8-byte trailer, after the final block, is not DEFLATE data).
        let used = (inflater.total_in() - before) as usize;
        assert!(
            used == data.len() || used + 8 == data.len(),
            "flushed per event"
        );
        self.text.extend_from_slice(&out);
    }

    /// The next event, or `None` when the response ended.
    async fn event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.text.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.text[..end].to_vec()).unwrap();
                self.text.drain(..end + 2);
                let (mut name, mut id, mut data) = (String::new(), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else {
                        panic!("unexpected line {line:?}");
                    }
                }
                return Some((name, id, serde_json::from_str(&data).unwrap()));
            }
            if self.ended {
                return None;
            }
            self.dechunk();
            if self.ended || self.text.windows(2).any(|w| w == b"\n\n") {
                continue;
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Events until one named `name`.
    async fn until(&mut self, name: &str) -> SseEvent {
        loop {
            let event = self.event().await.expect("the response is still open");
            if event.0 == name {
                return event;
            }
        }
    }
}

#[actix_web::test]
async fn events_carry_the_ws_messages_with_seq_ids_and_converge_on_rest() {
    let app = spawn_app().await;
    let mut sse = SseClient::open(&app, "?symbols=AAPL,MSFT,ZZZZ", "").await;
    assert_eq!(sse.status(), 200, "{}", sse.head);
    assert!(
        sse.head.contains("content-type: text/event-stream"),
        "{}",
        sse.head
    );
    assert!(sse.head.contains("cache-control: no-cache"));
    assert!(sse.head.contains("x-accel-buffering: no"));
    assert!(!sse.head.contains("content-encoding"));
    let (name, id, welcome) = sse.event().await.unwrap();
    assert_eq!((name.as_str(), id), ("welcome", None));
    assert_eq!(welcome["type"], "welcome");
    let mut view = BTreeMap::new();
    let (name, id, snapshot) = sse.event().await.unwrap();
    assert_eq!((name.as_str(), id), ("snapshot", Some(1)));
    assert_eq!(snapshot["seq"], 1);
    merge(&mut view, &snapshot);
    let (name, _, error) = sse.event().await.unwrap();
    assert_eq!(name, "error");
    assert_eq!(error["code"], "unknown_symbol");
    assert_eq!(error["symbols"], json!(["ZZZZ"]));

    let mut seq = 1;
    for (i, price) in ["190.01", "190.5", "189.999"].iter().enumerate() {
        app.apply(&[app.trade("AAPL", price, 7, 1_700_000_000_000 + i as i64)]);
        let (name, id, update) = sse.until("update").await;
        seq += 1;
        assert_eq!((name.as_str(), id), ("update", Some(seq)));
        assert_eq!(update["seq"], seq);
        merge(&mut view, &update);
    }
    for symbol in ["AAPL", "MSFT"] {
        assert_eq!(view[symbol], app.rest_quote(symbol).await, "{symbol}");
    }
}

#[actix_web::test]
async fn gzip_is_used_when_accepted_and_each_event_inflates_on_arrival() {
    let app = spawn_app().await;
    let mut sse = SseClient::open(&app, "?symbols=AAPL", "Accept-Encoding: br, gzip\r\n").await;
    assert!(sse.head.contains("content-encoding: gzip"), "{}", sse.head);
    assert!(sse.head.contains("vary: accept-encoding"));
    assert_eq!(sse.event().await.unwrap().0, "welcome");
    assert_eq!(sse.event().await.unwrap().0, "snapshot");
    app.apply(&[app.trade("AAPL", "191.25", 5, 1_700_000_000_000)]);
    let (_, _, update) = sse.until("update").await;
    assert_eq!(update["quotes"][0]["p"].to_string(), "191.25");
    // q=0 refuses gzip.
    let plain = SseClient::open(&app, "?symbols=AAPL", "Accept-Encoding: gzip;q=0\r\n").await;
    assert!(!plain.head.contains("content-encoding"), "{}", plain.head);
}

#[actix_web::test]
async fn a_quiet_gzip_stream_gives_its_encoder_back_and_inflates_on() {
    // Each heartbeat (100 ms) rests the gzip stream's encoder; the events after it
    // must still inflate in the one gzip member.
    let app = spawn_app_with(|s| s.stream.heartbeat_ms = 100).await;
    let mut sse = SseClient::open(&app, "?symbols=AAPL", "Accept-Encoding: gzip\r\n").await;
    assert!(sse.head.contains("content-encoding: gzip"), "{}", sse.head);
    assert_eq!(sse.event().await.unwrap().0, "welcome");
    assert_eq!(sse.event().await.unwrap().0, "snapshot");
    for (i, price) in ["191.25", "191.5", "190.125"].iter().enumerate() {
        sse.until("heartbeat").await;
        sse.until("heartbeat").await;
        app.apply(&[app.trade("AAPL", price, 5, 1_700_000_000_000 + i as i64)]);
        let (_, _, update) = sse.until("update").await;
        assert_eq!(update["quotes"][0]["p"].to_string(), *price);
    }
}

#[actix_web::test]
async fn max_hz_and_last_event_id_work_and_bad_parameters_get_400() {
    let app = spawn_app().await;
    let mut sse = SseClient::open(&app, "?symbols=AAPL&max_hz=2", "Last-Event-ID: 41\r\n").await;
    let (_, _, welcome) = sse.event().await.unwrap();
    assert_eq!(welcome["max_hz"], 2);
    // A reconnect starts afresh: nothing is replayed, the snapshot is seq 1.
    assert_eq!(sse.event().await.unwrap().1, Some(1));
    for query in ["?compression=deflate", "?max_hz=fast", "?max_hz=-1"] {
        let refused = SseClient::open(&app, query, "").await;
        assert_eq!(refused.status(), 400, "{query}: {}", refused.head);
    }
}

#[actix_web::test]
async fn a_full_server_answers_503_with_retry_after() {
    let app = spawn_app_with(|s| s.limits.max_connections = 1).await;
    let mut first = SseClient::open(&app, "?symbols=AAPL", "").await;
    assert_eq!(first.event().await.unwrap().0, "welcome");
    let second = SseClient::open(&app, "?symbols=AAPL", "").await;
    assert_eq!(second.status(), 503, "{}", second.head);
    assert!(second.head.contains("retry-after: 5"), "{}", second.head);
}

#[actix_web::test]
async fn a_kick_and_shutdown_end_the_response_with_a_close_event() {
    let app = spawn_app().await;
    let mut kicked = SseClient::open(&app, "?symbols=AAPL", "Accept-Encoding: gzip\r\n").await;
    assert_eq!(kicked.event().await.unwrap().0, "welcome");
    let (_, body) = app
        .send("GET", "/api/v1/admin/sessions", Some(ADMIN_KEY), None, "")
        .await;
    let sessions: Value = serde_json::from_str(&body).unwrap();
    let session = &sessions["sessions"][0];
    assert_eq!(session["compression"], "gzip");
    let id = session["id"].as_str().unwrap();
    let (status, _) = app
        .send(
            "DELETE",
            &format!("/api/v1/admin/sessions/{id}"),
            Some(ADMIN_KEY),
            None,
            "",
        )
        .await;
    assert_eq!(status, 204);
    let (_, _, close) = kicked.until("close").await;
    assert_eq!(close["code"], 1008);
    assert_eq!(kicked.event().await, None, "then the response ends");

    let mut stopped = SseClient::open(&app, "?symbols=AAPL", "").await;
    assert_eq!(stopped.event().await.unwrap().0, "welcome");
    let stopping = tokio::spawn(app.stop());
    let (_, _, close) = stopped.until("close").await;
    assert_eq!(close["code"], 1001);
    assert_eq!(stopped.event().await, None);
    stopping.await.unwrap().unwrap();
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_cut_off_and_others_stream_on() {
    let app = spawn_app_with(|s| {
        s.simulator.enabled = true;
        s.simulator.ticks_per_second = 20_000;
        s.simulator.batch_interval_ms = 10;
        s.stream.max_hz = 100.0;
        s.stream.slow_consumer_timeout_ms = 1000;
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(format!("127.0.0.1:{}", app.port).parse().unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET /sse?symbols=* HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // Not reading: the server gives up on the response within its deadlines.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = app
            .send("GET", "/api/v1/admin/sessions", Some(ADMIN_KEY), None, "")
            .await;
        let sessions: Value = serde_json::from_str(&body).unwrap();
        if sessions["sessions"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never cut off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut other = SseClient::open(&app, "?symbols=AAPL", "").await;
    other.until("update").await;
}
