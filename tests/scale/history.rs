//! Shared history: with Redis, every instance serves the same bars (kept in Redis by
//! the same script that applies the ticks), an instance started later serves them at
//! once, a paused instance has nothing to repair, and Redis with persistence keeps
//! them across a restart. The bars Redis builds must equal those a single
//! memory-mode instance builds from the same ticks.

use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use serde_json::{json, Value};

use super::harness::{Instance, Redis};
use super::{now_ms, two_ready_instances, CONVERGE};

const INTERVALS: [&str; 3] = ["1s", "1m", "1d"];

/// One instance on its own (`broker.kind = "memory"`, with its data file): the
/// reference the cluster's bars must equal.
fn single_instance(redis: &Redis, env: &[(&str, &str)]) -> Instance {
    let mut all = vec![
        ("TICKSTREAM__BROKER__KIND", "memory"),
        // In its own working directory.
        ("TICKSTREAM__STORE__DATA_DIR", "data"),
    ];
    all.extend_from_slice(env);
    Instance::start("single", redis, &all)
}

/// Rounds of mixed ticks over about two and a half minutes before `base`: trades,
/// book-only ticks, trades with a book, some out of order, in batches of three.
fn mixed_rounds(symbols: &[&str], base: i64) -> Vec<Value> {
    (0..40i64)
        .map(|round| {
            let batch: Vec<Value> = symbols
                .iter()
                .enumerate()
                .map(|(i, symbol)| {
                    let i = i as i64;
                    // Mostly forward in steps of ~3.7 s; every fifth round goes back.
                    let step = if round % 5 == 4 { -9_000 } else { 0 };
                    let ts = base - 150_000 + round * 3_700 + i * 211 + step;
                    let cents = (50 + (round * 13 + i * 5) % 17) * 100 + (round * 7) % 100;
                    let price = |cents: i64| -> Value {
                        format!("{}.{:02}", cents / 100, cents % 100).parse().expect("a price")
                    };
                    match (round + i) % 3 {
                        0 => json!({"symbol": symbol, "price": price(cents), "size": round + 1, "ts": ts}),
                        1 => json!({"symbol": symbol, "bid": price(cents - 1), "bid_size": round, "ask": price(cents + 1), "ts": ts}),
                        _ => json!({"symbol": symbol, "price": price(cents), "size": 3, "bid": price(cents - 2), "ask": price(cents + 2), "ask_size": 9, "ts": ts}),
                    }
                })
                .collect();
            Value::Array(batch)
        })
        .collect()
}

async fn history(instance: &Instance, symbol: &str, query: &str) -> Value {
    let (status, body) = instance
        .get(&format!("/api/v1/history/{symbol}?{query}"))
        .await;
    assert_eq!(status, 200, "{}: {body}", instance.name);
    body
}

/// Every interval's full history (one page) of `symbol` on `instance`.
async fn all_bars(instance: &Instance, symbol: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for interval in INTERVALS {
        let page = history(instance, symbol, &format!("interval={interval}&limit=5000")).await;
        assert_eq!(page["more"], false, "{}: one page holds it", instance.name);
        out.push(page);
    }
    out
}

