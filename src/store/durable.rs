//! The durable market state: one redb file under `store.data_dir` that the store
//! starts from and one background writer keeps up to date.
//!
//! What is kept: every symbol the store has had (name, full quote, or a tombstone
//! when removed at run time), its 1 s, 1 m and daily bars keyed by symbol, interval
//! and `t` (as far back as `store.history_*` retain), each publisher's highest
//! accepted `seq`, keyed by its key's fingerprint, and the current trading day.
//!
//! At start-up only quotes, `seq`s and the newest bar of each interval come back into
//! memory (so the bar in progress goes on): a restart costs the same however long
//! the history. Older bars are read from the file when a history page asks for them
//! ([`Durable::read_bars`]), in read transactions beside the writer's (redb is MVCC).
//!
//! One writer thread (redb is blocking) commits in groups: whatever changed, copied at
//! one consistent moment by [`SnapshotStore::take_changes`], at most every
//! `store.flush_interval_ms`, and at once when an acknowledgement waits for it. Every
//! waiter that change covers is released by that one commit. A failed commit marks
//! its changes changed again ([`SnapshotStore::requeue`]) and is retried from the
//! store's current state (quotes and bars are whole values, a `seq` only grows), so
//! the writer recovers by itself once the disk accepts writes again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::commit_metrics::{CommitMetrics, CommitStats};
use super::data_file::{stored_format_version, without_panics, WHAT_TO_DO};
use super::{Bar, Changes, Interval, Retention, SnapshotStore, StoreFull};
use crate::domain::{Field, Price, Quote, Symbol};

/// The file name inside `store.data_dir`.
pub const DATA_FILE: &str = "tickstream.redb";

/// The layout below; another number is refused, never guessed at. Version 1 kept
/// the bars in progress in [`BARS`] too; a version-1 file is migrated on open
/// ([`check_format`]), and a version-1 reader refuses a version-2 file (it would not
/// see the bars in progress).
pub(super) const FORMAT_VERSION: u64 = 2;

pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// symbol -> [`encode_symbol`].
pub(super) const SYMBOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("symbols");
/// (symbol, interval: 0 = 1 s, 1 = 1 m, 2 = 1 d, bar start ms) -> [`encode_bar`].
/// Daily bars (code 2) and the meta key `trading_day` came later within format 1:
/// additions an older reader skips, so the version did not change.
pub(super) const BARS: TableDefinition<(&str, u8, i64), &[u8]> = TableDefinition::new("bars");
/// (symbol, interval: 0 = 1 s, 1 = 1 m) -> the bar in progress: `t` (i64, little
/// endian) then [`encode_bar`]. Kept apart from [`BARS`] because it changes with
/// every trade: in a table of its own, a commit rewrites the few pages that hold the
/// symbols' bars in progress, where in [`BARS`] it rewrote a page per symbol and
/// interval (each symbol's newest bars sit in their own page). A bar moves to
/// [`BARS`] once a newer one starts. Format 2.
pub(super) const OPEN_BARS: TableDefinition<(&str, u8), &[u8]> = TableDefinition::new("open_bars");
/// publisher fingerprint -> highest accepted seq.
pub(super) const PUBLISHERS: TableDefinition<&str, u64> = TableDefinition::new("publishers");

/// Longest an acknowledgement waits for its commit before it is refused (a writer
/// that stopped making progress must not hold publishers for ever).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Longest pause between attempts while commits fail, whatever the flush interval.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The answer to a publisher whose batch could not be stored.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the market state cannot be stored right now (disk full or I/O error); retry later")]
pub struct StorageUnavailable;

/// What the writer reports; `/readyz` and waiting acknowledgements read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStatus {
    /// Every change up to this [`SnapshotStore::generation`] is committed.
    pub committed: u64,
    /// Failed commit attempts so far; a waiter fails when this moves.
    pub failures: u64,
    /// False from a failed commit until the next one succeeds.
    pub healthy: bool,
}

/// A cheap-to-clone handle to the writer. When the last one goes, the writer
/// commits what is pending and stops, releasing the file.
#[derive(Clone)]
pub struct Durable {
    shared: Arc<Shared>,
    thread: Arc<WriterThread>,
}

struct WriterThread {
    shared: Arc<Shared>,
    /// The writer's outcome is its last commit's: a failure there lost changes.
    handle: Mutex<Option<JoinHandle<anyhow::Result<()>>>>,
}

impl WriterThread {
    /// Ok once stopped with everything committed, or when stopped before.
    fn stop(&self) -> anyhow::Result<()> {
        request(&self.shared, |r| r.stop = true);
        let thread = self
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let stopped = match thread.map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(stopped)) => stopped,
            Some(Err(_)) => Err(anyhow::anyhow!(
                "the durable writer panicked; the changes since its last commit are lost"
            )),
        };
        // Release the file (readers answer `StorageUnavailable` from now on).
        *self
            .shared
            .database
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        stopped
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        // Only when nobody called `Durable::close` (which returns the error): the log
        // is all that is left to tell.
        if let Err(e) = self.stop() {
            error!(error = %format!("{e:#}"), "the durable writer stopped");
        }
    }
}

