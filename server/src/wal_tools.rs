//! `stockd wal verify|inspect|replay|stats` and `stockd snapshot`: what an
//! SRE runs on the data directory of a stopped server. Each takes the
//! directory's lock (shared for the read-only ones, so they work on a
//! read-only copy) and exits 4 while a server holds it, 3 in the boot of a
//! storage failure (they would read the kernel's cache, not the disk).
//!
//! `wal verify` exits 0 when healthy, 2 when the only damage is a torn
//! record at the tail (a start cuts it: it was never acknowledged), and 1
//! on corruption or an unreadable directory, naming the file and offset.

use crate::progress::with_recovery_bar;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stockd_engine::store::{shard_dir, DirLock, StoreError};
use stockd_engine::tools::{self, LoggedRecord, ReplayBound};
use stockd_engine::{Command, Engine, EngineConfig, RecoveryProgress, StoreConfig, SystemClock};
use stockd_wal::{FsStorage, Storage};

#[derive(clap::Subcommand, Debug)]
pub enum WalCommand {
    /// Recover every shard as a start would, and check the older snapshot
    /// kept as a fallback and the log after it; exit 0 healthy, 2 torn tail
    /// only, 1 corrupt, 4 in use by a server.
    Verify {
        #[arg(env = "STOCKD_DATA_DIR")]
        dir: PathBuf,
    },
    /// Print the records (the audit trail), optionally of one SKU or reservation.
    Inspect {
        #[arg(env = "STOCKD_DATA_DIR")]
        dir: PathBuf,
        #[arg(long, env = "STOCKD_INSPECT_SKU")]
        sku: Option<String>,
        #[arg(long, env = "STOCKD_INSPECT_RESERVATION")]
        reservation: Option<String>,
        /// Start at this LSN (each shard numbers its own records).
        #[arg(long, env = "STOCKD_INSPECT_FROM_LSN")]
        from_lsn: Option<u64>,
        #[arg(long, env = "STOCKD_INSPECT_SHARD")]
        shard: Option<u16>,
        /// One JSON object per line.
        #[arg(long, env = "STOCKD_INSPECT_JSON")]
        json: bool,
    },
    /// Replay into a new data directory up to a point in time (or an LSN).
    Replay {
        #[arg(env = "STOCKD_DATA_DIR")]
        dir: PathBuf,
        #[arg(long, env = "STOCKD_REPLAY_INTO")]
        into: PathBuf,
        /// Keep records up to this LSN (a directory of one shard only: each
        /// shard numbers its own LSNs, so with several, cut by time).
        #[arg(long, env = "STOCKD_REPLAY_UNTIL_LSN", conflicts_with = "until_time")]
        until_lsn: Option<u64>,
        /// Keep records applied at or before this time: RFC 3339
        /// (2026-11-24T10:00:00Z) or milliseconds since the epoch.
        #[arg(long, env = "STOCKD_REPLAY_UNTIL_TIME")]
        until_time: Option<String>,
    },
    /// Segments, records, LSN and time ranges, snapshots, per shard.
    Stats {
        #[arg(env = "STOCKD_DATA_DIR")]
        dir: PathBuf,
        #[arg(long, env = "STOCKD_STATS_JSON")]
        json: bool,
    },
}

pub fn run(command: WalCommand) -> anyhow::Result<i32> {
    let (WalCommand::Verify { dir }
    | WalCommand::Inspect { dir, .. }
    | WalCommand::Replay { dir, .. }
    | WalCommand::Stats { dir, .. }) = &command;
    tools::refuse_after_a_failure_this_boot(Arc::new(FsStorage), dir)?;
    match command {
        WalCommand::Verify { dir } => verify(&dir),
        WalCommand::Inspect { dir, sku, reservation, from_lsn, shard, json } => {
            inspect(&dir, sku.as_deref(), reservation.as_deref(), from_lsn.unwrap_or(1), shard, json).map(|()| 0)
        }
        WalCommand::Replay { dir, into, until_lsn, until_time } => {
            let bound = match (until_lsn, until_time) {
                (Some(lsn), _) => ReplayBound::Lsn(lsn),
                (None, Some(time)) => ReplayBound::TimeMs(parse_time(&time)?),
                (None, None) => ReplayBound::End,
            };
            replay(&dir, &into, bound).map(|()| 0)
        }
        WalCommand::Stats { dir, json } => stats(&dir, json).map(|()| 0),
    }
}

/// Exit code when a server holds the data directory.
pub const EXIT_IN_USE: i32 = 4;

