//! The two load tools end to end, briefly: `stockd loadgen` against the
//! real server (single requests with decisions, and `/v1/batch`, cross-shard
//! carts) and the in-process `stockd demo`. Each must finish, report its
//! figures, and pass its own oversell check against the server's counts.

mod support;

use serde_json::Value;
use support::{stockd, Server};

fn loadgen(server: &Server, args: &[&str]) -> Value {
    let output = support::output(
        stockd()
            .args(["loadgen", "--url", &server.url(), "--duration", "1", "--connections", "4", "--json"])
            .args(args),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "loadgen {args:?}: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("one JSON object: {stdout}"))
}

#[test]
fn loadgen_drives_the_server_and_its_oversell_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    for args in [
        &["--scenario", "hot-sku", "--commit-percent", "50"][..],
        &["--scenario", "carts", "--skus", "100", "--batch", "20"],
        &["--scenario", "uniform", "--skus", "100", "--hold-only"],
    ] {
        let report = loadgen(&server, args);
        assert_eq!(report["oversell_check"], "passed", "{args:?}: {report}");
        assert!(report["holds"].as_u64().unwrap() > 0, "{args:?}: {report}");
        assert_eq!(report["errors"], 0, "{args:?}: {report}");
        // No errors: every unit sold is an acknowledged commit, exactly.
        assert_eq!(report["units_sold"], report["units_committed"], "{args:?}: {report}");
        if args.contains(&"--hold-only") {
            assert_eq!(report["units_sold"], 0, "holds only: nothing sold");
            assert_eq!(report["units_reserved"], report["units_held"], "every acknowledged hold, still held");
        }
        for quantile in ["p50", "p99", "max"] {
            assert!(report["latency_us"][quantile].as_u64().unwrap() > 0, "{args:?}: {report}");
        }
    }
}

/// A sell-out: 50 units among buyers who commit every hold. The check runs
/// where it matters (holds refused at the end of stock), and passes.
#[test]
fn loadgen_sells_out_a_hot_sku_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--shards", "2"]);
    let report = loadgen(&server, &["--scenario", "hot-sku", "--stock", "50", "--commit-percent", "100"]);
    assert_eq!(report["oversell_check"], "passed", "{report}");
    assert_eq!((report["units_sold"].as_u64(), report["units_reserved"].as_u64()), (Some(50), Some(0)), "{report}");
    assert!(report["refused"].as_u64().unwrap() > 0, "buyers were turned away: {report}");
}

#[test]
fn demo_sells_exactly_the_stock() {
    let output = support::output(stockd().args([
        "demo",
        "--stock",
        "100",
        "--buyers",
        "2000",
        "--threads",
        "2",
        "--shards",
        "2",
    ]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("sold 100 (expected min(stock, buyers) = 100)"), "{stdout}");
    assert!(stdout.contains("oversell check: passed"), "{stdout}");
}
