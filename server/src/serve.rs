//! `stockd serve`: binds first (so `/healthz` answers and the log says
//! where), recovers the data directory (a progress bar past one second;
//! `/readyz` answers 503 until done), then serves the API until SIGTERM or
//! SIGINT: stop accepting, finish requests in flight (at most
//! [`SHUTDOWN_GRACE`]; a second signal stops waiting), drain the shards,
//! sync the WAL, exit 0. A storage failure stops the process at once with
//! exit code 3: nothing more may be acknowledged and a failed fsync is
//! never retried. A shard that stopped by a panic stops it with exit code
//! 70: a restart recovers the shard from its log.

use crate::config::Config;
use crate::http::auth::Tokens;
use crate::http::{self, AppState};
use crate::listener::{idle_timeout, tls_acceptor, Listener, HEAD_TIMEOUT};
use crate::progress::with_recovery_bar;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use stockd_engine::{Engine, FsyncPolicy, RecoveryProgress, RecoveryReport, StoreConfig, SystemClock};

/// The log target of the `listening on` line, logged whatever the filter.
pub const LISTENING_TARGET: &str = "stockd::listening";

/// Exit code after a storage failure.
pub const EXIT_STORAGE_FAILED: i32 = 3;
/// Exit code after a shard stopped by a panic (EX_SOFTWARE).
pub const EXIT_SHARD_STOPPED: i32 = 70;
/// Undecidable cart parts (`RecoveryReport::undecidable`) named in the log.
const UNDECIDABLE_LOGGED_MAX: usize = 100;

/// How long a stopping server waits for requests in flight (idle keep-alive
/// connections included) before it closes them and drains the shards.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.fsync == FsyncPolicy::Never {
        tracing::warn!("fsync is OFF (--fsync never): a crash loses acknowledged reservations; benchmarks only");
    }
    if config.tokens.is_empty() {
        tracing::warn!("no tokens configured: authentication is off (loopback or --insecure-no-auth)");
    }
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let state = AppState::new(Tokens::new(&config.tokens), config.limits);
    let (router, _) = http::router(state.clone());
    let tcp =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let idle_timeout = idle_timeout(config.limits.request_timeout);
    let listener = Listener::new(tcp, config.connections_max, tls.clone(), idle_timeout)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(target: LISTENING_TARGET, "listening on {scheme}://{}", listener.local_addr());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(listener.serve(router, HEAD_TIMEOUT, async move {
        let mut stop = stop;
        let _ = stop.wait_for(|stop| *stop).await;
    }));
    let (signal_tx, mut signals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(forward_signals(signal_tx));

    let engine = match recover(&config).await {
        Ok((engine, report)) => {
            log_recovery(&report);
            state.set_engine(Arc::clone(&engine), report.elapsed);
            engine
        }
        Err(error) => {
            let _ = stop_tx.send(true);
            return Err(error);
        }
    };
    tokio::spawn(watch_for_failures(Arc::clone(&engine)));
    tracing::info!("ready");

    signals.recv().await.context("waiting for a signal")?;
    tracing::info!(grace_s = SHUTDOWN_GRACE.as_secs(), "stopping: finishing requests in flight");
    let _ = stop_tx.send(true);
    tokio::select! {
        finished = server => finished.context("the server task")?,
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("requests still in flight after the grace period: closing them"),
        _ = signals.recv() => tracing::warn!("second signal: closing requests still in flight"),
    }
    tracing::info!("draining the shards and syncing the WAL");
    let engine_for_shutdown = Arc::clone(&engine);
    tokio::task::spawn_blocking(move || engine_for_shutdown.shutdown()).await.context("the engine shutdown")?;
    if let Some(reason) = engine.failure() {
        tracing::error!(%reason, "storage failed while stopping: fix the disk, reboot, then start again");
        std::process::exit(EXIT_STORAGE_FAILED);
    }
    tracing::info!("stopped");
    Ok(())
}

