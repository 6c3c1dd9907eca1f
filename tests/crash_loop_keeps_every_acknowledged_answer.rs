//! kill -9 crash loop. A child process runs the engine on a data directory
//! with fsync `always`, under concurrent load (single-line and cross-shard
//! carts, commits, releases, stock adjustments, segment rotation and
//! snapshots), and reports on stdout what it is about to try and every
//! outcome it was acknowledged, as it receives it. The parent SIGKILLs it at
//! a random moment (sometimes during its recovery: within 2 ms of the
//! child saying it is about to open the directory), reopens the directory
//! itself, and checks the recovered state against what was acknowledged
//! (see `common::verify`): every acknowledged hold, commit, release and
//! stock change is present, unacknowledged tries happened whole or not at
//! all, refused carts left nothing, invariants hold, units are conserved and
//! nothing is oversold. A panic in the child (a worker given an answer it
//! did not expect) is reported on stdout and fails the test.
//!
//! `STOCKD_CRASH_KILLS` sets the number of kills (default 50);
//! `STOCKD_CRASH_SEED` replays a run.

mod common;

use common::{adjust, shop, stock_up, verify, Knowledge, Rng};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use stockd_engine::{Engine, EngineConfig, StoreConfig, SystemClock};

const SHARDS: usize = 3;
const CHILD_ENV: &str = "STOCKD_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "STOCKD_CRASH_ROUND";
/// The one test of this binary; with `CHILD_ENV` set it is the child.
const TEST_NAME: &str = "crash_loop_keeps_every_acknowledged_answer";
const WORKERS: u64 = 3;
const CHILD_OPS_MAX: usize = 200_000;
const LINE_TIMEOUT: Duration = Duration::from_secs(60);
/// The signal `Child::kill` sends on Linux.
const SIGKILL: i32 = 9;

fn config() -> EngineConfig {
    // Tiny capture slices: every snapshot is copied over many loop turns
    // while the workers change what it has yet to copy.
    EngineConfig { shards: SHARDS, capture_slice: 16, ..EngineConfig::default() }
}

fn store(dir: &Path) -> StoreConfig {
    // Small segments and frequent snapshots: kills land during rotation,
    // snapshot writing and segment removal too.
    StoreConfig {
        segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN,
        snapshot_every_bytes: 256 << 10,
        ..StoreConfig::new(dir)
    }
}

fn open(dir: &Path) -> Engine {
    Engine::open(config(), store(dir), Arc::new(SystemClock), &Default::default()).expect("recovers").0
}

// ---- the child ---------------------------------------------------------

/// The child: the test binary run again by the parent with `CHILD_ENV`
/// set (see `spawn_child`).
fn crash_child(dir: PathBuf) {
    // A worker's panic must reach the parent, which reads only stdout and
    // would otherwise kill the process as planned and pass.
    std::panic::set_hook(Box::new(|info| {
        report(format!("PANIC {}", info.to_string().replace('\n', " ")));
        std::process::abort();
    }));
    let round: u64 = std::env::var(ROUND_ENV).expect("run by the crash loop").parse().unwrap();
    report("RECOVERING".into());
    let engine = Arc::new(open(&dir));
    report("READY".into());
    // The load runs until the parent kills the process (bounded all the same).
    let mut threads: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (round << 8) ^ worker);
                let ok = shop(&engine, &format!("r{round}-w{worker}"), &mut rng, CHILD_OPS_MAX, &mut report);
                assert!(ok.is_ok(), "the log failed in the crash child");
            })
        })
        .collect();
    threads.push({
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || assert!(adjust(&engine, CHILD_OPS_MAX, &mut report).is_ok()))
    });
    for thread in threads {
        thread.join().expect("a load thread panicked");
    }
}

/// One line on stdout, flushed at once: the parent must see it even if the
/// process is killed right after.
fn report(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).expect("the parent reads stdout");
}

// ---- the parent --------------------------------------------------------

fn spawn_child(dir: &Path, round: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test binary can run itself")
}

/// When the parent kills a child.
enum KillAt {
    /// This many microseconds after the child says it is recovering.
    Recovery(u64),
    /// After this many acknowledgements.
    Acks(u64),
}

/// Runs one child, kills it at `kill_at`, and learns everything it reported.
/// Returns whether the kill came before the child had recovered.
fn run_round(dir: &Path, round: u64, kill_at: KillAt, knowledge: &mut Knowledge) -> bool {
    let mut child = spawn_child(dir, round);
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acks = 0;
    let (mut killed, mut ready) = (false, false);
    loop {
        match lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => {
                if line.starts_with("PANIC ") {
                    let _ = child.kill();
                    panic!("round {round}: the child panicked: {line}");
                }
                acks += u64::from(line.starts_with("ACK "));
                ready |= line.ends_with("READY");
                knowledge.learn(&line);
                let due = match kill_at {
                    // Not synchronisation: a random kill moment inside
                    // recovery (opening a small directory takes a few ms).
                    // (libtest may print the test's name on the same line)
                    KillAt::Recovery(micros) if line.ends_with("RECOVERING") => {
                        std::thread::sleep(Duration::from_micros(micros));
                        true
                    }
                    KillAt::Recovery(_) => false,
                    KillAt::Acks(kill_after) => acks >= kill_after,
                };
                if !killed && due {
                    child.kill().unwrap();
                    killed = true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("round {round}: the child said nothing for {LINE_TIMEOUT:?}");
            }
        }
    }
    reader.join().unwrap();
    let status = child.wait().unwrap();
    assert!(killed, "round {round}: the child exited by itself ({status}) after {acks} acknowledgements");
    assert_eq!(status.signal(), Some(SIGKILL), "round {round}: the child died otherwise: {status}");
    // Everything printed before the kill has been read by now.
    !ready
}

#[test]
fn crash_loop_keeps_every_acknowledged_answer() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return crash_child(PathBuf::from(dir));
    }
    let kills: u64 = std::env::var("STOCKD_CRASH_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    let seed: u64 = std::env::var("STOCKD_CRASH_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("crash loop: {kills} kills, STOCKD_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    stock_up(&open(dir.path()));
    let mut knowledge = Knowledge::default();
    let mut recovery_kills = 0;
    for round in 0..kills {
        // Some rounds run long enough to rotate segments and recycle covered
        // ones into spares (1 MiB segments take thousands of records).
        let kill_at = match rng.below(10) {
            // Opening the small directory takes a few ms after it says so.
            0 | 1 => KillAt::Recovery(rng.below(2_000)),
            2 => KillAt::Acks(10_000 + rng.below(10_000)),
            _ => KillAt::Acks(rng.below(1_500)),
        };
        recovery_kills += u32::from(run_round(dir.path(), round, kill_at, &mut knowledge));
        let engine = open(dir.path());
        verify(&engine, &knowledge, &format!("round {round} (seed {seed})"));
    }
    println!(
        "crash loop: {kills} kills ({recovery_kills} before the child was ready), {} acknowledged holds, all recovered",
        knowledge.acknowledged_holds()
    );
    assert!(knowledge.acknowledged_holds() > 0, "the load acknowledged holds");
}
