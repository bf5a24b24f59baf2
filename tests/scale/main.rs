//! Scale-out over Redis, end to end with real processes: redis-server, several
//! tickstream instances (`broker.kind = "redis"`) and nginx with `config/nginx.conf`,
//! all on loopback ports (tests/support). `scripts/test` installs redis-server and nginx.

mod auto_create;
mod feed;
mod harness;
mod history;
mod viewer;

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use harness::{Haproxy, Instance, Nginx, Redis};
use serde_json::{json, Value};
use viewer::Viewer;

const CONVERGE: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `n` trades of `symbol` with sizes 1..=n and a rising price, then one book tick.
fn trades(symbol: &str, n: u64, base_ts: i64, seq_from: Option<u64>) -> Value {
    let mut ticks: Vec<Value> = (1..=n)
        .map(|i| {
            let mut tick = json!({
                "symbol": symbol,
                "price": 100.0 + i as f64 / 100.0,
                "size": i,
                "ts": base_ts + i as i64,
            });
            if let Some(from) = seq_from {
                tick["seq"] = json!(from + i - 1);
            }
            tick
        })
        .collect();
    ticks.push(json!({"symbol": symbol, "bid": 99.5, "bid_size": 3, "ask": 100.75, "ask_size": 4, "ts": base_ts + n as i64}));
    Value::Array(ticks)
}

/// Redis and two instances "a" and "b" (simulator off), both joined.
async fn two_ready_instances() -> (Redis, Instance, Instance) {
    let redis = Redis::start();
    let a = Instance::start("a", &redis, &[]);
    let b = Instance::start("b", &redis, &[]);
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;
    (redis, a, b)
}

/// Opens viewers through a load balancer at `url` until both instances have one.
async fn viewers_on_both(url: &str, symbols: &[&str], a: &Instance, b: &Instance) -> Vec<Viewer> {
    let mut viewers = Vec::new();
    let mut homes = Vec::new();
    for _ in 0..8 {
        let viewer = Viewer::connect(url, symbols).await;
        homes.push(home_of(&viewer, &[a, b]).await.name.clone());
        viewers.push(viewer);
        if homes.iter().any(|h| h == "a") && homes.iter().any(|h| h == "b") {
            return viewers;
        }
    }
    panic!("the load balancer never spread viewers over both instances: {homes:?}");
}

/// Polls until every instance serves the same quote for `symbol`; returns it.
async fn same_everywhere(symbol: &str, instances: &[&Instance]) -> Value {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let first = instances[0].quote(symbol).await;
        let mut all_equal = true;
        for other in &instances[1..] {
            all_equal &= other.quote(symbol).await == first;
        }
        if all_equal {
            return first;
        }
        assert!(
            Instant::now() < deadline,
            "{symbol} differs between instances"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which instance holds the viewer's session.
async fn home_of<'a>(viewer: &Viewer, instances: &[&'a Instance]) -> &'a Instance {
    for instance in instances {
        if instance
            .sessions()
            .await
            .iter()
            .any(|(id, _)| *id == viewer.session)
        {
            return instance;
        }
    }
    panic!("session {} is on no instance", viewer.session)
}

#[actix_web::test]
async fn a_tick_accepted_by_one_instance_reaches_viewers_of_every_instance_through_nginx() {
    let (_redis, a, b) = two_ready_instances().await;
    let nginx = Nginx::start(&[&a, &b]);

    let mut viewers = viewers_on_both(&nginx.ws_url(""), &["AAPL", "MSFT"], &a, &b).await;

    // Ticks go to A only (AAPL) and to B only (MSFT).
    let base = now_ms();
    let report = a.publish(trades("AAPL", 20, base, None)).await;
    assert_eq!(report["accepted"], 21, "{report}");
    let report = b.publish(trades("MSFT", 5, base, None)).await;
    assert_eq!(report["accepted"], 6, "{report}");

    // Read your writes on the accepting instance, then the same quote everywhere.
    assert_eq!(a.quote("AAPL").await["v"], 210);
    let aapl = same_everywhere("AAPL", &[&a, &b]).await;
    assert_eq!(aapl["v"], 210, "volume 1+..+20, counted once: {aapl}");
    assert_eq!(aapl["p"], 100.2);
    let msft = same_everywhere("MSFT", &[&b, &a]).await;
    assert_eq!(msft["v"], 15);

    for viewer in &mut viewers {
        viewer.converge("AAPL", &aapl, CONVERGE).await;
        viewer.converge("MSFT", &msft, CONVERGE).await;
        assert!(viewer.is_connected() && viewer.reconnects == 0);
    }
    drop(nginx);
}

