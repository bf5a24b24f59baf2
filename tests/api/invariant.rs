//! The core invariant, as a property: for random tick sequences interleaved with random
//! subscribe / unsubscribe / snapshot requests, a client that merges every snapshot and
//! update it receives holds exactly the server's quotes for its symbols once the feed
//! is quiet — with and without compression.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value};
use tickstream::domain::{Price, Tick};

use crate::helpers::{merge, spawn_app, TestApp, WsClient};

const POOL: [&str; 6] = ["AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "META"];

#[derive(Debug, Clone)]
enum Op {
    /// (symbol index, kind, price micros, size, bid/ask micros, ts)
    Ticks(Vec<(usize, u8, i64, u64, i64, i64)>),
    Subscribe(Vec<usize>),
    Unsubscribe(Vec<usize>),
    SubscribeAll,
    UnsubscribeAll,
    Snapshot,
    Pause(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let tick = (
        0..POOL.len(),
        0u8..3,
        1_000_000i64..900_000_000,
        0u64..5_000,
        1i64..50_000,
        0i64..2_000,
    );
    prop_oneof![
        6 => prop::collection::vec(tick, 1..12).prop_map(Op::Ticks),
        2 => prop::collection::vec(0..POOL.len(), 1..4).prop_map(Op::Subscribe),
        1 => prop::collection::vec(0..POOL.len(), 1..3).prop_map(Op::Unsubscribe),
        1 => Just(Op::SubscribeAll),
        1 => Just(Op::UnsubscribeAll),
        1 => Just(Op::Snapshot),
        2 => (0u64..40).prop_map(Op::Pause),
    ]
}

fn to_tick(
    app: &TestApp,
    (symbol, kind, price, size, spread, ts): (usize, u8, i64, u64, i64, i64),
) -> Tick {
    let mut tick = Tick {
        symbol: app.id(POOL[symbol]),
        ts,
        ..Tick::default()
    };
    // kind 0: trade, 1: book, 2: both.
    if kind != 1 {
        tick.price = Some(Price::from_micros(price));
        tick.size = Some(size);
    }
    if kind != 0 {
        tick.bid = Some(Price::from_micros(price));
        tick.bid_size = Some(size + 1);
        tick.ask = Some(Price::from_micros(price + spread));
        tick.ask_size = Some(size + 2);
    }
    tick
}

fn names(indices: &[usize]) -> Vec<&'static str> {
    indices.iter().map(|&i| POOL[i]).collect()
}

async fn run_case(ops: Vec<Op>, compression: bool) -> Result<(), TestCaseError> {
    let app = spawn_app().await;
    let query = if compression {
        "?compression=deflate"
    } else {
        ""
    };
    let mut client = WsClient::connect(&app, query).await;
    for op in &ops {
        match op {
            Op::Ticks(ticks) => {
                let ticks: Vec<Tick> = ticks.iter().map(|t| to_tick(&app, *t)).collect();
                app.apply(&ticks);
            }
            Op::Subscribe(i) => {
                client
                    .send(json!({"op":"subscribe","symbols":names(i)}))
                    .await
            }
            Op::Unsubscribe(i) => {
                client
                    .send(json!({"op":"unsubscribe","symbols":names(i)}))
                    .await
            }
            Op::SubscribeAll => client.send(json!({"op":"subscribe","symbols":["*"]})).await,
            Op::UnsubscribeAll => {
                client
                    .send(json!({"op":"unsubscribe","symbols":["*"]}))
                    .await
            }
            Op::Snapshot => client.send(json!({"op":"snapshot"})).await,
            Op::Pause(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        }
    }
    // Quiet: several flush intervals pass with no ticks; then a ping marks the end.
    tokio::time::sleep(Duration::from_millis(150)).await;
    client.send(json!({"op":"ping","req_id":"end"})).await;

    let mut view: BTreeMap<String, Value> = BTreeMap::new();
    let mut subscribed: Vec<String> = Vec::new();
    loop {
        let message = client.recv().await;
        match message["type"].as_str() {
            Some("pong") if message["req_id"] == "end" => break,
            Some("subscriptions") => {
                subscribed = serde_json::from_value(message["symbols"].clone()).unwrap();
                if subscribed != ["*"] {
                    view.retain(|s, _| subscribed.contains(s));
                }
            }
            Some("error") => prop_assert!(false, "unexpected error: {message}"),
            _ => merge(&mut view, &message),
        }
    }
    let expected_symbols: Vec<String> = if subscribed == ["*"] {
        app.store.symbols().map(|s| s.symbol.to_string()).collect()
    } else {
        subscribed.clone()
    };
    prop_assert_eq!(
        view.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected_symbols
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    );
    for symbol in &expected_symbols {
        let server = app.rest_quote(symbol).await;
        prop_assert_eq!(&view[symbol], &server, "{} after {:?}", symbol, ops);
    }
    app.stop().await.expect("stops");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_merging_client_converges_to_the_server(
        ops in prop::collection::vec(op(), 1..40),
        compression in any::<bool>(),
    ) {
        actix_web::rt::System::new().block_on(run_case(ops, compression))?;
    }
}
