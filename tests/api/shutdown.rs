//! Graceful shutdown: every viewer is told 1001 and the server stops.

use crate::helpers::{spawn_app, WsClient};

#[actix_web::test]
async fn shutdown_closes_every_viewer_with_1001_and_stops_the_server() {
    let app = spawn_app().await;
    let mut plain = WsClient::connect(&app, "?symbols=AAPL").await;
    let mut deflate = WsClient::connect(&app, "?symbols=MSFT&compression=deflate").await;
    plain.recv_type("snapshot").await;
    deflate.recv_type("snapshot").await;
    let port = app.port;

    app.stop().await.expect("the server stops cleanly");

    for client in [&mut plain, &mut deflate] {
        let (code, reason) = client.expect_close().await;
        assert_eq!(code, 1001, "{reason}");
    }
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "no longer accepting connections");
}