/// The process exit code for an error: [`EXIT_IN_USE`] when the data
/// directory is locked by another process, `EXIT_STORAGE_FAILED` when
/// storage failed (now, or earlier in this boot), 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    let store_error = error.chain().find_map(|cause| cause.downcast_ref::<StoreError>());
    match store_error {
        Some(StoreError::Locked { .. }) => EXIT_IN_USE,
        Some(StoreError::FailedThisBoot { .. }) => crate::serve::EXIT_STORAGE_FAILED,
        Some(error) if error.is_storage_failure() => crate::serve::EXIT_STORAGE_FAILED,
        _ => 1,
    }
}

fn lock(dir: &Path) -> anyhow::Result<DirLock> {
    if !dir.join("stockd.manifest").exists() {
        bail!("{} is not a stockd data directory (no stockd.manifest)", dir.display());
    }
    DirLock::acquire_shared(dir).with_context(|| format!("{}: stop the server first", dir.display()))
}

fn verify(dir: &Path) -> anyhow::Result<i32> {
    let _lock = lock(dir)?;
    let mut worst = 0;
    for check in tools::verify(&FsStorage, dir)? {
        match (&check.recovered, &check.error) {
            (_, Some(error)) => {
                println!("shard {}: CORRUPT: {error}", check.shard);
                worst = 1;
            }
            (Some(recovered), None) if !recovered.snapshots_passed_over.is_empty() => {
                let lsn = recovered.snapshot_lsn.unwrap_or(0);
                for damage in &recovered.snapshots_passed_over {
                    println!(
                        "shard {}: DAMAGED SNAPSHOT: {damage}; a start recovers from the snapshot before it (LSN \
                         {lsn}) and the log after it, {} records",
                        check.shard, recovered.records_replayed
                    );
                }
                worst = 1;
            }
            (Some(recovered), None) => {
                let snapshot =
                    recovered.snapshot_lsn.map_or("no snapshot".to_owned(), |lsn| format!("snapshot at LSN {lsn}"));
                let records = recovered.records_replayed;
                let next = recovered.next_lsn;
                match &recovered.torn_tail {
                    Some((path, offset, reason)) => {
                        println!(
                            "shard {}: {snapshot}, {records} records replay; TORN TAIL at {} byte offset {offset} ({reason}): \
                             a start cuts it (it was never acknowledged)",
                            check.shard,
                            path.display()
                        );
                        worst = worst.max(if worst == 1 { 1 } else { 2 });
                    }
                    None => {
                        let unfinished = recovered.discarded_segment.as_ref().map_or(String::new(), |path| {
                            format!(
                                "; {} is a segment whose creation never finished: a start removes it",
                                path.display()
                            )
                        });
                        println!(
                            "shard {}: healthy: {snapshot}, {records} records replay, next LSN {next}{unfinished}",
                            check.shard
                        )
                    }
                }
            }
            (None, None) => unreachable!("a check either recovers or fails"),
        }
        for damage in &check.fallback_damage {
            println!(
                "shard {}: DAMAGED FALLBACK: {damage}; a start works, but could not fall back past the newest snapshot \
                 (the next snapshot replaces the fallback)",
                check.shard
            );
            worst = 1;
        }
    }
    println!("{}", ["healthy", "CORRUPT", "torn tail only (recoverable)"][worst as usize]);
    Ok(worst)
}

