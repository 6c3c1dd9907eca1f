//! Resident bytes per SKU: starts an engine, loads N SKUs (default 10
//! million) through the batched API, and prints the growth of the process's
//! resident set (VmRSS from /proc/self/status) divided by N. The figure
//! includes everything the engine keeps per SKU: the shard's counts, the
//! SKU index (hash table + key arena) and the published read-view slots.
//!
//! cargo run --release --example sku_memory [-- SKUS]

use std::sync::Arc;
use stockd_engine::{Engine, EngineConfig, Request, Sku, SystemClock};

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

fn main() {
    let skus: u64 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(10_000_000);
    let engine = Engine::start(EngineConfig::default(), Arc::new(SystemClock));
    let before = resident_bytes();
    let chunk = 50_000u64;
    for start in (0..skus).step_by(chunk as usize) {
        let requests = (start..(start + chunk).min(skus))
            .map(|i| Request::SetStock {
                sku: Sku::new(&format!("sku-{i:08}")).expect("valid sku"),
                on_hand: 100,
                expected_version: None,
            })
            .collect();
        assert!(engine.submit_batch_blocking(requests).iter().all(Result::is_ok));
    }
    let after = resident_bytes();
    assert_eq!(engine.read_view().sku_count() as u64, skus);
    assert!(engine.read_view().get("sku-00000000").is_some());
    println!(
        "{skus} SKUs (keys like sku-00000001, 12 bytes) on {} shards: resident set grew {:.1} MiB = {:.1} bytes per SKU",
        engine.config().shards,
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / skus as f64
    );
}
