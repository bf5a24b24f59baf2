//! The data file as an operator handles it while no server runs: `tickstream data
//! check` reads every record of `<store.data_dir>/tickstream.redb` and says whether a
//! start would accept it, and `tickstream data reset` sets the file aside so that the
//! next start begins empty. Neither deletes anything.
//!
//! Both refuse a file that a running server holds: redb locks the file for the one
//! process that writes it, and a read-only open fails against that lock.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use redb::{
    DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, StorageError,
};

use super::durable::{
    decode_bar, decode_open_bar, decode_symbol, interval_code, BARS, FORMAT_VERSION, META,
    OPEN_BARS, PUBLISHERS, SYMBOLS,
};
use super::Interval;
use crate::domain::Symbol;

/// What a start refused because of its data file tells the operator to do next.
pub(super) const WHAT_TO_DO: &str = "run `tickstream data check` for details, or \
     `tickstream data reset --yes` to set it aside and start empty";

/// The intervals the file keeps bars for, in the order a report lists them.
const INTERVALS: [Interval; 3] = Interval::ALL;

/// Why `data check` or `data reset` could not say "sound" or do its work; each is one
/// line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    #[error("no data file at {} (the next start creates an empty one)", .0.display())]
    Missing(PathBuf),
    #[error("data file {} is in use by a running tickstream; stop it first", .0.display())]
    InUse(PathBuf),
    #[error(
        "data file {} is damaged or not a tickstream file ({reason}); `tickstream data reset \
         --yes` sets it aside so that the next start begins empty",
        path.display()
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "data file {} has format version {found}, this tickstream reads version \
         {FORMAT_VERSION}; run the release that wrote it, or `tickstream data reset --yes` \
         to set it aside and start empty",
        path.display()
    )]
    OtherVersion { path: PathBuf, found: u64 },
    #[error("data file {}: {what} ({source})", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

/// What `data check` found in a sound file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub path: PathBuf,
    /// `None` for a file without tables yet, which a start accepts as new.
    pub format_version: Option<u64>,
    pub bytes: u64,
    pub live_symbols: u64,
    pub removed_symbols: u64,
    /// Bars per interval, 1 s, 1 m, then 1 d.
    pub bars: [(Interval, u64); 3],
    /// Bytes the bars take inside the file (records, index, free space in their
    /// pages): what history costs on disk, without the file's own spare room.
    pub bar_bytes: u64,
    pub publishers: u64,
    /// The file was not closed cleanly (a crash, `kill -9`) and the check repaired it,
    /// as the next start would have.
    pub repaired: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data file {} is sound", self.path.display())?;
        match self.format_version {
            Some(version) => writeln!(f, "  format version   {version}")?,
            None => writeln!(
                f,
                "  format version   none yet (no tables; the next start writes version \
                 {FORMAT_VERSION})"
            )?,
        }
        writeln!(f, "  size             {} bytes", self.bytes)?;
        writeln!(f, "  live symbols     {}", self.live_symbols)?;
        writeln!(f, "  removed symbols  {}", self.removed_symbols)?;
        for (interval, count) in self.bars {
            writeln!(f, "  bars {:<11} {count}", interval.as_str())?;
        }
        writeln!(f, "  bar bytes        {}", self.bar_bytes)?;
        writeln!(f, "  publishers       {}", self.publishers)?;
        if self.repaired {
            writeln!(
                f,
                "  repaired         it was not closed cleanly (a crash or kill -9); repaired \
                 as the next start would have"
            )?;
        }
        Ok(())
    }
}