fn inspect(
    dir: &Path,
    sku: Option<&str>,
    reservation: Option<&str>,
    from_lsn: u64,
    only: Option<u16>,
    json: bool,
) -> anyhow::Result<()> {
    let _lock = lock(dir)?;
    let shards = tools::shard_count(&FsStorage, dir)? as u16;
    if let Some(shard) = only.filter(|&shard| shard >= shards) {
        bail!("{} has shards 0..{shards}; there is no shard {shard}", dir.display());
    }
    let mut failure = None;
    for shard in (0..shards).filter(|shard| only.is_none_or(|only| only == *shard)) {
        let read = tools::read_log(&FsStorage, dir, shard, from_lsn.saturating_sub(1), |record| {
            if matches(&record.command, sku, reservation) {
                if json {
                    println!("{}", record_json(&record));
                } else {
                    println!("{}", record_text(&record));
                }
            }
        });
        if let Err(error) = read {
            failure.get_or_insert(error);
        }
    }
    match failure {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

fn matches(command: &Command, sku: Option<&str>, reservation: Option<&str>) -> bool {
    let sku_ok = sku.is_none_or(|wanted| match command {
        Command::SetStock { sku, .. } | Command::AdjustStock { sku, .. } => sku.as_str() == wanted,
        Command::Reserve(part) => part.lines.iter().any(|line| line.sku.as_str() == wanted),
        _ => false,
    });
    let id_ok = reservation.is_none_or(|wanted| match command {
        Command::Reserve(part) => part.id.as_str() == wanted,
        Command::Commit { id }
        | Command::Release { id }
        | Command::CommitPart { id }
        | Command::ReleasePart { id }
        | Command::ExpirePart { id }
        | Command::Abort { id, .. } => id.as_str() == wanted,
        _ => false,
    });
    sku_ok && id_ok
}

/// A command as JSON: `{"kind": ..., fields...}`.
pub fn command_json(command: &Command) -> Value {
    match command {
        Command::SetStock { sku, on_hand, expected_version } => {
            json!({"kind": "set_stock", "sku": sku.as_str(), "on_hand": on_hand, "expected_version": expected_version})
        }
        Command::AdjustStock { sku, delta } => json!({"kind": "adjust", "sku": sku.as_str(), "delta": delta}),
        Command::Reserve(part) => json!({
            "kind": "reserve",
            "id": part.id.as_str(),
            "lines": part.lines.iter().map(|line| json!({"sku": line.sku.as_str(), "qty": line.qty})).collect::<Vec<_>>(),
            "expires_at_ms": part.expires_at_ms,
            "forget_at_ms": part.forget_at_ms,
            "home": part.home,
            "participants": part.participants,
        }),
        Command::Commit { id } => json!({"kind": "commit", "id": id.as_str()}),
        Command::Release { id } => json!({"kind": "release", "id": id.as_str()}),
        Command::CommitPart { id } => json!({"kind": "commit_part", "id": id.as_str()}),
        Command::ReleasePart { id } => json!({"kind": "release_part", "id": id.as_str()}),
        Command::ExpirePart { id } => json!({"kind": "expire_part", "id": id.as_str()}),
        Command::Abort { id, .. } => json!({"kind": "abort", "id": id.as_str()}),
        Command::Tick { up_to } => json!({"kind": "tick", "up_to_due_ms": up_to.due_ms, "up_to_seq": up_to.seq}),
    }
}

fn record_json(record: &LoggedRecord) -> Value {
    json!({"shard": record.shard, "lsn": record.lsn, "time": format_time(record.now_ms), "now_ms": record.now_ms, "command": command_json(&record.command)})
}

fn record_text(record: &LoggedRecord) -> String {
    let command = command_json(&record.command);
    let fields: Vec<String> = command
        .as_object()
        .expect("commands are objects")
        .iter()
        .filter(|(key, _)| *key != "kind")
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!(
        "shard={} lsn={} time={} {} {}",
        record.shard,
        record.lsn,
        format_time(record.now_ms),
        command["kind"].as_str().unwrap_or(""),
        fields.join(" ")
    )
}

fn replay(dir: &Path, into: &Path, bound: ReplayBound) -> anyhow::Result<()> {
    let _lock = lock(dir)?;
    let stopped = tools::replay_into(&FsStorage, dir, into, bound).map_err(|error| replay_error(error, into))?;
    for (shard, lsn) in stopped.iter().enumerate() {
        println!("shard {shard}: replayed up to LSN {lsn}");
    }
    println!("wrote {}; start it with `stockd serve --data-dir {}`", into.display(), into.display());
    Ok(())
}

/// A write or sync that fails during a replay failed on the target's
/// disk, not the data directory's: exit 1, not 3 (`exit_code`).
fn replay_error(error: StoreError, into: &Path) -> anyhow::Error {
    if error.is_storage_failure() {
        anyhow::anyhow!("writing {}: {error}", into.display())
    } else {
        error.into()
    }
}

fn stats(dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let _lock = lock(dir)?;
    let shards = tools::shard_count(&FsStorage, dir)? as u16;
    let snapshots = tools::snapshots(&FsStorage, dir)?;
    let mut report = Vec::new();
    for shard in 0..shards {
        let segments = stockd_wal::list_segments(&FsStorage, &shard_dir(dir, usize::from(shard)))?;
        let bytes: u64 =
            segments.iter().map(|segment| std::fs::metadata(&segment.path).map_or(0, |meta| meta.len())).sum();
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        let (mut first, mut last) = (None, None);
        let outcome = tools::read_log(&FsStorage, dir, shard, 0, |record| {
            *kinds.entry(command_json(&record.command)["kind"].as_str().unwrap_or("").to_owned()).or_default() += 1;
            first.get_or_insert((record.lsn, record.now_ms));
            last = Some((record.lsn, record.now_ms));
        })?;
        let snapshot = snapshots.iter().find(|(s, ..)| *s == shard);
        report.push(json!({
            "shard": shard,
            "segments": segments.len(),
            "segment_bytes": bytes,
            "records": outcome.records,
            "first_lsn": first.map(|(lsn, _)| lsn),
            "last_lsn": last.map(|(lsn, _)| lsn),
            "first_time": first.map(|(_, ms)| format_time(ms)),
            "last_time": last.map(|(_, ms)| format_time(ms)),
            "records_by_kind": kinds,
            "snapshot_lsn": snapshot.map(|(_, _, lsn, _)| lsn),
            "snapshot_bytes": snapshot.map(|(_, _, _, bytes)| bytes),
            "torn_tail": outcome.torn.as_ref().map(|(path, offset, _)| format!("{}:{offset}", path.display())),
        }));
    }
    if as_json {
        println!("{}", json!({ "shards": report }));
        return Ok(());
    }
    for shard in report {
        println!(
            "shard {}: {} segments ({} bytes), {} records, LSN {}..{}, time {} .. {}, snapshot at LSN {} ({} bytes); by kind {}",
            shard["shard"], shard["segments"], shard["segment_bytes"], shard["records"], shard["first_lsn"], shard["last_lsn"],
            shard["first_time"], shard["last_time"], shard["snapshot_lsn"], shard["snapshot_bytes"], shard["records_by_kind"]
        );
    }
    Ok(())
}

/// `stockd snapshot DIR`: recovers the directory and writes a fresh
/// snapshot of every shard (the log the snapshot kept before it covers is
/// then removed). A disk failure exits 3, as it does for a server.
pub fn snapshot(dir: &Path) -> anyhow::Result<()> {
    snapshot_on(Arc::new(FsStorage), true, dir)
}

/// `stockd snapshot` on `storage` (`lock`: take the directory's lock, on
/// a real filesystem).
fn snapshot_on(storage: Arc<dyn Storage>, lock: bool, dir: &Path) -> anyhow::Result<()> {
    if !storage.exists(&dir.join("stockd.manifest")) {
        bail!("{} is not a stockd data directory (no stockd.manifest)", dir.display());
    }
    let shards = tools::shard_count(storage.as_ref(), dir)?;
    let config = EngineConfig { shards, ..EngineConfig::default() };
    let progress = Arc::new(RecoveryProgress::default());
    // It writes no segment: no spare is made ahead of need (the server's
    // setting is not known here, and a disk kept lean for
    // `--spare-segments false` would get 64 MiB per shard). Spares and
    // recycled segments already there are removed; a server makes them
    // again as it needs them.
    let store = StoreConfig { spare_segments: false, storage: Arc::clone(&storage), lock, ..StoreConfig::new(dir) };
    let opened = with_recovery_bar(&progress, || Engine::open(config, store, Arc::new(SystemClock), &progress));
    let (engine, report) =
        opened.with_context(|| format!("recovering {} (is a server running on it?)", dir.display()))?;
    let taken = futures::executor::block_on(engine.snapshot());
    engine.shutdown();
    // A failed write or sync is the disk's failure: exit 3, as a server does.
    if let Some(reason) = engine.failure() {
        let failed = StoreError::FailedThisBoot { path: dir.join(stockd_engine::FAILURE_MARKER), reason };
        return Err(anyhow::Error::new(failed).context("the snapshot's storage failed"));
    }
    taken.map_err(|rejection| anyhow::anyhow!("snapshot failed: {rejection}"))?;
    for (shard, path, lsn, bytes) in tools::snapshots(storage.as_ref(), dir)? {
        println!("shard {shard}: snapshot at LSN {lsn} ({bytes} bytes): {}", path.display());
    }
    println!("recovered {} records first", report.shards.iter().map(|shard| shard.records_replayed).sum::<u64>());
    Ok(())
}

/// Milliseconds since the epoch as RFC 3339 UTC (2026-11-24T10:00:00.123Z).
pub fn format_time(ms: u64) -> String {
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days as i64);
    let (hours, minutes, seconds, millis) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1_000 % 60, ms_of_day % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z")
}

/// RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SS[.fff]Z`) or plain milliseconds.
pub fn parse_time(text: &str) -> anyhow::Result<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || anyhow::anyhow!("{text:?}: expected YYYY-MM-DDTHH:MM:SS[.fff]Z or milliseconds since the epoch");
    let text = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = text.split_once('T').ok_or_else(bad)?;
    let date: Vec<i64> = date.split('-').map(|part| part.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let (time, fraction) = time.split_once('.').unwrap_or((time, "0"));
    if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad());
    }
    let time: Vec<u64> = time.split(':').map(|part| part.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [year, month, day] = date[..] else { return Err(bad()) };
    let [hours, minutes, seconds] = time[..] else { return Err(bad()) };
    // Milliseconds: the first three digits of the fraction (ASCII, checked above).
    let millis: u64 = format!("{fraction:0<3}")[..3].parse().map_err(|_| bad())?;
    let valid_date =
        (1970..=9999).contains(&year) && (1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day);
    if !valid_date || hours > 23 || minutes > 59 || seconds > 59 {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    Ok(u64::try_from(days).map_err(|_| bad())? * 86_400_000
        + hours * 3_600_000
        + minutes * 60_000
        + seconds * 1_000
        + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write or sync that fails during a start's recovery exits 3, like
    /// one that fails while serving; a read that fails, or a directory a
    /// server holds, does not.
    #[test]
    fn a_storage_failure_exits_3() {
        let io = |operation| {
            let source = std::io::Error::other("injected");
            anyhow::Error::new(StoreError::Wal(stockd_wal::WalError::io(operation, Path::new("/d/x.wal"), source)))
                .context("recovering")
        };
        for operation in ["write", "fsync", "fsync directory", "truncate", "preallocate"] {
            assert_eq!(exit_code(&io(operation)), crate::serve::EXIT_STORAGE_FAILED, "{operation}");
        }
        assert_eq!(exit_code(&io("read")), 1);
        assert_eq!(exit_code(&anyhow::Error::new(StoreError::Locked { path: "/d".into() })), EXIT_IN_USE);
    }

    /// A write that fails on `wal replay`'s target is not a failure of the
    /// data directory's storage: exit 1, and the message names the target.
    #[test]
    fn a_failed_write_on_the_replay_target_exits_1() {
        let failed = StoreError::Wal(stockd_wal::WalError::io(
            "write",
            Path::new("/new/shard-00/x.snap.tmp"),
            std::io::Error::other("injected"),
        ));
        assert!(failed.is_storage_failure());
        let error = replay_error(failed, Path::new("/new"));
        assert_eq!(exit_code(&error), 1);
        assert!(error.to_string().starts_with("writing /new: "), "{error}");
        let locked = replay_error(StoreError::Locked { path: "/d".into() }, Path::new("/new"));
        assert_eq!(exit_code(&locked), EXIT_IN_USE, "other errors keep their exit code");
    }

    /// A write or sync that fails anywhere in `stockd snapshot` (its
    /// recovery, the snapshot, the final sync) exits 3, never 1 or 0.
    #[test]
    fn a_disk_failure_during_a_snapshot_exits_3() {
        let dir = Path::new("/data");
        for failing_sync in 1.. {
            let storage = stockd_wal::MemStorage::new();
            let store = StoreConfig {
                storage: storage.clone(),
                lock: false,
                spare_segments: false,
                segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN,
                ..StoreConfig::new(dir)
            };
            let config = EngineConfig { shards: 2, ..EngineConfig::default() };
            let (engine, _) = Engine::open(config, store, Arc::new(SystemClock), &Default::default()).unwrap();
            let request = stockd_engine::Request::SetStock {
                sku: stockd_engine::Sku::new("tee").unwrap(),
                on_hand: 5,
                expected_version: None,
            };
            engine.submit_blocking(request).unwrap();
            drop(engine);
            storage.fail_sync_after(failing_sync);
            match snapshot_on(storage, false, dir) {
                Ok(()) => {
                    assert!(failing_sync > 5, "a snapshot of two shards syncs more than {failing_sync} times");
                    break;
                }
                Err(error) => {
                    assert_eq!(exit_code(&error), crate::serve::EXIT_STORAGE_FAILED, "sync {failing_sync}: {error:#}")
                }
            }
        }
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        for ms in [0, 1_000, 951_782_400_123, 1_795_496_852_156, 4_102_444_800_000] {
            assert_eq!(parse_time(&format_time(ms)).unwrap(), ms, "{}", format_time(ms));
        }
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_time("2000-02-29T00:00:00Z").unwrap(), 951_782_400_000);
        assert_eq!(parse_time("12345").unwrap(), 12_345);
        assert_eq!(parse_time("2000-02-29T00:00:00.5Z").unwrap(), 951_782_400_500);
        assert_eq!(parse_time("2000-02-29T00:00:00.123456789Z").unwrap(), 951_782_400_123);
        for bad in [
            "2000-13-01T00:00:00Z",
            "2001-02-29T00:00:00Z",
            "2000-04-31T00:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01T00:00:00.Z",
            "2000-01-01T00:00:00.1éZ",
            "2000-01-01T00:00:00.-1Z",
            "2000-01-01T00:00:00",
            "yesterday",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} was accepted");
        }
    }
}
