//! The SRE commands on a stopped server's data directory, through the real
//! binary: `wal verify` (exit 0 healthy, 2 torn tail, 1 corrupt, naming file
//! and offset), `wal inspect` (the audit trail, filtered, as JSON),
//! `wal stats`, `wal replay --until-lsn/--until-time` (point-in-time
//! recovery into a new directory that then serves), `snapshot`; and every
//! one of them refuses (exit 4) while a server holds the directory, and the
//! read-only ones work on a read-only copy.

mod support;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;
use support::{stockd, Server};

fn run(args: &[&str], dir: &Path) -> Output {
    let mut command = stockd();
    command.args(args).arg(dir);
    support::output(&mut command)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn inspect(dir: &Path, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["wal", "inspect", "--json"];
    args.extend_from_slice(filter);
    let output = run(&args, dir);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    stdout(&output).lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect()
}

async fn state_of(dir: &Path, id: &str) -> (StatusCode, Value) {
    let server = Server::start(dir, &["--shards", "1"]);
    let mut c = server.connect(None).await;
    let reservation = c.send(Method::GET, &format!("/v1/reservations/{id}"), None).await.unwrap();
    let sku = c.send(Method::GET, "/v1/skus/tee", None).await.unwrap().json().unwrap();
    (reservation.status, sku)
}

fn copy_read_only(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_read_only(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
            set_read_only(&target, true);
        }
    }
    set_read_only(to, true);
}

/// Every file under `dir` with its bytes, and every directory (as `None`).
fn tree(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Option<Vec<u8>>> {
    let mut found = std::collections::BTreeMap::from([(dir.to_path_buf(), None)]);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(tree(&path));
        } else {
            found.insert(path.clone(), Some(std::fs::read(&path).unwrap()));
        }
    }
    found
}

fn make_writable(dir: &Path) {
    set_read_only(dir, false);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            make_writable(&path);
        } else {
            set_read_only(&path, false);
        }
    }
}