/// Opens the file without the writer's lock and decodes every record of every table,
/// as a start would restore them. A file left unclean by a crash needs redb's repair
/// before it can be read; that is done here as the next start would do it.
pub fn check(path: &Path) -> Result<Report, DataFileError> {
    size(path)?;
    let damaged = |reason: &str| DataFileError::Damaged {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let (counts, repaired) = without_panics(|| match ReadOnlyDatabase::open(path) {
        Ok(database) => walk(&database, path).map(|counts| (counts, false)),
        Err(DatabaseError::RepairAborted) => {
            let database = redb::Database::open(path).map_err(|e| open_error(path, e))?;
            walk(&database, path).map(|counts| (counts, true))
        }
        Err(e) => Err(open_error(path, e)),
    })
    .unwrap_or_else(|| Err(damaged("unreadable structure")))?;
    Ok(Report {
        path: path.to_owned(),
        format_version: counts.format_version,
        bytes: size(path)?,
        live_symbols: counts.live,
        removed_symbols: counts.removed,
        bars: std::array::from_fn(|i| (INTERVALS[i], counts.bars[i])),
        bar_bytes: counts.bar_bytes,
        publishers: counts.publishers,
        repaired,
    })
}

/// Where [`reset`] would move the file at `now`, without moving it.
pub fn reset_plan(path: &Path, now: DateTime<Utc>) -> Result<PathBuf, DataFileError> {
    size(path)?;
    Ok(backup_path(path, now))
}

/// The backup `data reset` moves the file to: beside it, named after the UTC time,
/// `tickstream.redb.20251125T120000Z.bak`, or with `-2`, `-3`… when that is taken.
fn backup_path(path: &Path, now: DateTime<Utc>) -> PathBuf {
    let stamp = now.format("%Y%m%dT%H%M%SZ");
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut backup = path.with_file_name(format!("{name}.{stamp}.bak"));
    for n in 2.. {
        if !backup.exists() {
            break;
        }
        backup = path.with_file_name(format!("{name}.{stamp}-{n}.bak"));
    }
    backup
}

/// Moves the file to a new name beside it (see [`reset_plan`]) so that the next start
/// begins empty; returns where it went. Refuses while a server holds the file, and
/// holds the file itself while it moves it (when it can be opened at all), so no
/// server starts on it meanwhile.
pub fn reset(path: &Path, now: DateTime<Utc>) -> Result<PathBuf, DataFileError> {
    let held = match without_panics(|| ReadOnlyDatabase::open(path)) {
        Some(Err(DatabaseError::DatabaseAlreadyOpen)) => {
            return Err(DataFileError::InUse(path.to_owned()))
        }
        // A damaged file cannot be opened, and no server starts on it either.
        opened => opened.and_then(Result::ok),
    };
    let backup = reset_plan(path, now)?;
    let io = |what| {
        move |source| DataFileError::Io {
            path: path.to_owned(),
            what,
            source,
        }
    };
    std::fs::rename(path, &backup).map_err(io("cannot move it aside"))?;
    drop(held);
    // The rename is durable once the directory is synced.
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("moved, but cannot sync its directory"))?;
    }
    Ok(backup)
}

/// Runs `f`, turning a panic into `None` without printing it: redb's own checks can
/// panic on some damage in debug builds, and damage is the file's problem, not a bug
/// here. (The panic hook is process-wide: a panic elsewhere meanwhile goes unprinted.)
pub(super) fn without_panics<T>(f: impl FnOnce() -> T) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.ok()
}

fn size(path: &Path) -> Result<u64, DataFileError> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(metadata.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(DataFileError::Missing(path.to_owned()))
        }
        Err(source) => Err(DataFileError::Io {
            path: path.to_owned(),
            what: "cannot read it",
            source,
        }),
    }
}

