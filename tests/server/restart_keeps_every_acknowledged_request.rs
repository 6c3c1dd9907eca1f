//! The real server under HTTP load, stopped two ways, then checked by
//! opening its data directory: every request it acknowledged is there.
//!
//! - SIGTERM during load: the server stops accepting, finishes what is in
//!   flight, drains the shards, syncs the WAL and exits 0.
//! - kill -9 during load, round after round on the same directory.
//!
//! The shoppers report what they try and what was acknowledged in the
//! crash tests' format; `common::verify` is the same oracle as the engine
//! crash loop's (acknowledged holds and decisions present, carts whole,
//! refusals leave nothing, units conserved, nothing oversold).

#[path = "../common/mod.rs"]
mod common;
mod support;

use common::{stock_up, verify, Knowledge, Rng, ADMIN_SKU, SKUS};
use hyper::{Method, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use stockd_engine::{Engine, EngineConfig, StoreConfig, SystemClock};
use stockd_server::client::{Answer, Connection};
use support::Server;
use tokio::sync::Notify;

const SHARDS: usize = 3;
const SHOPPERS: u64 = 6;

fn open(dir: &Path) -> Engine {
    let config = EngineConfig { shards: SHARDS, ..EngineConfig::default() };
    Engine::open(config, StoreConfig::new(dir), Arc::new(SystemClock), &Default::default()).expect("recovers").0
}

fn start(dir: &Path) -> Server {
    Server::start(dir, &["--shards", "3", "--segment-bytes-max", "1048576", "--snapshot-every-bytes", "262144"])
}

/// Reserves, commits and releases over HTTP until the server goes away,
/// reporting every try and acknowledgement.
async fn shop(server_address: std::net::SocketAddr, prefix: String, seed: u64, knowledge: Arc<Learned>) {
    let report = |line: String| knowledge.learn(&line);
    let Ok(mut connection) = Connection::open(server_address, None).await else { return };
    let mut rng = Rng(seed);
    for n in 0.. {
        let id = format!("{prefix}-{n}");
        let mut lines = BTreeMap::new();
        for _ in 0..1 + rng.below(3) {
            lines.insert(rng.below(SKUS as u64) as usize, 1 + rng.below(3));
        }
        let text: Vec<String> = lines.iter().map(|(s, q)| format!("{s}:{q}")).collect();
        report(format!("TRY RESERVE {id} {}", text.join(",")));
        let body = json!({"id": id, "lines": lines.iter().map(|(s, q)| json!({"sku": format!("sku-{s}"), "qty": q})).collect::<Vec<_>>(), "ttl_ms": 3_600_000});
        match connection.json(Method::POST, "/v1/reservations", &body).await {
            Ok(answer) if answer.status == StatusCode::CREATED => report(format!("ACK HELD {id}")),
            Ok(answer) if answer.status == StatusCode::CONFLICT => {
                report(format!("ACK REFUSED {id}"));
                continue;
            }
            other => return stopped_or_panic(other, &id),
        }
        let decision = match rng.below(4) {
            0 | 1 => "committed",
            2 => "released",
            _ => continue,
        };
        report(format!("TRY {decision} {id}"));
        let path = format!("/v1/reservations/{id}/{}", if decision == "committed" { "commit" } else { "release" });
        match connection.send(Method::POST, &path, None).await {
            Ok(answer) if answer.status == StatusCode::OK => report(format!("ACK {decision} {id}")),
            other => return stopped_or_panic(other, &id),
        }
    }
}

/// The end of a load task: the server is stopping (503) or gone (the
/// connection failed), so the outcome of `what` is unknown. Any other
/// answer is a wrong one.
fn stopped_or_panic(answer: anyhow::Result<Answer>, what: &str) {
    if let Ok(answer) = answer {
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: unexpected answer {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

async fn adjust(server_address: std::net::SocketAddr, knowledge: Arc<Learned>) {
    let Ok(mut connection) = Connection::open(server_address, None).await else { return };
    loop {
        knowledge.learn("TRY ADJUST");
        match connection.json(Method::POST, &format!("/v1/skus/{ADMIN_SKU}/adjust"), &json!({"delta": 1})).await {
            Ok(answer) if answer.status == StatusCode::OK => {
                let on_hand = answer.json().unwrap()["on_hand"].as_u64().unwrap();
                knowledge.learn(&format!("ACK ADJUSTED {on_hand}"));
            }
            other => return stopped_or_panic(other, "adjust"),
        }
    }
}

/// Starts the load; returns its tasks.
fn load(server: &Server, round: u64, knowledge: &Arc<Learned>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = (0..SHOPPERS)
        .map(|shopper| {
            tokio::spawn(shop(
                server.address,
                format!("r{round}-s{shopper}"),
                0xdead_beef ^ (round << 8) ^ shopper,
                Arc::clone(knowledge),
            ))
        })
        .collect();
    tasks.push(tokio::spawn(adjust(server.address, Arc::clone(knowledge))));
    tasks
}

/// What the load learned, and a wake-up for whoever waits on it.
#[derive(Default)]
struct Learned {
    knowledge: Mutex<Knowledge>,
    changed: Notify,
}

impl Learned {
    fn learn(&self, line: &str) {
        self.lock().learn(line);
        self.changed.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Knowledge> {
        self.knowledge.lock().unwrap()
    }
}

/// Waits (bounded) until the load has `acks` acknowledgements.
async fn wait_for_acks(knowledge: &Arc<Learned>, acks: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // Registered before the check, so no acknowledgement slips between.
        let changed = knowledge.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let holds = knowledge.lock().acknowledged_holds();
        if holds >= acks {
            return;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            panic!("the load stalled at {holds} holds");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_exits_0_and_keeps_every_acknowledged_request() {
    let dir = tempfile::tempdir().unwrap();
    stock_up(&open(dir.path()));
    let knowledge = Arc::new(Learned::default());
    let server = start(dir.path());
    let tasks = load(&server, 0, &knowledge);
    wait_for_acks(&knowledge, 300).await;
    let status = tokio::task::spawn_blocking(move || server.terminate()).await.unwrap();
    assert!(status.success(), "a graceful stop exits 0, not {status}");
    for task in tasks {
        task.await.expect("a shopper panicked");
    }
    let engine = open(dir.path());
    let knowledge = knowledge.lock();
    verify(&engine, &knowledge, "after SIGTERM");
    assert!(knowledge.acknowledged_holds() >= 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_load_keeps_every_acknowledged_request() {
    let dir = tempfile::tempdir().unwrap();
    stock_up(&open(dir.path()));
    let knowledge = Arc::new(Learned::default());
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..6 {
        let server = start(dir.path());
        let tasks = load(&server, round, &knowledge);
        let before = knowledge.lock().acknowledged_holds();
        wait_for_acks(&knowledge, before + 20 + rng.below(400) as usize).await;
        server.kill();
        for task in tasks {
            task.await.expect("a shopper panicked");
        }
        let engine = open(dir.path());
        verify(&engine, &knowledge.lock(), &format!("after kill -9 in round {round}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_waiting_for_a_stalled_request() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    // A request timeout far past the bound below, so that only the second
    // signal (not the stalled request's 503) can end the wait.
    let mut server = Server::start(dir.path(), &["--shards", "1", "--request-timeout-ms", "600000"]);
    // A request whose body never finishes keeps a graceful stop waiting.
    let mut stalled = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let head = "POST /v1/reservations HTTP/1.1\r\nhost: stockd\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut healthy = server.connect(None).await;
    assert_eq!(healthy.send(Method::GET, "/healthz", None).await.unwrap().status, StatusCode::OK);

    support::signal(server.pid(), "-TERM");
    server.wait_for_log("stopping");
    support::signal(server.pid(), "-TERM");
    server.wait_for_log("second signal");
    // Well within the 30 s grace period: the second signal cut it short.
    let pid = server.pid();
    let exited = tokio::task::spawn_blocking(move || server.wait());
    let Ok(status) = tokio::time::timeout(std::time::Duration::from_secs(10), exited).await else {
        support::signal(pid, "-KILL");
        panic!("the server still waits after a second signal");
    };
    let status = status.unwrap();
    assert!(status.success(), "the shards were drained and the WAL synced: exit 0, not {status}");
    drop(stalled);
}

/// A storage failure recorded in the data directory during this boot (as
/// the engine writes it when an fsync fails) stops the next start, and the
/// `wal` tools, with exit code 3 and the reason; a record from another boot
/// is removed by a start that serves.
#[test]
fn a_start_in_the_boot_of_a_storage_failure_exits_3_until_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    start(dir.path()).terminate();
    let marker = dir.path().join(stockd_engine::FAILURE_MARKER);
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("Linux gives a boot id");
    let record = |boot: &str| format!("boot_id {}\nreason fdatasync of the WAL failed: disk on fire\n", boot.trim());
    std::fs::write(&marker, record(&boot_id)).unwrap();
    let mut serve = support::stockd();
    serve.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path());
    let refused = support::output_within(&mut serve, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("disk on fire") && stderr.contains("reboot"), "{stderr}");
    // The tools would read the same cached pages: they refuse as well.
    let verify = support::output(support::stockd().args(["wal", "verify"]).arg(dir.path()));
    assert_eq!(verify.status.code(), Some(3), "{}", String::from_utf8_lossy(&verify.stderr));

    std::fs::write(&marker, record("an-earlier-boot")).unwrap();
    let server = start(dir.path());
    assert!(!marker.exists(), "a start after a reboot removes the record");
    assert!(server.terminate().success());
}