fn set_read_only(path: &Path, read_only: bool) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    let mode = if read_only { mode & !0o222 } else { mode | 0o200 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

/// Returns once the wall clock reads a later millisecond than at the call
/// (a spin of at most a millisecond; a clock that does not advance within a
/// second fails the test).
fn wait_for_the_next_millisecond() {
    let start = now_ms();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while now_ms() <= start {
        assert!(std::time::Instant::now() < deadline, "the wall clock did not advance");
        std::hint::spin_loop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sre_commands_verify_inspect_replay_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--shards", "1"]);
    {
        let mut c = server.connect(None).await;
        c.json(Method::PUT, "/v1/skus/tee", &json!({"on_hand": 10})).await.unwrap();
        c.json(Method::POST, "/v1/reservations", &json!({"id": "first", "lines": [{"sku": "tee", "qty": 2}]}))
            .await
            .unwrap();
        // The hold was stamped at or before this millisecond; the commit is
        // sent in a later one, so a cut at the hold's time falls between.
        wait_for_the_next_millisecond();
        c.send(Method::POST, "/v1/reservations/first/commit", None).await.unwrap();
        c.json(Method::POST, "/v1/reservations", &json!({"id": "second", "lines": [{"sku": "tee", "qty": 3}]}))
            .await
            .unwrap();
        // Every tool refuses, with exit code 4, while the server holds the directory.
        let into = dir.path().join("never-written");
        let into = into.to_str().unwrap();
        for tool in [
            &["wal", "verify"][..],
            &["wal", "inspect"],
            &["wal", "stats"],
            &["wal", "replay", "--into", into],
            &["snapshot"],
        ] {
            let busy = run(tool, &data);
            let stderr = String::from_utf8_lossy(&busy.stderr);
            assert_eq!(busy.status.code(), Some(4), "{tool:?}: {stderr}");
            assert!(stdout(&busy).is_empty() && stderr.contains("in use"), "{tool:?}: {stderr}");
        }
        assert!(!Path::new(into).exists(), "a refused replay writes nothing");
    }
    assert!(server.terminate().success());

    let verify = run(&["wal", "verify"], &data);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("healthy"));

    // The read-only tools work on a read-only copy (a backup, a mounted
    // image), and change nothing in it (compared byte for byte, since run
    // as root the permissions do not bind).
    let copy = dir.path().join("read-only-copy");
    copy_read_only(&data, &copy);
    let before = tree(&copy);
    for tool in [&["wal", "verify"][..], &["wal", "inspect"], &["wal", "stats"]] {
        let output = run(tool, &copy);
        assert!(output.status.success(), "{tool:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(tree(&copy) == before, "{tool:?} changed the directory it read");
    }
    make_writable(&copy);

    // The audit trail: every record; filtered by reservation and by SKU.
    let all = inspect(&data, &[]);
    let kinds: Vec<&str> = all.iter().map(|record| record["command"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["set_stock", "reserve", "commit", "reserve"]);
    assert!(all.iter().all(|record| record["time"].as_str().unwrap().ends_with('Z')));
    let no_such_shard = run(&["wal", "inspect", "--shard", "7"], &data);
    assert_eq!(no_such_shard.status.code(), Some(1), "a shard the directory does not have is an error, not silence");
    assert!(String::from_utf8_lossy(&no_such_shard.stderr).contains("no shard 7"));
    let first = inspect(&data, &["--reservation", "first"]);
    assert_eq!(first.iter().map(|r| r["command"]["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["reserve", "commit"]);
    assert_eq!(inspect(&data, &["--sku", "tee"]).len(), 3, "the stock change and both holds name the SKU");
    assert_eq!(inspect(&data, &["--from-lsn", "3"]).len(), 2);
    assert!(inspect(&data, &["--from-lsn", "100"]).is_empty(), "past the end: nothing, not an error");

    let stats = run(&["wal", "stats", "--json"], &data);
    let stats: Value = serde_json::from_str(stdout(&stats).trim()).unwrap();
    assert_eq!(
        (stats["shards"][0]["records"].clone(), stats["shards"][0]["records_by_kind"]["reserve"].clone()),
        (json!(4), json!(2))
    );

    // Point-in-time recovery, by LSN: after the commit, before "second".
    let commit_lsn = first[1]["lsn"].as_u64().unwrap();
    let by_lsn = dir.path().join("by-lsn");
    let output = support::output(
        stockd()
            .args(["wal", "replay"])
            .arg(&data)
            .arg("--into")
            .arg(&by_lsn)
            .args(["--until-lsn", &commit_lsn.to_string()]),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (second, sku) = state_of(&by_lsn, "second").await;
    assert_eq!(second, StatusCode::NOT_FOUND, "\"second\" came after the point");
    assert_eq!((sku["on_hand"].clone(), sku["reserved"].clone()), (json!(8), json!(0)), "\"first\" was sold");

    // By time: the first hold's own timestamp keeps it and nothing after it.
    let cut = all[1]["time"].as_str().unwrap().to_owned();
    assert!(all[2]["now_ms"].as_u64() > all[1]["now_ms"].as_u64(), "the commit is stamped later");
    let by_time = dir.path().join("by-time");
    let output = support::output(
        stockd().args(["wal", "replay"]).arg(&data).arg("--into").arg(&by_time).args(["--until-time", &cut]),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (second, sku) = state_of(&by_time, "second").await;
    assert_eq!(second, StatusCode::NOT_FOUND);
    assert_eq!((sku["on_hand"].clone(), sku["reserved"].clone()), (json!(10), json!(2)), "held, not yet sold");

    // An offline snapshot; the directory still verifies and serves the same state.
    let snapshot = run(&["snapshot"], &data);
    assert!(snapshot.status.success() && stdout(&snapshot).contains("snapshot at LSN"), "{}", stdout(&snapshot));
    // It makes no spare segment (a disk kept lean for `--spare-segments
    // false` stays so); the server makes one again when it needs it.
    let spares: Vec<_> = std::fs::read_dir(data.join("shard-00"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(spares.is_empty(), "{spares:?}");
    let stats = run(&["wal", "stats", "--json"], &data);
    let stats: Value = serde_json::from_str(stdout(&stats).trim()).unwrap();
    assert_eq!(stats["shards"][0]["snapshot_lsn"], 4);
    assert_eq!(run(&["wal", "verify"], &data).status.code(), Some(0));
    let (second, sku) = state_of(&data, "second").await;
    assert_eq!((second, sku["reserved"].clone(), sku["on_hand"].clone()), (StatusCode::OK, json!(3), json!(8)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_torn_tail_and_corruption_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "1"]);
    {
        let mut c = server.connect(None).await;
        for i in 0..10 {
            c.json(Method::PUT, &format!("/v1/skus/s{i}"), &json!({"on_hand": i})).await.unwrap();
        }
    }
    assert!(server.terminate().success());
    let records = inspect(dir.path(), &[]);
    let segment = std::fs::read_dir(dir.path().join("shard-00"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // Offsets of every record: headers are 32 bytes, records 16-aligned.
    let mut offsets = vec![32usize];
    while offsets.len() < records.len() {
        let at = *offsets.last().unwrap();
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        offsets.push(at + (32 + len).next_multiple_of(16));
    }

    // A torn last record: exit 2, the file and offset named.
    let last = *offsets.last().unwrap();
    let original = bytes.clone();
    bytes[last + 40] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let verify = run(&["wal", "verify"], dir.path());
    assert_eq!(verify.status.code(), Some(2), "{}", stdout(&verify));
    assert!(
        stdout(&verify).contains(&format!("byte offset {last}")) && stdout(&verify).contains(segment.to_str().unwrap())
    );

    // A damaged record in the middle, with durable records after it: exit 1.
    let middle = offsets[4];
    bytes = original;
    bytes[middle + 40] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let verify = run(&["wal", "verify"], dir.path());
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    assert!(stdout(&verify).contains(&format!("byte offset {middle}")), "{}", stdout(&verify));
    // And the server refuses to start on it, pointing at `wal verify`.
    let start = support::output(
        stockd().args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--data-dir"]).arg(dir.path()),
    );
    assert!(!start.status.success());
    let log = String::from_utf8_lossy(&start.stderr);
    assert!(log.contains(&format!("byte offset {middle}")) && log.contains("stockd wal verify"), "{log}");
}
