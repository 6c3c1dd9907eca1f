//! `stockd loadgen`: the flash-sale load generator. It drives a running
//! server over N keep-alive HTTP connections: each connection reserves
//! (one request per hold, or `--batch` holds per `/v1/batch`), then commits
//! `--commit-percent` of what it held and releases the rest. It prints
//! holds per second, request latency percentiles (hdrhistogram, from the
//! moment each request is sent), and, when `--rate` paces the load, each
//! reserve's latency from the moment it was scheduled (so a stall that
//! delays later sends counts against them too) and how late each send was
//! (tokio's timer has 1 ms resolution: the schedule jitters by up to 1 ms).
//!
//! It ends with the oversell check, SKU by SKU, against the server's own
//! counts: units sold lie between the commits acknowledged and those plus
//! the commits whose answer was lost or an error; `reserved` lies between
//! the holds acknowledged and not yet decided and those plus every hold
//! whose fate is unknown; `reserved <= on_hand <= stock`. Holds are made
//! with a TTL ten minutes past the run (at most 24 h), so none expires
//! during it. A request answered neither yes nor a definite no (anything
//! but 2xx, 409, or 503 `busy`/`not_ready`), or a lost connection, makes
//! the run exit 1 after its report.
//!
//! Scenarios: `hot-sku` (every hold on one SKU), `uniform` (one of `--skus`
//! SKUs at random), `carts` (2-4 lines over many SKUs: cross-shard).

use crate::client::{parse_url, wait_ready, Answer, Connection};
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::ValueEnum;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_engine::limits::{ON_HAND_MAX, TTL_MS_MAX};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    HotSku,
    Uniform,
    Carts,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "STOCKD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, env = "STOCKD_LOADGEN_SCENARIO", value_enum, default_value = "hot-sku")]
    pub scenario: Scenario,
    /// Keep-alive connections, each one request at a time.
    #[arg(long, env = "STOCKD_LOADGEN_CONNECTIONS", default_value_t = 64)]
    pub connections: usize,
    /// Seconds of load (more than 0, at most a day).
    #[arg(long, env = "STOCKD_LOADGEN_DURATION", default_value_t = 10.0, value_parser = parse_duration_s)]
    pub duration: f64,
    /// Holds per request through /v1/batch (1: one request per hold).
    #[arg(long, env = "STOCKD_LOADGEN_BATCH", default_value_t = 1)]
    pub batch: usize,
    /// Target holds per second in total (0: as fast as possible).
    #[arg(long, env = "STOCKD_LOADGEN_RATE", default_value_t = 0)]
    pub rate: u64,
    /// Percent of holds committed; the rest are released.
    #[arg(long, env = "STOCKD_LOADGEN_COMMIT_PERCENT", default_value_t = 50)]
    pub commit_percent: u64,
    /// Only reserve: leave every hold to expire (one request per hold, the
    /// job a Redis reserve script does).
    #[arg(long, env = "STOCKD_LOADGEN_HOLD_ONLY")]
    pub hold_only: bool,
    /// SKUs of the uniform and carts scenarios.
    #[arg(long, env = "STOCKD_LOADGEN_SKUS", default_value_t = 1_000_000)]
    pub skus: u64,
    /// Units of each SKU at the start.
    #[arg(long, env = "STOCKD_LOADGEN_STOCK", default_value_t = 1 << 30)]
    pub stock: u64,
    /// Bearer token (admin: the load generator sets the stock).
    #[arg(long, env = "STOCKD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long, env = "STOCKD_LOADGEN_JSON")]
    pub json: bool,
}

#[derive(Default)]
struct Counters {
    holds: AtomicU64,
    refused: AtomicU64,
    busy: AtomicU64,
    requests: AtomicU64,
    /// Ops answered neither yes nor a definite no, or never answered.
    unknown: AtomicU64,
    /// Connections that failed (their last request's ops are unknown).
    connections_lost: AtomicU64,
}