/// Polls until `instance` serves `want` for every interval of `symbol` (bounded).
async fn serves(instance: &Instance, symbol: &str, want: &[Value]) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let got = all_bars(instance, symbol).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} serves other bars for {symbol}:\n got {got:?}\nwant {want:?}",
            instance.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Four trades of `symbol` through `a`, one a second from `base` (sizes `size`,
/// prices `first`, `first + 1`, …), served alike by `b`; returns `a`'s bars.
async fn four_trades(
    a: &Instance,
    b: &Instance,
    symbol: &str,
    first: i64,
    size: u64,
    base: i64,
) -> Vec<Value> {
    for i in 0..4i64 {
        a.publish(
            json!([{"symbol": symbol, "price": first + i, "size": size, "ts": base + i * 1_000}]),
        )
        .await;
    }
    let bars = all_bars(a, symbol).await;
    serves(b, symbol, &bars).await;
    bars
}

/// Restarts Redis (SIGKILL, then the same port) and waits until every instance
/// re-joined (its resync count moved).
async fn restart_redis_and_rejoin(redis: &mut Redis, instances: &[&Instance]) {
    let mut before = Vec::new();
    for instance in instances {
        before.push(instance.metric("tickstream_broker_resyncs_total").await);
    }
    redis.restart();
    let deadline = Instant::now() + CONVERGE;
    for (instance, resyncs) in instances.iter().zip(before) {
        while instance.metric("tickstream_broker_resyncs_total").await == resyncs {
            assert!(Instant::now() < deadline, "{} re-joins", instance.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn bar_count(page: &Value) -> usize {
    page["bars"].as_array().map_or(0, Vec::len)
}

#[actix_web::test]
async fn every_instance_serves_the_bars_a_single_instance_would_and_one_started_later_too() {
    // Arrange: the cluster (A, B) and a single instance take the same ticks; half of
    // the cluster's go through A, half through B.
    let (redis, a, b) = two_ready_instances().await;
    let single = single_instance(&redis, &[]);
    let symbols = ["AAPL", "MSFT", "GOOG"];
    let base = now_ms();

    // Act
    for (round, batch) in mixed_rounds(&symbols, base).into_iter().enumerate() {
        let target = if round % 2 == 0 { &a } else { &b };
        let answer = target.publish(batch.clone()).await;
        assert_eq!(answer["rejected"], json!([]), "round {round}: {answer}");
        single.publish(batch).await;
    }
    let c = Instance::start("c", &redis, &[]);
    c.wait_status("ready", CONVERGE).await;

    // Assert: the same bars everywhere, exactly the single instance's.
    for symbol in symbols {
        let want = all_bars(&single, symbol).await;
        assert!(
            bar_count(&want[0]) > 20 && bar_count(&want[1]) >= 3 && bar_count(&want[2]) == 1,
            "{symbol}: seconds, minutes and the day in progress: {want:?}"
        );
        for instance in [&a, &b, &c] {
            serves(instance, symbol, &want).await;
        }
    }
    // Pages cut the same way: the newest 7, then the 7 before them.
    for instance in [&a, &c] {
        let first = history(instance, "AAPL", "interval=1s&limit=7").await;
        assert_eq!(first, history(&single, "AAPL", "interval=1s&limit=7").await);
        assert_eq!((bar_count(&first), &first["more"]), (7, &json!(true)));
        let to = &first["bars"][0]["t"];
        let query = format!("interval=1s&limit=7&to={to}");
        assert_eq!(
            history(instance, "AAPL", &query).await,
            history(&single, "AAPL", &query).await
        );
    }
}

#[actix_web::test]
async fn redis_keeps_bars_for_their_retention_as_the_data_file_does() {
    // Arrange: 1 s bars kept 300 s (the floor), and one batch of 400 seconds of trades.
    let retention = [("TICKSTREAM__STORE__HISTORY_1S_SECONDS", "300")];
    let redis = Redis::start();
    let a = Instance::start("a", &redis, &retention);
    a.wait_status("ready", CONVERGE).await;
    let single = single_instance(&redis, &retention);
    let base = now_ms() - 400_000;
    let batch: Vec<Value> = (0..400i64)
        .map(|s| json!({"symbol": "NVDA", "price": 100 + s % 7, "size": 1 + s % 3, "ts": base + s * 1_000}))
        .collect();

    // Act
    a.publish(Value::Array(batch.clone())).await;
    single.publish(Value::Array(batch)).await;

    // Assert: the newest bar and the 300 s before it, on both.
    let want = all_bars(&single, "NVDA").await;
    assert_eq!(bar_count(&want[0]), 301, "{:?}", want[0]);
    assert!(
        bar_count(&want[1]) >= 7,
        "every minute is kept: {:?}",
        want[1]
    );
    serves(&a, "NVDA", &want).await;
}

#[actix_web::test]
async fn a_paused_instance_serves_the_bars_it_missed_as_soon_as_it_runs_again() {
    let (_redis, a, b) = two_ready_instances().await;
    let base = now_ms();
    a.publish(json!([{"symbol": "AMZN", "price": 180.5, "size": 10, "ts": base - 5_000}]))
        .await;
    let before = all_bars(&a, "AMZN").await;
    serves(&b, "AMZN", &before).await;

    // B misses the channel while A takes more trades.
    b.pause();
    for i in 0..5i64 {
        a.publish(json!([{"symbol": "AMZN", "price": 181 + i, "size": 2, "ts": base - 4_000 + i * 1_000}]))
            .await;
    }
    b.resume();

    let after = all_bars(&a, "AMZN").await;
    assert_eq!(bar_count(&after[0]), 6);
    serves(&b, "AMZN", &after).await;
    b.wait_status("ready", CONVERGE).await;
    assert_eq!(b.quote("AMZN").await, a.quote("AMZN").await);
}

#[actix_web::test]
async fn a_redis_restart_with_persistence_keeps_every_bar_and_trading_goes_on() {
    // Arrange
    let mut redis = Redis::start_persistent();
    let a = Instance::start("a", &redis, &[]);
    let b = Instance::start("b", &redis, &[]);
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;
    // On a whole second, so base + 3.5 s falls in the bar of base + 3 s.
    let base = now_ms() / 1_000 * 1_000 - 10_000;
    let before = four_trades(&a, &b, "TSLA", 250, 3, base).await;

    // Act: kill -9 Redis (every write was synced to its append-only file), restart.
    restart_redis_and_rejoin(&mut redis, &[&a, &b]).await;

    // Assert: every bar is still there, on both, and new trades extend them.
    serves(&a, "TSLA", &before).await;
    serves(&b, "TSLA", &before).await;
    b.publish(json!([{"symbol": "TSLA", "price": 260.25, "size": 5, "ts": base + 3_500}]))
        .await;
    let after = all_bars(&b, "TSLA").await;
    let newest = &after[0]["bars"][3];
    assert_eq!(
        (&newest["c"], &newest["v"], &newest["h"]),
        (&json!(260.25), &json!(8), &json!(260.25)),
        "the bar of base + 3 s grew: {newest}"
    );
    serves(&a, "TSLA", &after).await;
    assert_eq!(a.quote("TSLA").await["v"], 17);
}

#[actix_web::test]
async fn the_rollover_closes_the_day_into_the_same_daily_bar_everywhere() {
    // Arrange: a trading day that rolls over at the next whole minute (UTC) that is at
    // least 10 s away, so both instances start before it.
    let now = Utc::now();
    let wait_minutes = if now.second() < 50 { 1 } else { 2 };
    let rollover = (now + chrono::Duration::minutes(wait_minutes))
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a whole minute");
    let time = rollover.format("%H:%M").to_string();
    let env = [
        ("TICKSTREAM__TRADING_DAY__TIME_ZONE", "UTC"),
        ("TICKSTREAM__TRADING_DAY__ROLLOVER_TIME", time.as_str()),
    ];
    let redis = Redis::start();
    let a = Instance::start("a", &redis, &env);
    let b = Instance::start("b", &redis, &env);
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;
    a.publish(json!([
        {"symbol": "META", "price": 500.5, "size": 4, "ts": now_ms()},
        {"symbol": "META", "price": 499.25, "size": 6, "ts": now_ms()}
    ]))
    .await;

    // Act: the rollover passes.
    let until = (rollover - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1);
    tokio::time::sleep(until).await;

    // Assert: the day that ended is one daily bar, dated that day, on every instance,
    // and on one started afterwards.
    let ended = (rollover.date_naive() - chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_millis();
    let want = json!([{"t": ended, "o": 500.5, "h": 500.5, "l": 499.25, "c": 499.25, "v": 10}]);
    let deadline = Instant::now() + CONVERGE;
    while a.quote("META").await["v"] != 0 {
        assert!(Instant::now() < deadline, "A rolled over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = Instance::start("c", &redis, &env);
    c.wait_status("ready", CONVERGE).await;
    for instance in [&a, &b, &c] {
        let days = history(instance, "META", "interval=1d").await;
        assert_eq!(days["bars"], want, "{}", instance.name);
    }
}

#[actix_web::test]
async fn a_redis_that_lost_its_data_gets_the_bars_back_from_the_instances() {
    // Arrange: Redis without persistence; trades through A.
    let (mut redis, a, b) = two_ready_instances().await;
    let base = now_ms() / 1_000 * 1_000 - 10_000;
    let before = four_trades(&a, &b, "NFLX", 90, 2, base).await;

    // Act: Redis comes back empty.
    restart_redis_and_rejoin(&mut redis, &[&a, &b]).await;

    // Assert: the instance that seeded the quotes put its bars back too.
    serves(&a, "NFLX", &before).await;
    serves(&b, "NFLX", &before).await;
    a.publish(json!([{"symbol": "NFLX", "price": 99.5, "size": 1, "ts": base + 3_200}]))
        .await;
    let newest = &all_bars(&b, "NFLX").await[0]["bars"][3];
    assert_eq!(
        (&newest["v"], &newest["c"]),
        (&json!(3), &json!(99.5)),
        "{newest}"
    );
}