fn open_error(path: &Path, error: DatabaseError) -> DataFileError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => DataFileError::InUse(path.to_owned()),
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() != std::io::ErrorKind::InvalidData =>
        {
            DataFileError::Io {
                path: path.to_owned(),
                what: "cannot open it",
                source,
            }
        }
        other => DataFileError::Damaged {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[derive(Debug, Default)]
struct Counts {
    format_version: Option<u64>,
    live: u64,
    removed: u64,
    /// As [`INTERVALS`].
    bars: [u64; 3],
    /// Bytes the bars take in the file: records, index and free space in their pages.
    bar_bytes: u64,
    publishers: u64,
}

fn walk(database: &impl ReadableDatabase, path: &Path) -> Result<Counts, DataFileError> {
    let damaged = |error: anyhow::Error| DataFileError::Damaged {
        path: path.to_owned(),
        reason: format!("{error:#}"),
    };
    let read = database.begin_read().map_err(|e| damaged(e.into()))?;
    let mut tables = read.list_tables().map_err(|e| damaged(e.into()))?;
    if tables.next().is_none() {
        // Created, then stopped before its first commit: a start takes it as new.
        return Ok(Counts::default());
    }
    let version = stored_format_version(&read).map_err(|e| damaged(e.into()))?;
    match version {
        // Version 1 is read as well: the next start migrates it.
        Some(1 | FORMAT_VERSION) => {}
        Some(found) => {
            return Err(DataFileError::OtherVersion {
                path: path.to_owned(),
                found,
            })
        }
        None => return Err(damaged(anyhow::anyhow!("no format version"))),
    }
    let mut counts = count_records(&read).map_err(damaged)?;
    counts.format_version = version;
    Ok(counts)
}

/// The version in the meta table, `None` when the file has none.
pub(super) fn stored_format_version(read: &ReadTransaction) -> Result<Option<u64>, redb::Error> {
    let meta = read.open_table(META)?;
    let version = meta.get("format_version")?.map(|v| v.value());
    Ok(version)
}

/// Decodes every record as a start would, counting them.
fn count_records(read: &ReadTransaction) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    for entry in read.open_table(SYMBOLS)?.iter()? {
        let (key, value) = entry?;
        let symbol = Symbol::parse(key.value())
            .map_err(|_| anyhow::anyhow!("bad symbol {:?}", key.value()))?;
        match decode_symbol(value.value()).with_context(|| format!("bad record for {symbol}"))? {
            Some(_) => counts.live += 1,
            None => counts.removed += 1,
        }
    }
    let bars = read.open_table(BARS)?;
    let stats = bars.stats()?;
    counts.bar_bytes = stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
    for entry in bars.iter()? {
        let (key, value) = entry?;
        let (symbol, code, t) = key.value();
        let index = INTERVALS
            .iter()
            .position(|&interval| interval_code(interval) == code)
            .with_context(|| format!("bar of {symbol:?} with unknown interval {code}"))?;
        decode_bar(t, value.value()).with_context(|| format!("bad bar of {symbol:?} at {t}"))?;
        counts.bars[index] += 1;
    }
    // Bars in progress (format 2): counted with their interval, bytes included.
    match read.open_table(OPEN_BARS) {
        Ok(open_bars) => {
            let stats = open_bars.stats()?;
            counts.bar_bytes +=
                stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
            for entry in open_bars.iter()? {
                let (key, value) = entry?;
                let (symbol, code) = key.value();
                let index = INTERVALS
                    .iter()
                    .position(|&interval| interval_code(interval) == code)
                    .with_context(|| format!("bar of {symbol:?} with unknown interval {code}"))?;
                decode_open_bar(value.value())
                    .with_context(|| format!("bad bar in progress of {symbol:?}"))?;
                counts.bars[index] += 1;
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    for entry in read.open_table(PUBLISHERS)?.iter()? {
        entry?;
        counts.publishers += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::domain::{Price, SymbolId, Tick};
    use crate::store::durable::tests::{universe, TempDir, FLUSH, KEEP_ALL};
    use crate::store::{Durable, DATA_FILE};

    /// The data file's path in `dir`, which exists.
    fn file(dir: &TempDir) -> PathBuf {
        std::fs::create_dir_all(&dir.0).unwrap();
        dir.0.join(DATA_FILE)
    }

    /// A file as a server leaves it after a graceful stop: AAPL traded twice a minute
    /// apart (two 1 s and two 1 m bars), MSFT removed, one publisher.
    async fn stored_file(dir: &TempDir) {
        let store = universe();
        let durable = Durable::open(&dir.0, &store, FLUSH, KEEP_ALL).unwrap();
        let trade = |ts| Tick {
            symbol: SymbolId(0),
            price: Price::parse("101").ok(),
            size: Some(1),
            ts,
            ..Tick::default()
        };
        let publisher: Arc<str> = Arc::from("abcd");
        store.apply_publisher_batch(&[trade(1_000), trade(61_000)], Some((&publisher, 2)));
        store.remove_symbol(&Symbol::parse("MSFT").unwrap());
        durable.wait_stored(store.generation()).await.unwrap();
        durable.close().unwrap();
    }

    #[tokio::test]
    async fn a_sound_file_is_reported_record_by_record() {
        let dir = TempDir::new("sound");
        stored_file(&dir).await;

        let report = check(&file(&dir)).unwrap();

        assert_eq!(report.format_version, Some(FORMAT_VERSION));
        assert_eq!(report.bytes, std::fs::metadata(file(&dir)).unwrap().len());
        assert_eq!((report.live_symbols, report.removed_symbols), (1, 1));
        assert_eq!(
            report.bars,
            [
                (Interval::OneSecond, 2),
                (Interval::OneMinute, 2),
                (Interval::OneDay, 0)
            ]
        );
        assert_eq!(report.publishers, 1);
        assert!(!report.repaired);
        let text = report.to_string();
        assert!(text.contains("is sound"), "{text}");
        assert!(text.contains("bars 1m          2"), "{text}");
    }

    #[tokio::test]
    async fn a_bad_record_is_damage_naming_it() {
        let dir = TempDir::new("bad-record");
        stored_file(&dir).await;
        let database = redb::Database::open(file(&dir)).unwrap();
        let write = database.begin_write().unwrap();
        write
            .open_table(SYMBOLS)
            .unwrap()
            .insert("IBM", [7u8].as_slice())
            .unwrap();
        write.commit().unwrap();
        drop(database);

        let error = check(&file(&dir)).unwrap_err();

        assert!(matches!(error, DataFileError::Damaged { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("bad record for IBM"), "{text}");
        assert!(text.contains(&file(&dir).display().to_string()), "{text}");
    }

    #[test]
    fn garbage_is_damage_and_is_left_as_it_was() {
        let dir = TempDir::new("garbage");
        std::fs::write(file(&dir), vec![0x5a; 8192]).unwrap();

        let error = check(&file(&dir)).unwrap_err();

        assert!(matches!(error, DataFileError::Damaged { .. }), "{error}");
        assert_eq!(std::fs::read(file(&dir)).unwrap(), vec![0x5a; 8192]);
    }

    #[test]
    fn another_format_version_is_named() {
        let dir = TempDir::new("version");
        let database = redb::Database::create(file(&dir)).unwrap();
        let write = database.begin_write().unwrap();
        write
            .open_table(META)
            .unwrap()
            .insert("format_version", 9)
            .unwrap();
        write.commit().unwrap();
        drop(database);

        let error = check(&file(&dir)).unwrap_err();

        assert!(
            matches!(error, DataFileError::OtherVersion { found: 9, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_file_held_by_a_server_is_neither_checked_nor_moved() {
        let dir = TempDir::new("in-use");
        let _server = Durable::open(&dir.0, &universe(), FLUSH, KEEP_ALL).unwrap();

        let checked = check(&file(&dir)).unwrap_err();
        let moved = reset(&file(&dir), Utc::now()).unwrap_err();

        assert!(matches!(checked, DataFileError::InUse(_)), "{checked}");
        assert!(matches!(moved, DataFileError::InUse(_)), "{moved}");
        assert!(moved.to_string().contains("in use by a running tickstream"));
        assert!(file(&dir).exists());
    }

    #[test]
    fn no_file_is_missing_for_both() {
        let dir = TempDir::new("missing");
        assert!(matches!(check(&file(&dir)), Err(DataFileError::Missing(_))));
        assert!(matches!(
            reset(&file(&dir), Utc::now()),
            Err(DataFileError::Missing(_))
        ));
        assert!(!file(&dir).exists(), "neither creates it");
    }

    #[test]
    fn reset_moves_the_file_to_a_new_timestamped_name_every_time() {
        let dir = TempDir::new("reset");
        let now = Utc.with_ymd_and_hms(2025, 11, 25, 12, 0, 0).unwrap();
        std::fs::write(file(&dir), b"first").unwrap();

        let planned = reset_plan(&file(&dir), now).unwrap();
        let first = reset(&file(&dir), now).unwrap();
        std::fs::write(file(&dir), b"second").unwrap();
        let second = reset(&file(&dir), now).unwrap();

        assert_eq!(first, dir.0.join("tickstream.redb.20251125T120000Z.bak"));
        assert_eq!(second, dir.0.join("tickstream.redb.20251125T120000Z-2.bak"));
        assert_eq!(planned, first);
        assert_eq!(std::fs::read(first).unwrap(), b"first");
        assert_eq!(std::fs::read(second).unwrap(), b"second");
        assert!(!file(&dir).exists());
    }
}