/// What the load generator knows of one SKU's units, to check the
/// server's counts against at the end.
#[derive(Default)]
struct SkuLedger {
    /// Units of acknowledged holds not (yet) committed or released.
    held: AtomicU64,
    /// Units of acknowledged commits.
    committed: AtomicU64,
    /// Units of holds, and of releases, whose outcome is unknown: held or not.
    maybe_held: AtomicU64,
    /// Units of commits whose outcome is unknown: sold, or still held, or
    /// back in stock.
    maybe_sold: AtomicU64,
}

/// What one op's answer says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 2xx: done as asked.
    Done,
    /// 409: refused, nothing changed.
    Refused,
    /// 503 `busy` or `not_ready`: refused before anything was applied.
    NotApplied,
    /// Any other answer, or none: applied or not, unknown.
    Unknown,
}

impl Outcome {
    fn of(status: u16, error: Option<&str>) -> Outcome {
        match (status, error) {
            (200..=299, _) => Outcome::Done,
            (409, _) => Outcome::Refused,
            (503, Some("busy" | "not_ready")) => Outcome::NotApplied,
            _ => Outcome::Unknown,
        }
    }
}

/// `--skus`: at most this many (the ledger keeps 32 bytes per SKU).
const SKUS_MAX: u64 = 10_000_000;

/// `--duration`: finite, more than 0 and at most a day (NaN, infinity or a
/// huge number would make no `Duration`).
fn parse_duration_s(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|error| format!("{error}"))?;
    if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 {
        Ok(seconds)
    } else {
        Err("seconds, more than 0 and at most 86400".into())
    }
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.batch == 0 || args.batch > 1_000 || args.commit_percent > 100 {
        bail!("--connections >= 1, --batch 1..=1000, --commit-percent 0..=100");
    }
    if !(1..=SKUS_MAX).contains(&args.skus) || !(1..=ON_HAND_MAX).contains(&args.stock) {
        bail!("--skus 1..={SKUS_MAX}, --stock 1..={ON_HAND_MAX}");
    }
    let address = parse_url(&args.url)?;
    wait_ready(address, Duration::from_secs(30)).await?;
    let skus = match args.scenario {
        Scenario::HotSku => 1,
        Scenario::Uniform | Scenario::Carts => args.skus,
    };
    // Two load generators started together must not share SKUs or ids:
    // the start time and the process id, mixed into 32 bits. Kept short:
    // a reservation id past 23 bytes costs the server an allocation (ids
    // longer than that measured 25 % fewer batched holds/s), which would
    // make the figures depend on the prefix.
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let run_id = ((millis << 22) ^ u64::from(std::process::id())).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    let prefix = format!("lg{run_id:08x}");
    stock_up(address, args.token.as_deref(), &prefix, skus, args.stock).await?;
    let counters = Arc::new(Counters::default());
    let ledger: Arc<Vec<SkuLedger>> = Arc::new((0..skus).map(|_| SkuLedger::default()).collect());
    let mut measured = Measured::new();
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let bar = progress_bar(args.duration, args.json);
    let mut workers = Vec::with_capacity(args.connections);
    for connection in 0..args.connections {
        let worker = Worker {
            args: args.clone(),
            address,
            prefix: format!("{prefix}-c{connection}"),
            sku_prefix: prefix.clone(),
            skus,
            counters: Arc::clone(&counters),
            ledger: Arc::clone(&ledger),
            seed: 0x9e37_79b9 ^ connection as u64,
            phase: connection as f64 / args.connections as f64,
        };
        workers.push(tokio::spawn(worker.run(deadline)));
    }
    let began = Instant::now();
    let mut finished = futures::future::join_all(workers);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    // The run ends when the last connection does, not at the next tick.
    let results = loop {
        tokio::select! {
            results = &mut finished => break results,
            _ = ticks.tick() => {
                bar.set_position(began.elapsed().as_millis() as u64);
                let holds = counters.holds.load(Ordering::Relaxed);
                bar.set_message(format!("{:.0} holds/s", holds as f64 / began.elapsed().as_secs_f64()));
            }
        }
    };
    let elapsed = began.elapsed();
    bar.finish_and_clear();
    for result in results {
        measured.add(result.context("a connection task")??).context("merging histograms")?;
    }
    let after = read_units(address, args.token.as_deref(), &prefix, skus).await?;
    let check = check_units(&ledger, args.stock, &after);
    report(&args, &counters, &measured, elapsed, &check)
}