#[actix_web::test]
async fn haproxy_with_the_shipped_config_spreads_viewers_that_all_converge() {
    let (_redis, a, b) = two_ready_instances().await;
    let haproxy = Haproxy::start(&[&a, &b]);
    let mut viewers = viewers_on_both(&haproxy.ws_url(""), &["TSLA"], &a, &b).await;
    a.publish(trades("TSLA", 6, now_ms(), None)).await;
    let quote = same_everywhere("TSLA", &[&a, &b]).await;
    assert_eq!(quote["v"], 21);
    for viewer in &mut viewers {
        viewer.converge("TSLA", &quote, CONVERGE).await;
    }
}

#[actix_web::test]
async fn publisher_seq_deduplication_holds_across_instances() {
    let (_redis, a, b) = two_ready_instances().await;
    let batch = trades("IBM", 5, now_ms(), Some(1));
    let first = a.publish(batch.clone()).await;
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(6), Some(0))
    );
    // The adapter lost A's reply and retries the same batch through B.
    let retry = b.publish(batch).await;
    assert_eq!(
        (retry["accepted"].as_u64(), retry["duplicates"].as_u64()),
        (Some(1), Some(5)),
        "the five seq'd trades are duplicates cluster-wide; the book tick has no seq: {retry}"
    );
    let quote = same_everywhere("IBM", &[&a, &b]).await;
    assert_eq!(quote["v"], 15, "no volume counted twice: {quote}");
}

