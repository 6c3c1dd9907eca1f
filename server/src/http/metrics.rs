//! `/metrics`: Prometheus (OpenMetrics text) through prometheus-client.
//! HTTP metrics are recorded per request by the `observe` middleware; the
//! engine's are read from its per-shard counters at scrape time, so the
//! shards pay nothing for being observed.

use crate::http::AppState;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use stockd_engine::stats::HistogramReading;

// Labels borrow static strings (routes and methods are a closed set, see
// `observe`): recording a request allocates nothing once its series exists.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    shard: u16,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0])
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register("stockd_http_requests", "HTTP requests by route, method and status", requests.clone());
        registry.register("stockd_http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        Metrics { registry, requests, latency }
    }

    pub fn record(&self, route: &'static str, method: &'static str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { route, method, status }).inc();
        self.latency.get_or_create(&RouteLabels { route }).observe(seconds);
    }

    /// The exposition text: HTTP metrics, then the engine's.
    pub fn render(&self, state: &AppState) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &self.registry).expect("writing to a String");
        // Failing to write into a String is impossible; ignore the unit result.
        let _ = encode_engine(&mut text, state);
        prometheus_client::encoding::text::encode_eof(&mut text).expect("writing to a String");
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn encode_engine(text: &mut String, state: &AppState) -> std::fmt::Result {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(EngineCollector(state.clone())));
    prometheus_client::encoding::text::encode_registry(text, &registry)
}

#[derive(Debug)]
struct EngineCollector(AppState);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

impl prometheus_client::collector::Collector for EngineCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        let state = &self.0;
        let recovered = state.engine().ok();
        gauge(
            &mut encoder,
            "stockd_ready",
            "1 once recovery finished and requests are served",
            u64::from(recovered.is_some()),
        )?;
        let recovery = ConstGauge::new(state.recovery_ms() as f64 / 1000.0);
        let help = "Time the last start spent recovering the log";
        recovery.encode(encoder.encode_descriptor("stockd_recovery_seconds", help, None, recovery.metric_type())?)?;
        let Some(engine) = recovered else { return Ok(()) };
        gauge(
            &mut encoder,
            "stockd_storage_failed",
            "1 after a WAL write or fsync failed (the process stops)",
            u64::from(engine.failure().is_some()),
        )?;
        gauge(&mut encoder, "stockd_skus", "SKUs known", engine.read_view().sku_count() as u64)?;
        let stats = engine.stats();
        let per_shard =
            |read: &dyn Fn(usize) -> u64| (0..stats.len()).map(|shard| (shard as u16, read(shard))).collect::<Vec<_>>();
        let load = |field: fn(&stockd_engine::stats::ShardStats) -> &std::sync::atomic::AtomicU64| {
            per_shard(&|shard| field(&stats[shard]).load(Ordering::Relaxed))
        };
        shard_gauges(
            &mut encoder,
            "stockd_shard_queue_depth",
            "Client messages waiting in each shard's queue",
            per_shard(&|shard| engine.queue_len(shard) as u64),
        )?;
        shard_gauges(&mut encoder, "stockd_holds_active", "Holds in state held", load(|s| &s.holds_active))?;
        shard_gauges(
            &mut encoder,
            "stockd_reservations_remembered",
            "Reservations kept (held, or finished within retention)",
            load(|s| &s.reservations),
        )?;
        shard_gauges(
            &mut encoder,
            "stockd_timers_pending",
            "Expiry and forget timers queued",
            load(|s| &s.timers_pending),
        )?;
        shard_gauges(&mut encoder, "stockd_carts_pending", "Cross-shard carts being held", load(|s| &s.carts_pending))?;
        shard_gauges(
            &mut encoder,
            "stockd_snapshot_lsn",
            "LSN of the newest snapshot written by this process",
            load(|s| &s.snapshot_lsn),
        )?;
        shard_counters(&mut encoder, "stockd_holds_expired", "Holds that expired", load(|s| &s.holds_expired))?;
        shard_counters(&mut encoder, "stockd_shard_ops", "Client ops applied", load(|s| &s.ops))?;
        shard_counters(&mut encoder, "stockd_wal_records", "Records appended to the WAL", load(|s| &s.wal_records))?;
        shard_counters(&mut encoder, "stockd_wal_bytes", "Bytes written to the WAL", load(|s| &s.wal_bytes))?;
        shard_counters(
            &mut encoder,
            "stockd_wal_segments_created",
            "WAL segments created",
            load(|s| &s.wal_segments_created),
        )?;
        shard_counters(
            &mut encoder,
            "stockd_wal_segments_recycled",
            "WAL segments made from a segment a snapshot covered (the others: from a zero-filled spare or a new file)",
            load(|s| &s.wal_segments_recycled),
        )?;
        shard_counters(&mut encoder, "stockd_snapshots", "Snapshots written", load(|s| &s.snapshots))?;
        let batch: Vec<_> = (0..stats.len()).map(|shard| (shard as u16, stats[shard].batch_len.read())).collect();
        shard_histograms(
            &mut encoder,
            "stockd_shard_batch_ops",
            "Client ops applied per loop turn (group commit)",
            batch,
            1.0,
        )?;
        let fsync: Vec<_> = (0..stats.len()).map(|shard| (shard as u16, stats[shard].fsync_us.read())).collect();
        shard_histograms(&mut encoder, "stockd_wal_fsync_seconds", "Latency of each WAL fdatasync", fsync, 1e-6)?;
        let capture: Vec<_> =
            (0..stats.len()).map(|shard| (shard as u16, stats[shard].snapshot_capture_us.read())).collect();
        let help = "How long each slice of a snapshot's capture paused the shard (one slice per loop turn)";
        shard_histograms(&mut encoder, "stockd_snapshot_capture_seconds", help, capture, 1e-6)
    }
}

type Encoder<'a> = prometheus_client::encoding::DescriptorEncoder<'a>;

fn gauge(encoder: &mut Encoder<'_>, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstGauge::new(value as i64);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn shard_gauges(encoder: &mut Encoder<'_>, name: &str, help: &str, values: Vec<(u16, u64)>) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (shard, value) in values {
        ConstGauge::new(value as i64).encode(family.encode_family(&ShardLabels { shard })?)?;
    }
    Ok(())
}

fn shard_counters(encoder: &mut Encoder<'_>, name: &str, help: &str, values: Vec<(u16, u64)>) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (shard, value) in values {
        ConstCounter::new(value).encode(family.encode_family(&ShardLabels { shard })?)?;
    }
    Ok(())
}

/// Engine histograms have power-of-two buckets; `scale` turns their unit
/// (ops, microseconds) into the exported one.
fn shard_histograms(
    encoder: &mut Encoder<'_>,
    name: &str,
    help: &str,
    readings: Vec<(u16, HistogramReading)>,
    scale: f64,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (shard, reading) in readings {
        let last = reading.buckets.len() - 1;
        let buckets: Vec<(f64, u64)> = reading
            .buckets
            .iter()
            .enumerate()
            .map(|(bucket, &(upper, count))| (if bucket == last { f64::INFINITY } else { upper as f64 * scale }, count))
            .collect();
        let labels = ShardLabels { shard };
        let mut metric = family.encode_family(&labels)?;
        metric.encode_histogram::<NoLabelSet>(reading.sum as f64 * scale, reading.count, &buckets, None)?;
    }
    Ok(())
}