/// A connection's histograms (and, merged, the run's): request latency,
/// reserve latency from its scheduled send (paced runs), send lag (paced
/// runs).
struct Measured {
    latencies: Histogram<u64>,
    from_schedule: Histogram<u64>,
    lag: Histogram<u64>,
}

impl Measured {
    fn new() -> Measured {
        let histogram = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        Measured { latencies: histogram(), from_schedule: histogram(), lag: histogram() }
    }

    fn add(&mut self, other: Measured) -> anyhow::Result<()> {
        self.latencies.add(other.latencies)?;
        self.from_schedule.add(other.from_schedule)?;
        self.lag.add(other.lag)?;
        Ok(())
    }
}

fn progress_bar(duration: f64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new((duration * 1000.0) as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}").expect("a valid template"));
    bar
}

fn sku_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-sku-{index}")
}

/// Sets every SKU's stock.
async fn stock_up(
    address: std::net::SocketAddr,
    token: Option<&str>,
    prefix: &str,
    skus: u64,
    stock: u64,
) -> anyhow::Result<()> {
    let mut connection = Connection::open(address, token).await?;
    for chunk in (0..skus).collect::<Vec<_>>().chunks(1_000) {
        let ops: Vec<Value> =
            chunk.iter().map(|&i| json!({"op": "set_stock", "sku": sku_name(prefix, i), "on_hand": stock})).collect();
        let answer = connection.json(Method::POST, "/v1/batch", &json!({ "ops": ops })).await?;
        if answer.status != StatusCode::OK {
            bail!("setting the stock: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
        }
        let results = answer.json()?;
        if let Some(failed) = results["results"].as_array().into_iter().flatten().find(|result| result["status"] != 200)
        {
            bail!("setting the stock: {failed}");
        }
    }
    Ok(())
}

/// Every SKU's (units on hand, units reserved), from the server.
async fn read_units(
    address: std::net::SocketAddr,
    token: Option<&str>,
    prefix: &str,
    skus: u64,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut connection = Connection::open(address, token).await?;
    let mut units = Vec::with_capacity(skus as usize);
    for chunk in (0..skus).collect::<Vec<_>>().chunks(1_000) {
        let ops: Vec<Value> = chunk.iter().map(|&i| json!({"op": "get_sku", "sku": sku_name(prefix, i)})).collect();
        let answer = connection.json(Method::POST, "/v1/batch", &json!({ "ops": ops })).await?;
        if answer.status != StatusCode::OK {
            bail!("reading the counts: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
        }
        let answer = answer.json()?;
        let results = answer["results"].as_array().context("reading the counts: no results")?;
        if results.len() != chunk.len() {
            bail!("reading the counts: {} results for {} SKUs", results.len(), chunk.len());
        }
        for (&i, result) in chunk.iter().zip(results) {
            let count = |field: &str| {
                result["body"][field].as_u64().with_context(|| format!("reading {}: {result}", sku_name(prefix, i)))
            };
            units.push((count("on_hand")?, count("reserved")?));
        }
    }
    Ok(units)
}

/// The oversell check's verdict and the totals it reports.
struct UnitCheck {
    /// The first SKU whose counts contradict what the load was told.
    failure: Option<String>,
    // Sums over at most SKUS_MAX SKUs of at most ON_HAND_MAX: within u64.
    sold: u64,
    committed: u64,
    maybe_sold: u64,
    reserved: u64,
    held: u64,
}

/// Checks every SKU's counts after the run (`after[i]`, each started at
/// `stock`) against the ledger (see the module comment).
fn check_units(ledger: &[SkuLedger], stock: u64, after: &[(u64, u64)]) -> UnitCheck {
    let mut check = UnitCheck { failure: None, sold: 0, committed: 0, maybe_sold: 0, reserved: 0, held: 0 };
    for (index, (known, &(on_hand, reserved))) in ledger.iter().zip(after).enumerate() {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (held, committed) = (load(&known.held), load(&known.committed));
        let (maybe_held, maybe_sold) = (load(&known.maybe_held), load(&known.maybe_sold));
        let sold = stock.saturating_sub(on_hand);
        let wrong = if on_hand > stock {
            Some(format!("on_hand {on_hand} is more than the {stock} it started with"))
        } else if reserved > on_hand {
            Some(format!("reserved {reserved} is more than on_hand {on_hand}"))
        } else if !(committed..=committed + maybe_sold).contains(&sold) {
            Some(format!("sold {sold}, but {committed} acknowledged (+{maybe_sold} unknown)"))
        } else if !(held..=held + maybe_held + maybe_sold).contains(&reserved) {
            Some(format!("reserved {reserved}, but {held} acknowledged held (+{} unknown)", maybe_held + maybe_sold))
        } else {
            None
        };
        if check.failure.is_none() {
            check.failure = wrong.map(|wrong| format!("SKU #{index}: {wrong}"));
        }
        check.sold += sold;
        check.committed += committed;
        check.maybe_sold += maybe_sold;
        check.reserved += reserved;
        check.held += held;
    }
    check
}

struct Worker {
    args: LoadgenArgs,
    address: std::net::SocketAddr,
    prefix: String,
    sku_prefix: String,
    skus: u64,
    counters: Arc<Counters>,
    ledger: Arc<Vec<SkuLedger>>,
    seed: u64,
    /// Where this connection's paced sends fall within the interval, as a
    /// fraction of it: spread evenly over the connections, so the server
    /// sees the aggregate rate as a steady stream, not every connection
    /// sending at the same instant (which measured the queue behind a
    /// burst: at 300 requests/s of 100 holds on 32 connections, p50 2 ms
    /// even with fsync off).
    phase: f64,
}

impl Worker {
    fn next(&mut self, below: u64) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed % below
    }

    /// The next cart's lines as (SKU index, qty), in SKU order.
    fn cart(&mut self) -> Vec<(u64, u64)> {
        match self.args.scenario {
            Scenario::HotSku => vec![(0, 1)],
            Scenario::Uniform => vec![(self.next(self.skus), 1)],
            Scenario::Carts => {
                let mut lines = std::collections::BTreeMap::new();
                for _ in 0..2 + self.next(3) {
                    let (index, qty) = (self.next(self.skus), 1 + self.next(2));
                    lines.insert(index, qty);
                }
                lines.into_iter().collect()
            }
        }
    }

    /// Runs until the deadline, or until its connection fails.
    async fn run(mut self, deadline: Instant) -> anyhow::Result<Measured> {
        let mut measured = Measured::new();
        let Ok(mut connection) = Connection::open(self.address, self.args.token.as_deref()).await else {
            self.counters.connections_lost.fetch_add(1, Ordering::Relaxed);
            return Ok(measured);
        };
        // Open-loop pacing: each connection's share of --rate, in holds;
        // the k-th send is due at (k + phase) intervals from the start.
        let interval = (self.args.rate > 0).then(|| {
            Duration::from_secs_f64(self.args.batch as f64 * self.args.connections as f64 / self.args.rate as f64)
        });
        let mut intended = Instant::now() + interval.map_or(Duration::ZERO, |interval| interval.mul_f64(self.phase));
        let mut n = 0u64;
        loop {
            if interval.is_none() {
                intended = Instant::now();
            }
            if intended >= deadline {
                break;
            }
            if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let carts: Vec<Cart> = (0..self.args.batch)
                .map(|_| {
                    n += 1;
                    let lines = self.cart();
                    Cart { number: n, lines }
                })
                .collect();
            if interval.is_some() {
                measured.lag.saturating_record(intended.elapsed().as_micros().max(1) as u64);
            }
            let held = self.reserve(&mut connection, &carts, &mut measured.latencies).await?;
            if interval.is_some() {
                measured.from_schedule.saturating_record(intended.elapsed().as_micros().max(1) as u64);
            }
            let Some(held) = held else { break };
            if !self.finish(&mut connection, held, &mut measured.latencies).await? {
                break;
            }
            if let Some(interval) = interval {
                intended += interval;
            }
        }
        Ok(measured)
    }

    /// Applies `change` (`AtomicU64::fetch_add` or `fetch_sub`) with each
    /// line's qty to that line's SKU's ledger `counter`.
    fn record(
        &self,
        cart: &Cart,
        counter: impl Fn(&SkuLedger) -> &AtomicU64,
        change: fn(&AtomicU64, u64, Ordering) -> u64,
    ) {
        for &(sku, qty) in &cart.lines {
            change(counter(&self.ledger[sku as usize]), qty, Ordering::Relaxed);
        }
    }

    /// Sends one request; a failed connection is `None` (its outcome unknown).
    async fn send(&self, connection: &mut Connection, path: &str, body: String) -> Option<Answer> {
        match connection.send(Method::POST, path, Some(Bytes::from(body))).await {
            Ok(answer) => Some(answer),
            Err(_) => {
                self.counters.connections_lost.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// `{"op":"reserve",` (in a batch) `"id":...,"lines":[...],"ttl_ms":...}`,
    /// written directly: ids and SKU names are ours, plain ASCII with
    /// nothing to escape.
    fn write_reserve(&self, body: &mut String, cart: &Cart, in_batch: bool) {
        body.push_str(if in_batch { r#"{"op":"reserve","id":""# } else { r#"{"id":""# });
        let _ = write!(body, r#"{}-{}","lines":["#, self.prefix, cart.number);
        for (i, (sku, qty)) in cart.lines.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(body, r#"{comma}{{"sku":"{}","qty":{qty}}}"#, sku_name(&self.sku_prefix, *sku));
        }
        let _ = write!(body, r#"],"ttl_ms":{}}}"#, hold_ttl_ms(self.args.duration));
    }

    /// Reserves the carts; returns the held ones, or `None` when the
    /// connection failed.
    async fn reserve<'c>(
        &mut self,
        connection: &mut Connection,
        carts: &'c [Cart],
        latencies: &mut Histogram<u64>,
    ) -> anyhow::Result<Option<Vec<&'c Cart>>> {
        let single = self.args.batch == 1;
        let mut body = String::with_capacity(128 * carts.len());
        if single {
            self.write_reserve(&mut body, &carts[0], false);
        } else {
            body.push_str(r#"{"ops":["#);
            for (i, cart) in carts.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                self.write_reserve(&mut body, cart, true);
            }
            body.push_str("]}");
        }
        let path = if single { "/v1/reservations" } else { "/v1/batch" };
        let sent = Instant::now();
        let answer = self.send(connection, path, body).await;
        let outcomes = match &answer {
            Some(answer) => outcomes(answer, carts.len(), single, "reserve")?,
            None => vec![Outcome::Unknown; carts.len()],
        };
        latencies.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut held = Vec::new();
        for (cart, outcome) in carts.iter().zip(outcomes) {
            match outcome {
                Outcome::Done => {
                    self.counters.holds.fetch_add(1, Ordering::Relaxed);
                    self.record(cart, |sku| &sku.held, AtomicU64::fetch_add);
                    held.push(cart);
                }
                Outcome::Refused => drop(self.counters.refused.fetch_add(1, Ordering::Relaxed)),
                Outcome::NotApplied => drop(self.counters.busy.fetch_add(1, Ordering::Relaxed)),
                Outcome::Unknown => {
                    self.counters.unknown.fetch_add(1, Ordering::Relaxed);
                    self.record(cart, |sku| &sku.maybe_held, AtomicU64::fetch_add);
                }
            }
        }
        Ok(answer.map(|_| held))
    }

    /// Commits `--commit-percent` of the holds and releases the rest;
    /// returns whether the connection still works.
    async fn finish(
        &mut self,
        connection: &mut Connection,
        held: Vec<&Cart>,
        latencies: &mut Histogram<u64>,
    ) -> anyhow::Result<bool> {
        if held.is_empty() || self.args.hold_only {
            return Ok(true);
        }
        let decisions: Vec<(&Cart, bool)> =
            held.into_iter().map(|cart| (cart, self.next(100) < self.args.commit_percent)).collect();
        let verb = |commit: bool| if commit { "commit" } else { "release" };
        let single = self.args.batch == 1;
        let (path, body) = if single {
            let (cart, commit) = decisions[0];
            (format!("/v1/reservations/{}-{}/{}", self.prefix, cart.number, verb(commit)), "{}".to_owned())
        } else {
            let mut body = String::with_capacity(64 * decisions.len());
            body.push_str(r#"{"ops":["#);
            for (i, (cart, commit)) in decisions.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                let _ = write!(body, r#"{comma}{{"op":"{}","id":"{}-{}"}}"#, verb(*commit), self.prefix, cart.number);
            }
            body.push_str("]}");
            ("/v1/batch".to_owned(), body)
        };
        let started = Instant::now();
        let answer = self.send(connection, &path, body).await;
        let outcomes = match &answer {
            Some(answer) => outcomes(answer, decisions.len(), single, "commit/release")?,
            None => vec![Outcome::Unknown; decisions.len()],
        };
        latencies.saturating_record(started.elapsed().as_micros().max(1) as u64);
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        for ((cart, commit), outcome) in decisions.iter().zip(outcomes) {
            match outcome {
                // Refused before it was applied: still held.
                Outcome::NotApplied => drop(self.counters.busy.fetch_add(1, Ordering::Relaxed)),
                Outcome::Done => {
                    self.record(cart, |sku| &sku.held, AtomicU64::fetch_sub);
                    if *commit {
                        self.record(cart, |sku| &sku.committed, AtomicU64::fetch_add);
                    }
                }
                // A refusal of a hold we were told is held is as wrong as
                // any other answer: its units may be anywhere.
                Outcome::Refused | Outcome::Unknown => {
                    self.counters.unknown.fetch_add(1, Ordering::Relaxed);
                    self.record(cart, |sku| &sku.held, AtomicU64::fetch_sub);
                    if *commit {
                        self.record(cart, |sku| &sku.maybe_sold, AtomicU64::fetch_add);
                    } else {
                        self.record(cart, |sku| &sku.maybe_held, AtomicU64::fetch_add);
                    }
                }
            }
        }
        Ok(answer.is_some())
    }
}

/// The TTL of the load's holds: ten minutes past the run, at most 24 h.
fn hold_ttl_ms(duration_s: f64) -> u64 {
    ((duration_s * 1000.0) as u64 + 600_000).min(TTL_MS_MAX)
}

/// One cart: its number (the id is `PREFIX-NUMBER`) and lines.
struct Cart {
    number: u64,
    lines: Vec<(u64, u64)>,
}

/// The outcome of each of the `ops` ops of a request: one for a single
/// request, the per-op results of a `/v1/batch` answer (read without
/// building a JSON tree: the load generator must cost the machine little).
/// A 503 for the whole batch is that 503 for each op, as a single
/// request's would be.
fn outcomes(answer: &Answer, ops: usize, single: bool, what: &str) -> anyhow::Result<Vec<Outcome>> {
    #[derive(serde::Deserialize)]
    struct Results<Op> {
        results: Vec<Op>,
    }
    /// An op's status alone: its body is skipped, not parsed.
    #[derive(serde::Deserialize)]
    struct OpStatus {
        status: u16,
    }
    #[derive(serde::Deserialize)]
    struct OpAnswer {
        status: u16,
        #[serde(default)]
        body: Option<ErrorBody>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        error: Option<String>,
    }
    let error_of = |body: &[u8]| serde_json::from_slice::<ErrorBody>(body).ok().and_then(|body| body.error);
    let status = answer.status.as_u16();
    if single || answer.status == StatusCode::SERVICE_UNAVAILABLE {
        let error = (status == 503).then(|| error_of(&answer.body)).flatten();
        return Ok(vec![Outcome::of(status, error.as_deref()); ops]);
    }
    if answer.status != StatusCode::OK {
        bail!("batch {what}: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    let results: Results<OpStatus> = serde_json::from_slice(&answer.body).context("batch results")?;
    if results.results.len() != ops {
        bail!("batch {what}: {} results for {ops} ops", results.results.len());
    }
    if results.results.iter().all(|op| op.status != 503) {
        // Only a 503's error code matters: the common case parses no body.
        return Ok(results.results.iter().map(|op| Outcome::of(op.status, None)).collect());
    }
    let results: Results<OpAnswer> = serde_json::from_slice(&answer.body).context("batch results")?;
    Ok(results
        .results
        .iter()
        .map(|op| Outcome::of(op.status, op.body.as_ref().and_then(|b| b.error.as_deref())))
        .collect())
}

fn report(
    args: &LoadgenArgs,
    counters: &Counters,
    Measured { latencies, from_schedule, lag }: &Measured,
    elapsed: Duration,
    check: &UnitCheck,
) -> anyhow::Result<()> {
    let seconds = elapsed.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let holds = load(&counters.holds);
    let (unknown, connections_lost) = (load(&counters.unknown), load(&counters.connections_lost));
    let verdict = if check.failure.is_none() { "passed" } else { "FAILED" };
    let quantiles = |histogram: &Histogram<u64>| {
        (!histogram.is_empty()).then(|| {
            json!({
                "p50": histogram.value_at_quantile(0.50), "p90": histogram.value_at_quantile(0.90),
                "p99": histogram.value_at_quantile(0.99), "p999": histogram.value_at_quantile(0.999),
                "max": histogram.max(),
            })
        })
    };
    let scenario = args.scenario.to_possible_value().expect("no variant is skipped").get_name().to_owned();
    let summary = json!({
        "scenario": scenario,
        "connections": args.connections,
        "batch": args.batch,
        "rate_target": args.rate,
        "hold_only": args.hold_only,
        "seconds": seconds,
        "holds": holds,
        "holds_per_second": holds as f64 / seconds,
        "requests": load(&counters.requests),
        "requests_per_second": load(&counters.requests) as f64 / seconds,
        "refused": load(&counters.refused),
        "busy": load(&counters.busy),
        "errors": unknown,
        "connections_lost": connections_lost,
        "latency_us": quantiles(latencies),
        "reserve_latency_from_schedule_us": quantiles(from_schedule),
        "send_lag_us": quantiles(lag),
        "units_sold": check.sold,
        "units_committed": check.committed,
        "units_of_failed_commits": check.maybe_sold,
        "units_reserved": check.reserved,
        "units_held": check.held,
        "oversell_check": verdict,
        "oversell_failure": check.failure,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{scenario}: {holds} holds in {seconds:.1} s = {:.0} holds/s over {} connections (batch {}); {:.0} requests/s",
            holds as f64 / seconds,
            args.connections,
            args.batch,
            summary["requests_per_second"].as_f64().unwrap_or(0.0)
        );
        let print = |what: &str, histogram: &Histogram<u64>| {
            if !histogram.is_empty() {
                println!(
                    "{what} us: p50 {} p90 {} p99 {} p99.9 {} max {}",
                    histogram.value_at_quantile(0.5),
                    histogram.value_at_quantile(0.9),
                    histogram.value_at_quantile(0.99),
                    histogram.value_at_quantile(0.999),
                    histogram.max()
                );
            }
        };
        print("request latency", latencies);
        print("reserve latency from its scheduled send", from_schedule);
        print("sends behind schedule", lag);
        println!(
            "refused {} busy {} errors {unknown} connections lost {connections_lost}; units sold {}, commits \
             acknowledged {} (+{} unknown), reserved {} (acknowledged holds {}): oversell check {verdict}",
            load(&counters.refused),
            load(&counters.busy),
            check.sold,
            check.committed,
            check.maybe_sold,
            check.reserved,
            check.held,
        );
    }
    if let Some(failure) = &check.failure {
        bail!("OVERSELL CHECK FAILED: {failure}");
    }
    if unknown > 0 || connections_lost > 0 {
        bail!("{unknown} ops had no definite answer and {connections_lost} connections failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: StatusCode, body: &'static str) -> Answer {
        Answer { status, headers: Default::default(), body: Bytes::from_static(body.as_bytes()) }
    }

    #[test]
    fn a_duration_is_a_finite_positive_number_of_seconds() {
        assert_eq!(parse_duration_s("2.5"), Ok(2.5));
        for bad in ["NaN", "inf", "-1", "0", "1e300", "ten"] {
            assert!(parse_duration_s(bad).is_err(), "{bad}");
        }
    }

    /// A batch refused whole counts as that refusal for each op, as single
    /// requests would, instead of ending the run without a report; only
    /// `busy` and `not_ready` are refusals before anything was applied.
    #[test]
    fn each_op_gets_the_outcome_its_answer_says() {
        let busy = answer(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"busy","message":"full"}"#);
        assert_eq!(outcomes(&busy, 3, false, "reserve").unwrap(), vec![Outcome::NotApplied; 3]);
        let timed_out = answer(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"request_timeout","message":"late"}"#);
        assert_eq!(outcomes(&timed_out, 2, false, "reserve").unwrap(), vec![Outcome::Unknown; 2]);
        assert_eq!(outcomes(&timed_out, 1, true, "reserve").unwrap(), vec![Outcome::Unknown]);
        let served = answer(
            StatusCode::OK,
            r#"{"results":[{"status":201,"body":{"id":"a"}},{"status":409,"body":{"error":"insufficient_stock"}},
                {"status":503,"body":{"error":"busy"}},{"status":500,"body":{"error":"internal"}}]}"#,
        );
        let expected = vec![Outcome::Done, Outcome::Refused, Outcome::NotApplied, Outcome::Unknown];
        assert_eq!(outcomes(&served, 4, false, "reserve").unwrap(), expected);
        assert!(outcomes(&served, 5, false, "reserve").is_err(), "a result missing is an error, not skipped");
        assert!(outcomes(&answer(StatusCode::UNPROCESSABLE_ENTITY, "{}"), 1, false, "reserve").is_err());
        assert_eq!(outcomes(&answer(StatusCode::CREATED, "{}"), 1, true, "reserve").unwrap(), vec![Outcome::Done]);
    }

    fn ledger(entries: &[(u64, u64, u64, u64)]) -> Vec<SkuLedger> {
        entries
            .iter()
            .map(|&(held, committed, maybe_held, maybe_sold)| SkuLedger {
                held: held.into(),
                committed: committed.into(),
                maybe_held: maybe_held.into(),
                maybe_sold: maybe_sold.into(),
            })
            .collect()
    }

    /// The check is per SKU: a contradiction on one SKU is not hidden by
    /// the slack of the others, and an acknowledged hold the server does
    /// not count is caught even when nothing was sold.
    #[test]
    fn the_oversell_check_catches_each_contradiction_on_its_own_sku() {
        // Stock 10 each; SKU 0 sold 3 and holds 2, SKU 1 untouched.
        let known = ledger(&[(2, 3, 0, 0), (0, 0, 0, 0)]);
        assert_eq!(check_units(&known, 10, &[(7, 2), (10, 0)]).failure, None);
        let failure = |after: &[(u64, u64)]| check_units(&known, 10, after).failure.expect("caught");
        assert!(failure(&[(7, 2), (11, 0)]).starts_with("SKU #1: on_hand 11"), "stock created from nothing");
        assert!(failure(&[(6, 2), (10, 0)]).contains("sold 4"), "a sale nobody was told of");
        assert!(failure(&[(7, 1), (10, 0)]).contains("reserved 1"), "an acknowledged hold lost");
        assert!(failure(&[(7, 3), (10, 0)]).contains("reserved 3"), "a hold nobody was told of");
        assert!(failure(&[(7, 2), (1, 2)]).contains("reserved 2 is more than on_hand 1"));
        // Holds acknowledged past the stock: the server cannot count them.
        let over_held = ledger(&[(12, 0, 0, 0)]);
        assert!(check_units(&over_held, 10, &[(10, 10)]).failure.is_some());
        // Unknown outcomes widen the range, and only by their units.
        let unsure = ledger(&[(2, 3, 1, 2)]);
        for after in [(7, 2), (5, 2), (5, 5), (7, 5)] {
            assert_eq!(check_units(&unsure, 10, &[after]).failure, None, "{after:?}");
        }
        assert!(check_units(&unsure, 10, &[(4, 2)]).failure.is_some(), "sold past the unknown commits");
        assert!(check_units(&unsure, 10, &[(7, 6)]).failure.is_some(), "held past the unknown holds");
    }
}