async fn recover(config: &Config) -> anyhow::Result<(Arc<Engine>, RecoveryReport)> {
    let store = StoreConfig {
        fsync: config.fsync,
        segment_bytes_max: config.segment_bytes_max,
        snapshot_every_bytes: config.snapshot_every_bytes,
        spare_segments: config.spare_segments,
        ..StoreConfig::new(&config.data_dir)
    };
    let (engine_config, data_dir) = (config.engine, config.data_dir.clone());
    tracing::info!(data_dir = %data_dir.display(), shards = engine_config.shards, "recovering");
    let progress = Arc::new(RecoveryProgress::default());
    let opened = tokio::task::spawn_blocking(move || {
        with_recovery_bar(&progress, || Engine::open(engine_config, store, Arc::new(SystemClock), &progress))
    })
    .await
    .context("the recovery task")?;
    let (engine, report) = opened.with_context(|| format!("recovering {}", data_dir.display()))?;
    Ok((Arc::new(engine), report))
}

fn log_recovery(report: &RecoveryReport) {
    for shard in &report.shards {
        if let Some((path, offset, reason)) = &shard.torn_tail {
            tracing::warn!(shard = shard.shard, file = %path.display(), offset, reason, "cut a torn record from the WAL tail");
        }
        for damage in &shard.snapshots_passed_over {
            tracing::warn!(
                shard = shard.shard,
                %damage,
                "passed over a damaged snapshot: recovered from the one before it and the log after it; \
                 run `stockd wal verify`, and check the disk"
            );
        }
        if let Some(path) = &shard.discarded_segment {
            tracing::warn!(shard = shard.shard, file = %path.display(), "removed a segment whose creation never completed");
        }
        tracing::info!(
            shard = shard.shard,
            snapshot_lsn = shard.snapshot_lsn.unwrap_or(0),
            records_replayed = shard.records_replayed,
            next_lsn = shard.next_lsn,
            skus = shard.skus,
            holds = shard.holds,
            "recovered shard"
        );
    }
    // One line each, up to a bound: a large clock step could make many.
    for id in report.undecidable.iter().take(UNDECIDABLE_LOGGED_MAX) {
        tracing::warn!(
            reservation = %id,
            "aborted a cart part with no home record although home's time is past the cart's retention: \
             home may have forgotten a commit, and then the cart's other parts are sold while this one is \
             back in stock; check it against the order"
        );
    }
    if report.undecidable.len() > UNDECIDABLE_LOGGED_MAX {
        tracing::warn!(
            count = report.undecidable.len(),
            "more cart parts were aborted that way than listed above (`stockd wal inspect` shows their Abort records)"
        );
    }
    tracing::info!(
        elapsed_ms = report.elapsed.as_millis() as u64,
        reconciled_cart_parts = report.reconciled,
        "recovered {} records",
        report.shards.iter().map(|shard| shard.records_replayed).sum::<u64>()
    );
}

/// The process stops after any storage failure: nothing more is acknowledged.
async fn watch_for_failures(engine: Arc<Engine>) {
    loop {
        if let Some(reason) = engine.failure() {
            tracing::error!(
                %reason,
                "storage failed: stopping without acknowledging anything more; fix the disk, reboot, then start again"
            );
            std::process::exit(EXIT_STORAGE_FAILED);
        }
        if let Some(shard) = engine.stopped_shard() {
            tracing::error!(
                shard,
                "a shard stopped (a panic: a bug, see the log above): exiting so that a restart recovers it"
            );
            std::process::exit(EXIT_SHARD_STOPPED);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends one message per SIGTERM or SIGINT: the first starts a graceful
/// stop, the second cuts the grace period short.
async fn forward_signals(signals: tokio::sync::mpsc::UnboundedSender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("a process can listen for SIGTERM");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a process can listen for SIGINT");
    loop {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM"),
            _ = interrupt.recv() => tracing::info!("SIGINT"),
        }
        if signals.send(()).is_err() {
            return;
        }
    }
}
