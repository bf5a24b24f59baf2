//! Arbitrary input at the two parsers that face the outside (client messages and
//! ticks): the answer is always a value or a contract error, never a panic.

use proptest::prelude::*;
use serde_json::{json, Value};
use tickstream::ingest::parse_tick;
use tickstream::stream::parse_request;
use tickstream::wire::ErrorCode;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        prop::sample::select(vec![
            "op",
            "subscribe",
            "*",
            "AAPL",
            "symbols",
            "max_hz",
            "price"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "op", "symbols", "req_id", "max_hz", "symbol", "price", "size", "bid",
                    "bid_size", "ask", "ask_size", "ts", "seq", "extra",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects that look like real requests, so the deeper validation paths run too.
fn request_like() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "subscribe",
            "unsubscribe",
            "snapshot",
            "set",
            "ping",
            "nope",
            "",
        ]),
        any_json(),
        any_json(),
    )
        .prop_map(|(op, a, b)| json!({"op": op, "symbols": a, "max_hz": b}))
}

fn tick_like() -> impl Strategy<Value = Value> {
    (any_json(), any_json(), any_json(), any_json())
        .prop_map(|(symbol, price, size, ts)| json!({"symbol": symbol, "price": price, "size": size, "ts": ts}))
}

const REQUEST_CODES: [ErrorCode; 2] = [ErrorCode::BadRequest, ErrorCode::UnknownOp];
const TICK_CODES: [ErrorCode; 2] = [ErrorCode::BadRequest, ErrorCode::InvalidSymbol];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn client_messages_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse_request(&text) {
            prop_assert!(REQUEST_CODES.contains(&e.code), "{:?}", e);
        }
    }

    #[test]
    fn client_messages_from_arbitrary_json(value in prop_oneof![any_json(), request_like()]) {
        if let Err(e) = parse_request(&value.to_string()) {
            prop_assert!(REQUEST_CODES.contains(&e.code), "{:?}", e);
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn ticks_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse_tick(&text) {
            prop_assert!(TICK_CODES.contains(&e.code), "{:?}", e);
        }
    }

    #[test]
    fn ticks_from_arbitrary_json(value in prop_oneof![any_json(), tick_like()]) {
        match parse_tick(&value.to_string()) {
            Ok(tick) => prop_assert!(tick.price.is_some() || tick.bid.is_some() || tick.ask.is_some()),
            Err(e) => {
                prop_assert!(TICK_CODES.contains(&e.code), "{:?}", e);
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
