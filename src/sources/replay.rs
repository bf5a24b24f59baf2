//! CSV replay: a recorded tick file played back as a live feed.
//!
//! Format (header required, one tick per line, empty cells allowed):
//! `ts,symbol,price,size,bid,bid_size,ask,ask_size`. `ts` (milliseconds) only paces the
//! replay: each tick is applied at its offset from the first row divided by the speed
//! factor, stamped with the current time, so a looped file keeps producing in-order
//! ticks. Prices are read as exact decimal text.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::{Broker, TickBatch};
use crate::domain::{now_millis, ParsedTick, Price, Symbol};
use crate::store::{split_csv_line, SnapshotStore};

const HEADER: &str = "ts,symbol,price,size,bid,bid_size,ask,ask_size";

/// A sample recording shipped with the project (5 symbols, about a minute).
pub const SAMPLE_CSV: &str = include_str!("../../config/sample-ticks.csv");

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRow {
    /// Milliseconds after the first row.
    pub offset_ms: i64,
    /// The tick as published (no `ts`: replayed ticks are stamped when applied).
    pub tick: ParsedTick,
}

/// Parses a recording; errors name the line.
pub fn parse_replay(csv: &str) -> anyhow::Result<Vec<ReplayRow>> {
    let mut lines = csv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.trim() == HEADER => {}
        _ => bail!("a replay CSV must start with the header `{HEADER}`"),
    }
    let mut rows: Vec<(i64, ReplayRow)> = Vec::new();
    for (index, line) in lines {
        let line_no = index + 1;
        let row = parse_row(line).with_context(|| format!("replay CSV line {line_no}"))?;
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("the replay CSV has no ticks");
    }
    rows.sort_by_key(|(ts, _)| *ts);
    let first = rows[0].0;
    Ok(rows
        .into_iter()
        .map(|(ts, mut row)| {
            row.offset_ms = ts - first;
            row
        })
        .collect())
}

fn parse_row(line: &str) -> anyhow::Result<(i64, ReplayRow)> {
    let cells = split_csv_line(line)?;
    let [ts, symbol, price, size, bid, bid_size, ask, ask_size] = cells.as_slice() else {
        bail!("expected 8 cells, found {}", cells.len());
    };
    let price_cell = |name: &str, cell: &str| -> anyhow::Result<Option<Price>> {
        if cell.trim().is_empty() {
            return Ok(None);
        }
        let price = Price::parse(cell.trim()).with_context(|| format!("{name} {cell:?}"))?;
        if price.micros() <= 0 {
            bail!("{name} must be positive");
        }
        Ok(Some(price))
    };
    let size_cell = |name: &str, cell: &str| -> anyhow::Result<Option<u64>> {
        let cell = cell.trim();
        (!cell.is_empty())
            .then(|| {
                cell.parse::<u64>()
                    .with_context(|| format!("{name} {cell:?}"))
            })
            .transpose()
    };
    let ts: i64 = ts.trim().parse().with_context(|| format!("ts {ts:?}"))?;
    let tick = ParsedTick {
        symbol: Symbol::parse(symbol.trim())?,
        price: price_cell("price", price)?,
        size: size_cell("size", size)?,
        bid: price_cell("bid", bid)?,
        bid_size: size_cell("bid_size", bid_size)?,
        ask: price_cell("ask", ask)?,
        ask_size: size_cell("ask_size", ask_size)?,
        ts: None,
        seq: None,
    };
    let row = ReplayRow { offset_ms: 0, tick };
    if row.tick.price.is_none() && row.tick.bid.is_none() && row.tick.ask.is_none() {
        bail!("a tick needs at least one of price, bid, ask");
    }
    Ok((ts, row))
}