fn request(shared: &Shared, change: impl FnOnce(&mut Requests)) {
    let mut requests = shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    change(&mut requests);
    shared.wake.notify_one();
}

struct Shared {
    /// Std lock: flags only, never held across an `.await` or a commit.
    requests: Mutex<Requests>,
    wake: Condvar,
    status: watch::Sender<StorageStatus>,
    /// The open file, for history reads; `None` while the writer re-opens it after an
    /// I/O error (readers then answer [`StorageUnavailable`]). Std lock: held only
    /// to clone or swap the handle.
    database: RwLock<Option<Arc<Database>>>,
    metrics: CommitMetrics,
}

#[derive(Default)]
struct Requests {
    /// An acknowledgement waits: commit now instead of at the next interval.
    urgent: bool,
    stop: bool,
}

impl Durable {
    /// Opens (or creates) `<data_dir>/tickstream.redb`, restores its state into
    /// `store` (which holds the universe file's symbols), and starts the writer.
    /// A damaged, foreign or newer file is an error naming the file, never a silent
    /// fresh start.
    pub fn open(
        data_dir: &Path,
        store: &SnapshotStore,
        flush_interval: Duration,
        retention: Retention,
    ) -> anyhow::Result<Durable> {
        std::fs::create_dir_all(data_dir).with_context(|| {
            format!(
                "store.data_dir: cannot create {} (make it writable for this user, or set \
                 store.data_dir = \"\" to keep the market state in memory only)",
                data_dir.display()
            )
        })?;
        let path = data_dir.join(DATA_FILE);
        let database = open_database(&path)?;
        let restored =
            restore(&database, store).map_err(|e| match e.downcast_ref::<StoreFull>() {
                Some(full) => anyhow::anyhow!(
                    "data file {} holds more symbols than store.max_symbols ({}); raise it",
                    path.display(),
                    full.0
                ),
                None => damaged(&path, &format!("{e:#}")),
            })?;
        let run = next_run(&database)
            .with_context(|| format!("data file {}: cannot write it", path.display()))?;
        store.set_run(run);
        info!(file = %path.display(), symbols = restored, run, "market state restored");
        let (status, _) = watch::channel(StorageStatus {
            committed: store.generation(),
            failures: 0,
            healthy: true,
        });
        let database = Arc::new(database);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Requests::default()),
            wake: Condvar::new(),
            status,
            database: RwLock::new(Some(database.clone())),
            metrics: CommitMetrics::default(),
        });
        shared.metrics.measure_file(&path);
        let writer = Writer {
            path,
            database: Some(database),
            store: store.clone(),
            shared: shared.clone(),
            flush_interval,
            retention,
        };
        let thread = std::thread::Builder::new()
            .name("tickstream-durable".into())
            .spawn(move || writer.run())
            .context("cannot start the durable writer thread")?;
        Ok(Durable {
            shared: shared.clone(),
            thread: Arc::new(WriterThread {
                shared,
                handle: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn status(&self) -> StorageStatus {
        *self.shared.status.borrow()
    }

    /// Resolves once every change up to `generation` is committed to disk (fsynced),
    /// asking the writer to commit now. Fails when a commit attempt fails meanwhile.
    pub async fn wait_stored(&self, generation: u64) -> Result<(), StorageUnavailable> {
        let mut status = self.shared.status.subscribe();
        let start = *status.borrow_and_update();
        if start.committed >= generation {
            return Ok(());
        }
        request(&self.shared, |r| r.urgent = true);
        let covered = async {
            let now = status
                .wait_for(|s| s.committed >= generation || s.failures > start.failures)
                .await
                .map(|now| now.committed >= generation);
            matches!(now, Ok(true))
        };
        match tokio::time::timeout(MAX_WAIT, covered).await {
            Ok(true) => Ok(()),
            _ => Err(StorageUnavailable),
        }
    }

    /// The newest `limit` stored bars of `symbol` with `from <= t < to`, oldest first,
    /// and whether older ones in the range were left out. Blocking: call it off the
    /// async workers.
    pub fn read_bars(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<(Vec<Bar>, bool), StorageUnavailable> {
        let database = self
            .shared
            .database
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StorageUnavailable)?;
        let read = || -> anyhow::Result<(Vec<Bar>, bool)> {
            let transaction = database.begin_read()?;
            let table = transaction.open_table(BARS)?;
            let (key, code) = (symbol.as_str(), interval_code(interval));
            let mut bars = Vec::new();
            let mut more = false;
            if from < to {
                for entry in table.range((key, code, from)..(key, code, to))?.rev() {
                    let (k, v) = entry?;
                    if bars.len() == limit {
                        more = true;
                        break;
                    }
                    bars.push(decode_bar(k.value().2, v.value())?);
                }
            }
            bars.reverse();
            Ok((bars, more))
        };
        read().map_err(|error| {
            warn!(%symbol, error = %format!("{error:#}"), "cannot read stored bars");
            StorageUnavailable
        })
    }

    /// Commits everything still pending and stops the writer (graceful shutdown).
    /// Blocks until the last commit is done; an error when it failed, since the
    /// changes it held are then lost. (Later calls find the writer stopped: `Ok`.)
    pub fn close(&self) -> anyhow::Result<()> {
        self.thread.stop()
    }

    /// The writer's measurements, for `/metrics`.
    pub fn commit_stats(&self) -> CommitStats {
        self.shared.metrics.read()
    }
}

/// A user's mistake about the file, as one line that says what to do.
fn damaged(path: &Path, error: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "data file {} is damaged or not a tickstream file ({error}); {WHAT_TO_DO}",
        path.display()
    )
}

/// Opens the file, telling a file in use, a damaged or foreign file, and an I/O
/// problem apart. redb's own checks can panic on some damage in debug builds; that
/// is caught and reported as damage too.
fn open_database(path: &Path) -> anyhow::Result<Database> {
    let database = match without_panics(|| Database::create(path)) {
        None => return Err(damaged(path, &"unreadable structure")),
        Some(Ok(database)) => database,
        Some(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => anyhow::bail!(
            "data file {} is in use by another tickstream process; stop it, or give this one \
             its own store.data_dir",
            path.display()
        ),
        Some(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() != std::io::ErrorKind::InvalidData =>
        {
            anyhow::bail!("data file {}: cannot open it ({e})", path.display())
        }
        Some(Err(e)) => return Err(damaged(path, &e)),
    };
    check_format(&database, path)?;
    Ok(database)
}

/// A new file gets the format version; an existing one must carry ours.
fn check_format(database: &Database, path: &Path) -> anyhow::Result<()> {
    let read = database.begin_read().map_err(|e| damaged(path, &e))?;
    let tables = read
        .list_tables()
        .map_err(|e| damaged(path, &e))?
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect::<Vec<_>>();
    if tables.is_empty() {
        drop(read);
        let write = database.begin_write().map_err(|e| damaged(path, &e))?;
        {
            let mut meta = write.open_table(META).map_err(|e| damaged(path, &e))?;
            meta.insert("format_version", FORMAT_VERSION)
                .map_err(|e| damaged(path, &e))?;
            write.open_table(SYMBOLS).map_err(|e| damaged(path, &e))?;
            write.open_table(BARS).map_err(|e| damaged(path, &e))?;
            write.open_table(OPEN_BARS).map_err(|e| damaged(path, &e))?;
            write
                .open_table(PUBLISHERS)
                .map_err(|e| damaged(path, &e))?;
        }
        write
            .commit()
            .with_context(|| format!("data file {}: cannot write it", path.display()))?;
        return Ok(());
    }
    let version = stored_format_version(&read).map_err(|e| damaged(path, &e))?;
    match version {
        Some(FORMAT_VERSION) => Ok(()),
        Some(1) => {
            // Version 1 -> 2: the bars in progress get a table of their own. Until a
            // symbol's next commit its newest bar stays in `bars` only, which the
            // restore reads as well; nothing else changed.
            drop(read);
            let write = database.begin_write().map_err(|e| damaged(path, &e))?;
            {
                write.open_table(OPEN_BARS).map_err(|e| damaged(path, &e))?;
                let mut meta = write.open_table(META).map_err(|e| damaged(path, &e))?;
                meta.insert("format_version", FORMAT_VERSION)
                    .map_err(|e| damaged(path, &e))?;
            }
            write
                .commit()
                .with_context(|| format!("data file {}: cannot migrate it", path.display()))?;
            tracing::info!(file = %path.display(), "data file migrated from format 1 to 2");
            Ok(())
        }
        Some(other) => anyhow::bail!(
            "data file {} has format version {other}, this tickstream reads version \
             {FORMAT_VERSION}; run the release that wrote it, or `tickstream data reset --yes` \
             to set it aside and start empty",
            path.display()
        ),
        None => Err(damaged(path, &"no format version")),
    }
}

/// Counts this start in the file ("runs" in the meta table) and returns its number.
fn next_run(database: &Database) -> anyhow::Result<u64> {
    let mut write = database.begin_write()?;
    write.set_quick_repair(true);
    let run = {
        let mut meta = write.open_table(META)?;
        let run = meta.get("runs")?.map_or(0, |v| v.value()) + 1;
        meta.insert("runs", run)?;
        run
    };
    write.commit()?;
    Ok(run)
}

/// Puts the stored state into `store`; returns the number of live symbols restored.
/// Symbols the universe file does not have are created in their stored order.
fn restore(database: &Database, store: &SnapshotStore) -> anyhow::Result<usize> {
    let read = database.begin_read()?;
    if let Some(day) = read.open_table(META)?.get("trading_day")? {
        store.restore_trading_day(day.value() as i64);
    }
    let symbols = read.open_table(SYMBOLS)?;
    let bars = read.open_table(BARS)?;
    let open_bars = read.open_table(OPEN_BARS)?;
    let mut live = Vec::new();
    for entry in symbols.iter()? {
        let (key, value) = entry?;
        let symbol = Symbol::parse(key.value())
            .map_err(|_| anyhow::anyhow!("bad symbol {:?}", key.value()))?;
        match decode_symbol(value.value()).with_context(|| format!("bad record for {symbol}"))? {
            Some((name, order, quote)) => live.push((order, symbol, name, quote)),
            None => store.restore_removal(&symbol),
        }
    }
    live.sort_by_key(|&(order, ..)| order);
    let restored = live.len();
    for (order, symbol, name, quote) in live {
        // The newest bar of each interval: the one in progress goes on from it.
        let mut kept = Vec::new();
        for interval in Interval::ALL {
            let code = interval_code(interval);
            let newest = bars
                .range((symbol.as_str(), code, i64::MIN)..=(symbol.as_str(), code, i64::MAX))?
                .next_back()
                .transpose()?;
            let closed = match newest {
                Some((key, value)) => {
                    Some(decode_bar(key.value().2, value.value()).context("bad bar")?)
                }
                None => None,
            };
            let open = match open_bars.get((symbol.as_str(), code))? {
                Some(value) => Some(decode_open_bar(value.value()).context("bad bar")?),
                None => None,
            };
            // The bar in progress, unless a closed one is newer (a file migrated from
            // format 1 keeps its newest bar in `bars` until that symbol's next commit).
            let newest = match (closed, open) {
                (Some(closed), Some(open)) if closed.t > open.t => Some(closed),
                (closed, open) => open.or(closed),
            };
            if let Some(bar) = newest {
                kept.push((interval, vec![bar]));
            }
        }
        store.restore_symbol(symbol, &name, order, quote, kept)?;
    }
    for entry in read.open_table(PUBLISHERS)?.iter()? {
        let (fingerprint, seq) = entry?;
        store.restore_publisher_seq(fingerprint.value(), seq.value());
    }
    Ok(restored)
}

struct Writer {
    path: PathBuf,
    /// `None` after a failed commit: redb asks for a re-open after an I/O error.
    database: Option<Arc<Database>>,
    store: SnapshotStore,
    shared: Arc<Shared>,
    flush_interval: Duration,
    retention: Retention,
}

impl Writer {
    /// Commits until asked to stop; the outcome of the last commit.
    fn run(mut self) -> anyhow::Result<()> {
        let (reason, last) = loop {
            let stop = {
                let requests = self
                    .shared
                    .requests
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let healthy = self.shared.status.borrow().healthy;
                // After a failure wait a whole pause: an urgent request must not turn a
                // full disk into a busy loop.
                let pause = if healthy {
                    self.flush_interval
                } else {
                    self.flush_interval.min(RETRY_INTERVAL)
                };
                let (mut requests, _) = self
                    .shared
                    .wake
                    .wait_timeout_while(requests, pause, |r| !(r.stop || (r.urgent && healthy)))
                    .unwrap_or_else(PoisonError::into_inner);
                requests.urgent = false;
                requests.stop
            };
            let flushed = self.flush();
            if stop {
                break ("shutdown", flushed);
            }
        };
        let status = *self.shared.status.borrow();
        info!(
            reason,
            committed = status.committed,
            healthy = status.healthy,
            "durable writer stopped"
        );
        last.with_context(|| {
            let lost = self.store.generation().saturating_sub(status.committed);
            format!(
                "data file {}: the final commit failed; {lost} changes since the last commit \
                 are lost (none was acknowledged to a publisher or an admin)",
                self.path.display()
            )
        })
    }

    /// Copies what changed (briefly holding the store's gate) and commits it. An error
    /// when the commit failed (the changes are marked to be taken again).
    fn flush(&mut self) -> anyhow::Result<()> {
        let status = *self.shared.status.borrow();
        if self.store.generation() <= status.committed {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let changes = self.store.take_changes();
        let generation = changes.generation;
        let symbols = changes.symbols.len();
        let committed = self.commit(&changes);
        // Measured before waiters are released, so a scrape after an answer sees its
        // commit; the stat costs microseconds against the fsync's milliseconds.
        self.shared.metrics.measure_file(&self.path);
        match committed {
            Ok(()) => {
                let elapsed = started.elapsed();
                self.shared.metrics.commit_took(elapsed);
                debug!(
                    symbols,
                    elapsed_us = elapsed.as_micros() as u64,
                    "market state committed"
                );
                // THE DURABILITY MOMENT: the commit above returned after redb's fsync,
                // so every change up to `generation` (ticks with their publisher's seq,
                // universe changes) is on disk. Only now are the acknowledgements that
                // wait for it released (`Durable::wait_stored`).
                self.shared.status.send_modify(|s| {
                    if !s.healthy {
                        info!(file = %self.path.display(), "market state stored again");
                    }
                    s.committed = s.committed.max(generation);
                    s.healthy = true;
                });
                Ok(())
            }
            Err(error) => {
                self.store.requeue(&changes);
                // Readers let go of the old handle so that it can be re-opened.
                self.database = None;
                *self
                    .shared
                    .database
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                warn!(file = %self.path.display(), error = %format!("{error:#}"), "cannot store the market state; retrying");
                self.shared.status.send_modify(|s| {
                    s.failures += 1;
                    s.healthy = false;
                });
                Err(error)
            }
        }
    }

    fn commit(&mut self, changes: &Changes) -> anyhow::Result<()> {
        if self.database.is_none() {
            let database = Arc::new(Database::create(&self.path).context("re-open")?);
            *self
                .shared
                .database
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(database.clone());
            self.database = Some(database);
        }
        let database = self.database.as_ref().expect("opened just above");
        let mut write = database.begin_write()?;
        // Quick repair: the allocator state is saved with each commit (and commits are
        // two-phase), so a start after a crash need not walk the whole file to rebuild
        // it; without it, such a start took ~2 s per GB (docs/BENCHMARKS.md, "Ready
        // after restart"). The cost: a second fsync per group commit.
        write.set_quick_repair(true);
        {
            let mut symbols = write.open_table(SYMBOLS)?;
            let mut bars = write.open_table(BARS)?;
            let mut open_bars = write.open_table(OPEN_BARS)?;
            let mut publishers = write.open_table(PUBLISHERS)?;
            if let Some(day) = changes.trading_day {
                write.open_table(META)?.insert("trading_day", day as u64)?;
            }
            for change in &changes.symbols {
                let key = change.symbol.as_str();
                if change.removed {
                    symbols.insert(key, encode_symbol(None).as_slice())?;
                    for interval in Interval::ALL {
                        let code = interval_code(interval);
                        bars.retain_in((key, code, i64::MIN)..=(key, code, i64::MAX), |_, _| {
                            false
                        })?;
                        open_bars.remove((key, code))?;
                    }
                    continue;
                }
                let record = encode_symbol(Some((&change.name, change.order, &change.quote)));
                symbols.insert(key, record.as_slice())?;
                for changed in &change.bars {
                    let code = interval_code(changed.interval);
                    // The last changed bar is the ring's newest: for seconds and
                    // minutes the bar in progress (daily bars are all closed; the
                    // day in progress is the quote's).
                    let (closed, open) = match changed.bars.split_last() {
                        Some((open, closed)) if changed.interval != Interval::OneDay => {
                            (closed, Some(open))
                        }
                        _ => (changed.bars.as_slice(), None),
                    };
                    for bar in closed {
                        bars.insert((key, code, bar.t), encode_bar(bar).as_slice())?;
                    }
                    if let Some(open) = open {
                        open_bars.insert((key, code), encode_open_bar(open).as_slice())?;
                    }
                    let newest = changed.bars.last().map(|bar| bar.t);
                    if let Some(newest) = newest.filter(|_| changed.opened) {
                        // A new bar started: those beyond the retention leave the file.
                        let cutoff = newest.saturating_sub(self.retention.of(changed.interval));
                        bars.retain_in((key, code, i64::MIN)..(key, code, cutoff), |_, _| false)?;
                    }
                }
            }
            for (fingerprint, seq) in &changes.publishers {
                let stored = publishers.get(&**fingerprint)?.map(|v| v.value());
                if stored.is_none_or(|stored| *seq > stored) {
                    publishers.insert(&**fingerprint, *seq)?;
                }
            }
        }
        // Durability::Immediate (redb's default): commit returns after fsync.
        write.commit()?;
        Ok(())
    }
}

pub(super) fn interval_code(interval: Interval) -> u8 {
    match interval {
        Interval::OneSecond => 0,
        Interval::OneMinute => 1,
        Interval::OneDay => 2,
    }
}

/// `[live: u8][order: u64][present: u16][count: u8][values: count × i64][name: UTF-8]`,
/// all little endian; a removed symbol is the single byte 0.
fn encode_symbol(live: Option<(&str, u64, &Quote)>) -> Vec<u8> {
    let Some((name, order, quote)) = live else {
        return vec![0];
    };
    let (present, values) = quote.to_parts();
    let mut out = Vec::with_capacity(HEAD + 8 * Field::COUNT + name.len());
    out.push(1);
    out.extend_from_slice(&order.to_le_bytes());
    out.extend_from_slice(&present.to_le_bytes());
    out.push(Field::COUNT as u8);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out
}

/// The bytes before a live record's values: kind, order, present, count.
const HEAD: usize = 1 + 8 + 2 + 1;

/// The name, order and quote of a live symbol, `None` for a removed one.
pub(super) fn decode_symbol(bytes: &[u8]) -> anyhow::Result<Option<(String, u64, Quote)>> {
    match bytes.first() {
        Some(0) if bytes.len() == 1 => return Ok(None),
        Some(1) => {}
        _ => anyhow::bail!("unknown record kind"),
    }
    let fields = 8 * Field::COUNT;
    anyhow::ensure!(
        bytes.len() >= HEAD + fields && usize::from(bytes[HEAD - 1]) == Field::COUNT,
        "quote of another layout"
    );
    let order = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let present = u16::from_le_bytes([bytes[9], bytes[10]]);
    let values = std::array::from_fn(|i| {
        let at = HEAD + 8 * i;
        i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    });
    let name = std::str::from_utf8(&bytes[HEAD + fields..]).context("name is not UTF-8")?;
    Ok(Some((
        name.to_owned(),
        order,
        Quote::from_parts(present, values),
    )))
}

/// `o, h, l, c` (micros, i64) and `v` (u64), little endian.
fn encode_bar(bar: &Bar) -> [u8; 40] {
    let mut out = [0; 40];
    let words = [
        bar.o.micros(),
        bar.h.micros(),
        bar.l.micros(),
        bar.c.micros(),
        bar.v as i64,
    ];
    for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// The bar in progress: `t` then [`encode_bar`].
fn encode_open_bar(bar: &Bar) -> [u8; 48] {
    let mut out = [0; 48];
    out[..8].copy_from_slice(&bar.t.to_le_bytes());
    out[8..].copy_from_slice(&encode_bar(bar));
    out
}

pub(super) fn decode_open_bar(bytes: &[u8]) -> anyhow::Result<Bar> {
    anyhow::ensure!(bytes.len() == 48, "bar in progress of another layout");
    let t = i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    decode_bar(t, &bytes[8..])
}

pub(super) fn decode_bar(t: i64, bytes: &[u8]) -> anyhow::Result<Bar> {
    anyhow::ensure!(bytes.len() == 40, "bar of another layout");
    let word = |i: usize| i64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    Ok(Bar {
        t,
        o: Price::from_micros(word(0)),
        h: Price::from_micros(word(1)),
        l: Price::from_micros(word(2)),
        c: Price::from_micros(word(3)),
        v: word(4) as u64,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::{SymbolId, Tick};

    /// A directory under the system temp dir, removed on drop.
    pub(in crate::store) struct TempDir(pub(in crate::store) PathBuf);

    impl TempDir {
        pub(in crate::store) fn new(name: &str) -> TempDir {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "tickstream-durable-{name}-{}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(in crate::store) fn universe() -> SnapshotStore {
        let store = SnapshotStore::new(16);
        for s in ["AAPL", "MSFT"] {
            store
                .add_symbol(Symbol::parse(s).unwrap(), s, Price::parse("100").ok())
                .unwrap();
        }
        store
    }

    fn trade(id: u32, price: &str, size: u64, ts: i64) -> Tick {
        Tick {
            symbol: SymbolId(id),
            price: Price::parse(price).ok(),
            size: Some(size),
            ts,
            ..Tick::default()
        }
    }

    pub(in crate::store) const FLUSH: Duration = Duration::from_millis(50);
    /// Short, to see pruning: 10 s of seconds, 2 days of minutes, 3 days of days.
    const RETAIN: Retention = Retention {
        second_bars_ms: 10_000,
        minute_bars_ms: 2 * DAY,
        day_bars_ms: 3 * DAY,
    };
    const DAY: i64 = 86_400_000;
    pub(in crate::store) const KEEP_ALL: Retention = Retention {
        second_bars_ms: i64::MAX / 2,
        minute_bars_ms: i64::MAX / 2,
        day_bars_ms: i64::MAX / 2,
    };

    /// Everything a history page shows of one interval.
    async fn all_bars(
        store: &SnapshotStore,
        durable: &Durable,
        id: SymbolId,
        interval: Interval,
    ) -> Vec<Bar> {
        let page = crate::store::history_page(
            store,
            Some(durable),
            id,
            interval,
            i64::MIN,
            i64::MAX,
            5_000,
        )
        .await
        .unwrap();
        assert!(!page.more);
        page.bars
    }

    #[tokio::test]
    async fn a_restart_sees_exactly_what_was_stored() {
        let dir = TempDir::new("roundtrip");
        let store = universe();
        let durable = Durable::open(&dir.0, &store, FLUSH, KEEP_ALL).unwrap();
        let publisher: Arc<str> = Arc::from("abcd");
        store.set_trading_day(DAY);
        store.apply_batch(&[trade(0, "100.25", 4, 500)]);
        store.roll_over(2 * DAY);
        store.apply_publisher_batch(
            &[trade(0, "101", 10, 1_000), trade(0, "99", 5, 62_000)],
            Some((&publisher, 7)),
        );
        let (newco, _) = store
            .upsert_symbol(Symbol::parse("NEWCO").unwrap(), Some("New Co"), None)
            .unwrap();
        store.apply_batch(&[trade(newco.0, "5", 3, 2_000)]);
        store.remove_symbol(&Symbol::parse("MSFT").unwrap());
        durable.wait_stored(store.generation()).await.unwrap();
        let stored = store.generation();
        // Not waited for: committed by the graceful close.
        store.apply_batch(&[trade(0, "102", 1, 63_000)]);
        durable.close().unwrap();
        assert!(durable.status().committed > stored);

        let restarted = universe();
        let reopened = Durable::open(&dir.0, &restarted, FLUSH, KEEP_ALL).unwrap();
        let aapl = restarted.lookup_str("AAPL").unwrap();
        assert_eq!(restarted.read(aapl).0, store.read(SymbolId(0)).0);
        assert_eq!(restarted.trading_day(), Some(2 * DAY));
        for interval in Interval::ALL {
            let before = store.bars(SymbolId(0), interval, 1_000);
            assert!(!before.is_empty(), "{interval:?}");
            assert_eq!(
                all_bars(&restarted, &reopened, aapl, interval).await,
                before,
                "{interval:?}"
            );
            // Memory starts from the newest stored bar only (for days, the day in
            // progress comes from the quote as well).
            let in_memory = 1 + usize::from(interval == Interval::OneDay);
            assert_eq!(restarted.bars(aapl, interval, 1_000).len(), in_memory);
        }
        let newco_again = restarted.lookup_str("NEWCO").expect("added at run time");
        assert_eq!(&*restarted.name(newco_again), "New Co");
        assert_eq!(restarted.read(newco_again).0, store.read(newco).0);
        assert_eq!(restarted.lookup_str("MSFT"), None, "removed stays removed");
        assert_eq!(restarted.publisher_seq("abcd"), Some(7));
    }

    /// The live symbols in universe order.
    fn names(store: &SnapshotStore) -> Vec<String> {
        store
            .symbols()
            .map(|info| info.symbol.to_string())
            .collect()
    }

    #[tokio::test]
    async fn symbols_added_at_run_time_come_back_in_the_order_they_were_added() {
        let dir = TempDir::new("order");
        let add = |store: &SnapshotStore, s: &str| {
            store
                .upsert_symbol(Symbol::parse(s).unwrap(), None, None)
                .unwrap();
        };
        // Run 1: ids grow past the ones the next run will hand out.
        let store = universe();
        let durable = Durable::open(&dir.0, &store, FLUSH, RETAIN).unwrap();
        for s in ["ZZZ", "XA", "XB", "MMM"] {
            add(&store, s);
        }
        for s in ["XA", "XB"] {
            store.remove_symbol(&Symbol::parse(s).unwrap());
        }
        durable.close().unwrap();
        // Run 2: a new symbol gets a lower id than MMM had, but was added later.
        let store = universe();
        let durable = Durable::open(&dir.0, &store, FLUSH, RETAIN).unwrap();
        assert_eq!(names(&store), ["AAPL", "MSFT", "ZZZ", "MMM"]);
        add(&store, "AAA");
        durable.close().unwrap();

        let store = universe();
        let _durable = Durable::open(&dir.0, &store, FLUSH, RETAIN).unwrap();
        assert_eq!(names(&store), ["AAPL", "MSFT", "ZZZ", "MMM", "AAA"]);
    }

    #[test]
    fn a_damaged_file_is_refused_naming_it() {
        let dir = TempDir::new("damaged");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join(DATA_FILE);
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let error = Durable::open(&dir.0, &universe(), FLUSH, RETAIN)
            .err()
            .expect("refused");
        let text = format!("{error:#}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("tickstream data reset --yes"), "{text}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            vec![0x5a; 8192],
            "left as it was"
        );
    }

    #[test]
    fn a_file_in_use_is_refused_saying_so() {
        let dir = TempDir::new("in-use");
        let _first = Durable::open(&dir.0, &universe(), FLUSH, RETAIN).unwrap();
        let error = Durable::open(&dir.0, &universe(), FLUSH, RETAIN)
            .err()
            .expect("refused");
        assert!(
            format!("{error:#}").contains("in use by another"),
            "{error:#}"
        );
    }

    #[tokio::test]
    async fn a_universe_too_big_for_max_symbols_says_which_setting() {
        let dir = TempDir::new("full");
        let store = universe();
        let durable = Durable::open(&dir.0, &store, FLUSH, RETAIN).unwrap();
        store
            .add_symbol(Symbol::parse("EXTRA").unwrap(), "Extra", None)
            .unwrap();
        durable.wait_stored(store.generation()).await.unwrap();
        durable.close().unwrap();
        let small = SnapshotStore::new(2);
        for s in ["AAPL", "MSFT"] {
            small
                .add_symbol(Symbol::parse(s).unwrap(), s, None)
                .unwrap();
        }
        let error = Durable::open(&dir.0, &small, FLUSH, RETAIN)
            .err()
            .expect("refused");
        assert!(format!("{error:#}").contains("raise it"), "{error:#}");
    }

    #[test]
    fn another_format_version_is_refused() {
        let dir = TempDir::new("version");
        drop(Durable::open(&dir.0, &universe(), FLUSH, RETAIN).unwrap());
        let database = Database::create(dir.0.join(DATA_FILE)).unwrap();
        let write = database.begin_write().unwrap();
        write
            .open_table(META)
            .unwrap()
            .insert("format_version", FORMAT_VERSION + 1)
            .unwrap();
        write.commit().unwrap();
        drop(database);
        let error = Durable::open(&dir.0, &universe(), FLUSH, RETAIN)
            .err()
            .expect("refused");
        assert!(
            format!("{error:#}").contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{error:#}"
        );
    }

    #[tokio::test]
    async fn a_format_1_file_is_migrated_and_its_bars_in_progress_go_on() {
        // Arrange: trades stored, then the file made what format 1 wrote: the bars
        // in progress in `bars`, no `open_bars` table, version 1.
        let dir = TempDir::new("migrate");
        let store = universe();
        let durable = Durable::open(&dir.0, &store, FLUSH, RETAIN).unwrap();
        store.apply_batch(&[trade(0, "10", 1, 1_000), trade(0, "11", 2, 2_500)]);
        durable.wait_stored(store.generation()).await.unwrap();
        durable.close().unwrap();
        drop(durable);
        let path = dir.0.join(DATA_FILE);
        {
            let database = Database::create(&path).unwrap();
            let write = database.begin_write().unwrap();
            {
                let open = write.open_table(OPEN_BARS).unwrap();
                let mut bars = write.open_table(BARS).unwrap();
                for entry in open.iter().unwrap() {
                    let (key, value) = entry.unwrap();
                    let (symbol, code) = key.value();
                    let bar = decode_open_bar(value.value()).unwrap();
                    bars.insert((symbol, code, bar.t), encode_bar(&bar).as_slice())
                        .unwrap();
                }
            }
            write.delete_table(OPEN_BARS).unwrap();
            write
                .open_table(META)
                .unwrap()
                .insert("format_version", 1)
                .unwrap();
            write.commit().unwrap();
        }
        assert_eq!(
            crate::store::data_file::check(&path)
                .unwrap()
                .format_version,
            Some(1),
            "`data check` reads a format 1 file"
        );

        // Act: open (migrates), a trade in the same second, close, open again.
        let store = universe();
        let durable = Durable::open(&dir.0, &store, FLUSH, RETAIN).unwrap();
        store.apply_batch(&[trade(0, "12", 4, 2_700)]);
        durable.wait_stored(store.generation()).await.unwrap();
        durable.close().unwrap();
        drop(durable);
        let restarted = universe();
        let reopened = Durable::open(&dir.0, &restarted, FLUSH, RETAIN).unwrap();

        // Assert: the bar in progress went on (v 2 + 4), nothing doubled or lost.
        let seconds = all_bars(&restarted, &reopened, SymbolId(0), Interval::OneSecond).await;
        let summary: Vec<(i64, u64, Price)> = seconds.iter().map(|b| (b.t, b.v, b.c)).collect();
        let p = |text| Price::parse(text).unwrap();
        assert_eq!(summary, vec![(1_000, 1, p("10")), (2_000, 6, p("12"))]);
        reopened.close().unwrap();
        drop(reopened);
        assert_eq!(
            crate::store::data_file::check(&path)
                .unwrap()
                .format_version,
            Some(FORMAT_VERSION)
        );
    }

    #[tokio::test]
    async fn bars_beyond_the_retention_leave_the_file_and_trades_go_on_after_a_restart() {
        let dir = TempDir::new("retention");
        let store = universe();
        let durable = Durable::open(&dir.0, &store, FLUSH, RETAIN).unwrap();
        // 30 seconds of 1 s bars; the file keeps the newest 10 s (and the minute).
        for second in 0..30 {
            store.apply_batch(&[trade(0, "10", 1, second * 1_000)]);
            durable.wait_stored(store.generation()).await.unwrap();
        }
        durable.close().unwrap();
        let restarted = universe();
        let reopened = Durable::open(&dir.0, &restarted, FLUSH, RETAIN).unwrap();
        let seconds = all_bars(&restarted, &reopened, SymbolId(0), Interval::OneSecond).await;
        let ts: Vec<i64> = seconds.iter().map(|bar| bar.t).collect();
        assert_eq!(ts, (19..30).map(|s| s * 1_000).collect::<Vec<_>>());
        // The bar in progress goes on from what was stored, never restarts.
        restarted.apply_batch(&[trade(0, "11", 2, 29_500)]);
        let minute = all_bars(&restarted, &reopened, SymbolId(0), Interval::OneMinute).await;
        assert_eq!(
            (minute.len(), minute[0].v, minute[0].c),
            (1, 32, Price::parse("11").unwrap())
        );
        // Paging back from the first bar of a page reaches the rest, once each.
        let page = crate::store::history_page(
            &restarted,
            Some(&reopened),
            SymbolId(0),
            Interval::OneSecond,
            i64::MIN,
            i64::MAX,
            4,
        )
        .await
        .unwrap();
        assert!(page.more);
        assert_eq!(page.bars[0].t, 26_000);
        let older = crate::store::history_page(
            &restarted,
            Some(&reopened),
            SymbolId(0),
            Interval::OneSecond,
            i64::MIN,
            page.bars[0].t,
            100,
        )
        .await
        .unwrap();
        assert_eq!((older.bars.len(), older.more), (7, false));
        assert_eq!(older.bars.last().unwrap().t, 25_000);
    }

    #[test]
    fn records_round_trip() {
        let mut quote = Quote::with_previous_close(Price::parse("12.5").ok());
        quote.set(Field::V, 42);
        let bytes = encode_symbol(Some(("Name", 7 << 32 | 3, &quote)));
        assert_eq!(
            decode_symbol(&bytes).unwrap(),
            Some(("Name".to_owned(), 7 << 32 | 3, quote))
        );
        assert_eq!(decode_symbol(&encode_symbol(None)).unwrap(), None);
        assert!(decode_symbol(&[7]).is_err());
        let bar = Bar {
            t: 60_000,
            o: Price::parse("1").unwrap(),
            h: Price::parse("2").unwrap(),
            l: Price::parse("0.5").unwrap(),
            c: Price::parse("1.5").unwrap(),
            v: 99,
        };
        assert_eq!(decode_bar(60_000, &encode_bar(&bar)).unwrap(), bar);
    }
}
