//! Exactness at the edges an f64 cannot carry: prices past 15 significant digits,
//! sizes past 2^53, request ids past u64, and decimals in every reply.

use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app, WsClient, ADMIN_KEY, PUBLISHER_KEY};

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON reply")
}

#[actix_web::test]
async fn prices_are_taken_as_written_and_a_seventh_decimal_is_refused_however_it_is_spelled() {
    let app = spawn_app().await;
    // Raw text, so the client cannot round the numbers before they are sent.
    let body = r#"[{"symbol":"AAPL","price":999999999.9999991,"size":1},
                   {"symbol":"AAPL","price":999999999.999999,"size":9007199254740992},
                   {"symbol":"AAPL","price":999999999.999999,"size":9007199254740991},
                   {"symbol":"MSFT","bid":0.000001,"ask":1.5e2}]"#;
    let (status, reply) = app
        .send(
            "POST",
            "/api/v1/ticks",
            Some(PUBLISHER_KEY),
            Some("application/json"),
            body,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let reply = json(&reply);
    assert_eq!(reply["accepted"], 2, "{reply}");
    let rejected = reply["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{reply}");
    assert_eq!(
        (rejected[0]["index"].as_u64(), rejected[0]["code"].as_str()),
        (Some(0), Some("bad_request"))
    );
    assert!(rejected[0]["message"]
        .as_str()
        .unwrap()
        .contains("6 decimals"));
    assert_eq!(
        (rejected[1]["index"].as_u64(), rejected[1]["code"].as_str()),
        (Some(1), Some("bad_request"))
    );
    assert!(rejected[1]["message"].as_str().unwrap().contains("size"));

    let (_, aapl) = app.get("/api/v1/quotes/AAPL").await;
    assert!(aapl.contains(r#""p":999999999.999999,"#), "{aapl}");
    assert!(aapl.contains(r#""v":9007199254740991,"#), "{aapl}");
    let (_, msft) = app.get("/api/v1/quotes/MSFT").await;
    assert!(
        msft.contains(r#""bp":0.000001,"#) && msft.contains(r#""ap":150,"#),
        "{msft}"
    );
}

#[actix_web::test]
async fn the_admin_reply_prints_the_reference_price_as_the_other_routes_do() {
    let app = spawn_app().await;
    let (status, reply) = app
        .send(
            "PUT",
            "/api/v1/admin/symbols/TINY",
            Some(ADMIN_KEY),
            Some("application/json"),
            r#"{"name":"Tiny Co","pc":0.000001}"#,
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply, r#"{"s":"TINY","name":"Tiny Co","pc":0.000001}"#);
    let (status, reply) = app
        .send(
            "PUT",
            "/api/v1/admin/symbols/TINY",
            Some(ADMIN_KEY),
            Some("application/json"),
            r#"{"pc":999999999.9999991}"#,
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(json(&reply)["error"]["code"], "bad_request");
}

#[actix_web::test]
async fn request_ids_come_back_exactly_as_sent() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    for id in ["18446744073709551617", "1e2", "-0", r#""note""#] {
        client
            .send_raw(Message::Text(format!(r#"{{"op":"ping","req_id":{id}}}"#)))
            .await;
        let Message::Text(text) = client.next_frame().await else {
            panic!("a text reply");
        };
        assert!(text.contains(&format!(r#""req_id":{id},"#)), "{id}: {text}");
    }
}

#[actix_web::test]
async fn a_known_path_with_another_method_is_405() {
    let app = spawn_app().await;
    for (method, path) in [("POST", "/api/v1/quotes"), ("DELETE", "/api/v1/symbols")] {
        let (status, body) = app.send(method, path, None, None, "").await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_eq!(json(&body)["error"]["code"], "method_not_allowed");
    }
    let (status, _) = app.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
}