/// Plays `rows` into the store at `speed`, looping when `repeat`, until shutdown.
/// Rows for symbols not in the universe are skipped (and reported once).
pub async fn run_replay(
    rows: Vec<ReplayRow>,
    speed: f64,
    repeat: bool,
    store: SnapshotStore,
    broker: Broker,
    shutdown: CancellationToken,
) {
    info!(ticks = rows.len(), speed, repeat, "replay started");
    // Only the cluster's feed-source leader plays (always true on one instance);
    // the others follow the same clock and skip, so a successor resumes in step.
    let leader = broker.source_leadership();
    let mut warned: Vec<Symbol> = Vec::new();
    let mut batch = TickBatch::new(0);
    loop {
        let start = Instant::now();
        let mut next = 0;
        while next < rows.len() {
            let due = start + Duration::from_secs_f64(rows[next].offset_ms as f64 / 1000.0 / speed);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sleep_until(due) => {}
            }
            let now = Instant::now();
            batch.received_at = now_millis();
            batch.ticks.clear();
            while next < rows.len()
                && start + Duration::from_secs_f64(rows[next].offset_ms as f64 / 1000.0 / speed)
                    <= now
            {
                let row = &rows[next];
                next += 1;
                if store.lookup(&row.tick.symbol).is_none() {
                    if !warned.contains(&row.tick.symbol) {
                        warn!(symbol = %row.tick.symbol, "replay: symbol not in the universe; its ticks are skipped");
                        warned.push(row.tick.symbol.clone());
                    }
                    continue;
                }
                batch.ticks.push(row.tick.clone());
            }
            if *leader.borrow() {
                broker.publish(&batch).await;
            }
        }
        if !repeat {
            info!("replay finished");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_sample_parses() {
        let rows = parse_replay(SAMPLE_CSV).unwrap();
        assert!(rows.len() >= 100);
        assert_eq!(rows[0].offset_ms, 0);
        assert!(rows.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms));
    }

    #[test]
    fn rows_keep_exact_decimals_and_sort_by_time() {
        let csv = format!(
            "{HEADER}\n2000,msft,415.5,10,,,,\n1000,AAPL,189.12,100,189.11,300,189.13,200\n"
        );
        let rows = parse_replay(&csv).unwrap();
        assert_eq!(rows[0].tick.symbol.as_str(), "AAPL");
        assert_eq!(rows[0].tick.price.unwrap().to_string(), "189.12");
        assert_eq!((rows[1].offset_ms, rows[1].tick.bid), (1000, None));
    }

    #[test]
    fn errors_name_the_line() {
        for (csv, needle) in [
            (format!("{HEADER}\n1,AAPL,abc,1,,,,\n"), "line 2"),
            (
                format!("{HEADER}\n1,AAPL,1,1,,,,\nx,AAPL,1,1,,,,\n"),
                "line 3",
            ),
            (format!("{HEADER}\n1,AAPL,,,,,,\n"), "at least one"),
            ("ts,symbol\n".to_string(), "header"),
        ] {
            let err = format!("{:#}", parse_replay(&csv).unwrap_err());
            assert!(err.contains(needle), "{err}");
        }
    }

    #[actix_web::test]
    async fn replays_into_the_store_at_speed() {
        let store = SnapshotStore::new(4);
        store
            .add_symbol(Symbol::parse("AAPL").unwrap(), "Apple", None)
            .unwrap();
        let csv = format!("{HEADER}\n0,AAPL,10,1,,,,\n1000,AAPL,11,2,,,,\n2000,ZZZ,1,1,,,,\n");
        let rows = parse_replay(&csv).unwrap();
        // 2 s of recording at 100x: done in about 20 ms.
        run_replay(
            rows,
            100.0,
            false,
            store.clone(),
            Broker::memory(store.clone()),
            CancellationToken::new(),
        )
        .await;
        let (quote, _) = store.read(crate::domain::SymbolId(0));
        assert_eq!(quote.get(crate::domain::Field::V), Some(3));
        assert_eq!(
            quote.price(crate::domain::Field::P).unwrap().to_string(),
            "11"
        );
    }
}