#[actix_web::test]
async fn one_simulator_runs_in_the_cluster_and_moves_when_its_instance_dies() {
    let redis = Redis::start();
    let sim = [
        ("TICKSTREAM__SIMULATOR__ENABLED", "true"),
        ("TICKSTREAM__SIMULATOR__TICKS_PER_SECOND", "50"),
    ];
    let mut a = Instance::start("a", &redis, &sim);
    let mut b = Instance::start("b", &redis, &sim);
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;

    // Exactly one leader, and it stays exactly one.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let leaders =
            a.metric("tickstream_feed_leader").await + b.metric("tickstream_feed_leader").await;
        if leaders == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no single leader: {leaders}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        let leaders =
            a.metric("tickstream_feed_leader").await + b.metric("tickstream_feed_leader").await;
        assert_eq!(leaders, 1, "never two simulators");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a_leads = a.metric("tickstream_feed_leader").await == 1;
    let (leader, follower) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // Both apply the one simulator's ticks.
    let published = leader.metric("tickstream_broker_published_total").await;
    assert!(published > 0, "the leader publishes its simulated ticks");
    assert_eq!(
        follower.metric("tickstream_broker_published_total").await,
        0,
        "the follower simulates nothing"
    );
    let before = follower.metric("tickstream_ticks_applied_total").await;
    assert!(before > 0, "the follower applies the leader's ticks");

    leader.kill();
    let killed = Instant::now();
    loop {
        if follower.metric("tickstream_feed_leader").await == 1 {
            break;
        }
        // Lock expiry 1.5 s, free-lock polling at a tenth of it; a generous margin
        // for a loaded machine, still well under twice the expiry.
        assert!(
            killed.elapsed() < Duration::from_millis(2_500),
            "no takeover within the lock expiry"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took_over = killed.elapsed();
    let applied = follower.metric("tickstream_ticks_applied_total").await;
    let deadline = Instant::now() + CONVERGE;
    while follower.metric("tickstream_ticks_applied_total").await <= applied {
        assert!(
            Instant::now() < deadline,
            "the new leader's simulator produces ticks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("simulator moved {took_over:?} after its instance died (lock expiry 1.5 s)");
}

#[actix_web::test]
async fn killing_an_instance_makes_its_viewers_reconnect_through_nginx_and_converge() {
    let (_redis, mut a, b) = two_ready_instances().await;
    let nginx = Nginx::start(&[&a, &b]);

    let mut viewers = Vec::new();
    let mut on_a = 0;
    for _ in 0..12 {
        let viewer = Viewer::connect(&nginx.ws_url(""), &["NVDA"]).await;
        if home_of(&viewer, &[&a, &b]).await.name == "a" {
            on_a += 1;
        }
        viewers.push(viewer);
        if on_a >= 2 && viewers.len() - on_a >= 1 {
            break;
        }
    }
    assert!(
        on_a >= 1,
        "some viewers landed on the instance that will die"
    );

    a.kill();
    // B alone now; every viewer (moved or not) must see what B accepts.
    let base = now_ms();
    b.publish(trades("NVDA", 10, base, None)).await;
    let quote = b.quote("NVDA").await;
    assert_eq!(quote["v"], 55);
    for viewer in &mut viewers {
        viewer.converge("NVDA", &quote, CONVERGE).await;
    }
    let moved: u32 = viewers.iter().map(|v| v.reconnects).sum();
    assert!(
        moved as usize >= on_a,
        "each viewer of the dead instance reconnected ({moved} reconnects, {on_a} on a)"
    );
    for viewer in &viewers {
        assert_eq!(home_of(viewer, &[&b]).await.name, "b");
    }
}

#[actix_web::test]
async fn a_redis_outage_degrades_both_instances_and_recovery_loses_no_volume() {
    let (mut redis, a, b) = two_ready_instances().await;
    let mut viewer = Viewer::connect(&format!("ws://127.0.0.1:{}/ws", b.port), &["AMZN"]).await;

    let base = now_ms();
    a.publish(trades("AMZN", 4, base, None)).await; // v = 10
    let before = a.quote("AMZN").await;
    assert_eq!(before["v"], 10);
    viewer.converge("AMZN", &before, CONVERGE).await;

    // Redis goes away, and comes back empty (no persistence).
    redis.stop();
    a.wait_status("degraded", CONVERGE).await;
    b.wait_status("degraded", CONVERGE).await;
    assert_eq!(
        a.readiness().await.0,
        200,
        "degraded instances stay in rotation"
    );
    assert_eq!(a.metric("tickstream_broker_degraded").await, 1);

    // Both keep accepting and serving their own ingest.
    let one = json!([{"symbol": "AMZN", "price": 101.5, "size": 7, "ts": base + 100}]);
    let two = json!([{"symbol": "AMZN", "price": 101.25, "size": 11, "ts": base + 200}]);
    assert_eq!(a.publish(one).await["accepted"], 1);
    assert_eq!(b.publish(two).await["accepted"], 1);
    assert_eq!(a.quote("AMZN").await["v"], 17);
    let local_b = b.quote("AMZN").await;
    assert_eq!(local_b["v"], 21);
    viewer.converge("AMZN", &local_b, CONVERGE).await;

    redis.restart();
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;
    // Both resynchronise to the union: 10 + 7 + 11, and the newest price (B's ts).
    let deadline = Instant::now() + CONVERGE;
    loop {
        let (qa, qb) = (a.quote("AMZN").await, b.quote("AMZN").await);
        if qa == qb && qa["v"] == 28 {
            assert_eq!(qa["p"], 101.25, "the newest trade's price wins: {qa}");
            viewer.converge("AMZN", &qb, CONVERGE).await;
            break;
        }
        assert!(Instant::now() < deadline, "not back in sync: a {qa} b {qb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And ticks flow across instances again.
    a.publish(json!([{"symbol": "AMZN", "price": 102, "size": 2, "ts": base + 300}]))
        .await;
    let after = a.quote("AMZN").await;
    assert_eq!(after["v"], 30);
    viewer.converge("AMZN", &after, CONVERGE).await;
    assert!(
        viewer.is_connected() && viewer.reconnects == 0,
        "the viewer streamed throughout"
    );
}

#[actix_web::test]
async fn a_new_instance_starts_warm_and_the_redis_rules_match_the_local_rules() {
    // Mixed ticks through two instances (out of order, book-only, trade-only), so the
    // hash in Redis (built by Lua) and the stores (built by Rust) must agree exactly:
    // a third instance starts from the hash alone.
    let (redis, a, b) = two_ready_instances().await;
    let base = now_ms();
    let symbols = ["AAPL", "MSFT", "GOOG"];
    for round in 0..12i64 {
        let mut batch = Vec::new();
        for (i, symbol) in symbols.iter().enumerate() {
            let i = i as i64;
            let ts = base + (round * 7 + i * 3) % 40; // some go backwards
            let price = 50.0 + ((round * 13 + i * 5) % 17) as f64 * 0.37;
            batch.push(match (round + i) % 3 {
                0 => json!({"symbol": symbol, "price": price, "size": round + 1, "ts": ts}),
                1 => json!({"symbol": symbol, "bid": price - 0.01, "bid_size": round, "ask": price + 0.01, "ts": ts}),
                _ => json!({"symbol": symbol, "price": price, "size": 3, "bid": price - 0.02, "ask_size": 9, "ts": ts}),
            });
        }
        let target = if round % 2 == 0 { &a } else { &b };
        target.publish(Value::Array(batch)).await;
    }
    let c = Instance::start("c", &redis, &[]);
    c.wait_status("ready", CONVERGE).await;
    for symbol in symbols {
        let qa = same_everywhere(symbol, &[&a, &b]).await;
        assert_eq!(
            c.quote(symbol).await,
            qa,
            "{symbol}: C, warm from Redis, agrees"
        );
    }
}

#[actix_web::test]
async fn a_frozen_redis_times_out_into_degraded_and_the_outboxes_catch_up_exactly() {
    let (redis, a, b) = two_ready_instances().await;
    let base = now_ms();
    a.publish(trades("META", 3, base, Some(1))).await; // v = 6, seq 1..3
    assert_eq!(same_everywhere("META", &[&a, &b]).await["v"], 6);

    // Nothing answers, nothing closes: only timeouts tell.
    redis.pause();
    let one = json!([{"symbol": "META", "price": 300.5, "size": 5, "ts": base + 50, "seq": 4}]);
    let two = json!([{"symbol": "META", "price": 300.25, "size": 9, "ts": base + 60}]);
    assert_eq!(
        a.publish(one).await["accepted"],
        1,
        "accepted locally after a timeout"
    );
    assert_eq!(b.publish(two).await["accepted"], 1);
    a.wait_status("degraded", CONVERGE).await;
    b.wait_status("degraded", CONVERGE).await;
    // The same seq again while cut off: this instance still knows it.
    let again = json!([{"symbol": "META", "price": 300.5, "size": 5, "ts": base + 50, "seq": 4}]);
    assert_eq!(a.publish(again).await["duplicates"], 1);

    redis.resume();
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;
    let quote = same_everywhere("META", &[&a, &b]).await;
    assert_eq!(quote["v"], 20, "6 + 5 + 9, each once: {quote}");
    assert_eq!(
        quote["p"], 300.25,
        "the newest trade (ts + 60) sets the price"
    );
}
