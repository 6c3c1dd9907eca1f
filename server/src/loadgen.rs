//! `stockd loadgen`: the flash-sale load generator. It drives a running
//! server over N keep-alive HTTP connections: each connection reserves
//! (one request per hold, or `--batch` holds per `/v1/batch`), then commits
//! `--commit-percent` of what it held and releases the rest. It prints
//! holds per second, request latency percentiles (hdrhistogram, from the
//! moment each request is sent), and, when `--rate` paces the load, how late
//! each send was against its schedule (a server stall shows there: tokio's
//! timer has 1 ms resolution, so the schedule itself jitters by up to 1 ms).
//! It ends with the oversell check against the server's own counts: units
//! sold must equal the commits acknowledged.
//!
//! Scenarios: `hot-sku` (every hold on one SKU), `uniform` (one of `--skus`
//! SKUs at random), `carts` (2-4 lines over many SKUs: cross-shard).

use crate::client::{parse_url, wait_ready, Answer, Connection};
use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    committed_units: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Units of commits that failed with an error: applied or not, unknown.
    uncertain_commit_units: AtomicU64,
}

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
    let address = parse_url(&args.url)?;
    wait_ready(address, Duration::from_secs(30)).await?;
    let skus = match args.scenario {
        Scenario::HotSku => 1,
        Scenario::Uniform | Scenario::Carts => args.skus.max(4),
    };
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() % 1_000_000_000;
    let prefix = format!("lg{run_id}");
    let before = stock_up(address, args.token.as_deref(), &prefix, skus, args.stock).await?;
    let counters = Arc::new(Counters::default());
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut lag = histogram.clone();
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
        let (latencies, late) = result.context("a connection task")??;
        histogram.add(latencies).context("merging latencies")?;
        lag.add(late).context("merging send lag")?;
    }
    let after = read_units(address, args.token.as_deref(), &prefix, skus).await?;
    report(&args, &counters, (&histogram, &lag), elapsed, before, after)
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

/// Sets every SKU's stock; returns the total units on hand.
async fn stock_up(
    address: std::net::SocketAddr,
    token: Option<&str>,
    prefix: &str,
    skus: u64,
    stock: u64,
) -> anyhow::Result<u64> {
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
    Ok(skus * stock)
}

/// (units on hand, units reserved) over every SKU, from the server.
async fn read_units(
    address: std::net::SocketAddr,
    token: Option<&str>,
    prefix: &str,
    skus: u64,
) -> anyhow::Result<(u64, u64)> {
    let mut connection = Connection::open(address, token).await?;
    let (mut on_hand, mut reserved) = (0, 0);
    for chunk in (0..skus).collect::<Vec<_>>().chunks(1_000) {
        let ops: Vec<Value> = chunk.iter().map(|&i| json!({"op": "get_sku", "sku": sku_name(prefix, i)})).collect();
        let answer = connection.json(Method::POST, "/v1/batch", &json!({ "ops": ops })).await?.json()?;
        for result in answer["results"].as_array().context("batch results")? {
            on_hand += result["body"]["on_hand"].as_u64().context("on_hand")?;
            reserved += result["body"]["reserved"].as_u64().context("reserved")?;
        }
    }
    Ok((on_hand, reserved))
}

struct Worker {
    args: LoadgenArgs,
    address: std::net::SocketAddr,
    prefix: String,
    sku_prefix: String,
    skus: u64,
    counters: Arc<Counters>,
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

    /// Runs until the deadline; returns (request latencies, send lag).
    async fn run(mut self, deadline: Instant) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
        let mut connection = Connection::open(self.address, self.args.token.as_deref()).await?;
        let mut latencies = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        // Open-loop pacing: each connection's share of --rate, in holds.
        let interval = (self.args.rate > 0).then(|| {
            Duration::from_secs_f64(self.args.batch as f64 * self.args.connections as f64 / self.args.rate as f64)
        });
        let mut intended = Instant::now() + interval.map_or(Duration::ZERO, |interval| interval.mul_f64(self.phase));
        let mut lag = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        let mut n = 0u64;
        while Instant::now() < deadline {
            if let Some(interval) = interval {
                intended += interval;
                if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
            } else {
                intended = Instant::now();
            }
            let carts: Vec<Cart> = (0..self.args.batch)
                .map(|_| {
                    n += 1;
                    let lines = self.cart();
                    Cart { number: n, units: lines.iter().map(|(_, qty)| qty).sum(), lines }
                })
                .collect();
            if interval.is_some() {
                lag.saturating_record(intended.elapsed().as_micros().max(1) as u64);
            }
            let held = self.reserve(&mut connection, &carts, &mut latencies).await?;
            self.finish(&mut connection, held, &mut latencies).await?;
        }
        Ok((latencies, lag))
    }

    /// `{"op":"reserve",` (in a batch) `"id":...,"lines":[...]}`, written
    /// directly: ids and SKU names are ours, plain ASCII with nothing to escape.
    fn write_reserve(&self, body: &mut String, cart: &Cart, in_batch: bool) {
        body.push_str(if in_batch { r#"{"op":"reserve","id":""# } else { r#"{"id":""# });
        let _ = write!(body, r#"{}-{}","lines":["#, self.prefix, cart.number);
        for (i, (sku, qty)) in cart.lines.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(body, r#"{comma}{{"sku":"{}","qty":{qty}}}"#, sku_name(&self.sku_prefix, *sku));
        }
        body.push_str("]}");
    }

    /// Reserves the carts; returns the held ones.
    async fn reserve<'c>(
        &mut self,
        connection: &mut Connection,
        carts: &'c [Cart],
        latencies: &mut Histogram<u64>,
    ) -> anyhow::Result<Vec<&'c Cart>> {
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
        let answer = connection.send(Method::POST, path, Some(Bytes::from(body))).await?;
        let statuses =
            if single { vec![answer.status.as_u16()] } else { batch_statuses(answer, carts.len(), "reserve")? };
        latencies.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut held = Vec::new();
        for (cart, status) in carts.iter().zip(statuses) {
            match StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR) {
                StatusCode::CREATED => {
                    self.counters.holds.fetch_add(1, Ordering::Relaxed);
                    held.push(cart);
                }
                StatusCode::CONFLICT => drop(self.counters.refused.fetch_add(1, Ordering::Relaxed)),
                StatusCode::SERVICE_UNAVAILABLE => drop(self.counters.busy.fetch_add(1, Ordering::Relaxed)),
                _ => drop(self.counters.errors.fetch_add(1, Ordering::Relaxed)),
            }
        }
        Ok(held)
    }

    /// Commits `--commit-percent` of the holds and releases the rest.
    async fn finish(
        &mut self,
        connection: &mut Connection,
        held: Vec<&Cart>,
        latencies: &mut Histogram<u64>,
    ) -> anyhow::Result<()> {
        if held.is_empty() || self.args.hold_only {
            return Ok(());
        }
        let decisions: Vec<(&Cart, bool)> =
            held.into_iter().map(|cart| (cart, self.next(100) < self.args.commit_percent)).collect();
        let verb = |commit: bool| if commit { "commit" } else { "release" };
        let started = Instant::now();
        let statuses: Vec<u16> = if self.args.batch == 1 {
            let (cart, commit) = decisions[0];
            let path = format!("/v1/reservations/{}-{}/{}", self.prefix, cart.number, verb(commit));
            vec![connection.send(Method::POST, &path, Some(Bytes::from_static(b"{}"))).await?.status.as_u16()]
        } else {
            let mut body = String::with_capacity(64 * decisions.len());
            body.push_str(r#"{"ops":["#);
            for (i, (cart, commit)) in decisions.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                let _ = write!(body, r#"{comma}{{"op":"{}","id":"{}-{}"}}"#, verb(*commit), self.prefix, cart.number);
            }
            body.push_str("]}");
            let answer = connection.send(Method::POST, "/v1/batch", Some(Bytes::from(body))).await?;
            batch_statuses(answer, decisions.len(), "commit/release")?
        };
        latencies.saturating_record(started.elapsed().as_micros().max(1) as u64);
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        for ((cart, commit), status) in decisions.iter().zip(statuses) {
            match status {
                200 if *commit => drop(self.counters.committed_units.fetch_add(cart.units, Ordering::Relaxed)),
                200 => {}
                _ => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if *commit {
                        self.counters.uncertain_commit_units.fetch_add(cart.units, Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(())
    }
}

/// One cart: its number (the id is `PREFIX-NUMBER`), lines and total units.
struct Cart {
    number: u64,
    lines: Vec<(u64, u64)>,
    units: u64,
}

/// The per-op statuses of a `/v1/batch` answer of `ops` ops, read without
/// building a JSON tree (the load generator must cost the machine little).
/// A 503 for the whole batch (busy, timed out) is a 503 for each op, as a
/// single request's would be.
fn batch_statuses(answer: Answer, ops: usize, what: &str) -> anyhow::Result<Vec<u16>> {
    #[derive(serde::Deserialize)]
    struct Results {
        results: Vec<OpStatus>,
    }
    #[derive(serde::Deserialize)]
    struct OpStatus {
        status: u16,
    }
    if answer.status == StatusCode::SERVICE_UNAVAILABLE {
        return Ok(vec![answer.status.as_u16(); ops]);
    }
    if answer.status != StatusCode::OK {
        bail!("batch {what}: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    let results: Results = serde_json::from_slice(&answer.body).context("batch results")?;
    Ok(results.results.into_iter().map(|result| result.status).collect())
}

fn report(
    args: &LoadgenArgs,
    counters: &Counters,
    (latencies, lag): (&Histogram<u64>, &Histogram<u64>),
    elapsed: Duration,
    units_before: u64,
    (on_hand, reserved): (u64, u64),
) -> anyhow::Result<()> {
    let seconds = elapsed.as_secs_f64();
    let holds = counters.holds.load(Ordering::Relaxed);
    let committed = counters.committed_units.load(Ordering::Relaxed);
    let sold = units_before.saturating_sub(on_hand);
    // Every acknowledged commit sold its units, and nothing else did except
    // commits whose answer was an error (applied or not: unknown). Failed
    // reserves and releases cannot sell a unit, so they do not relax this.
    let uncertain = counters.uncertain_commit_units.load(Ordering::Relaxed);
    let oversell_ok =
        on_hand <= units_before && on_hand >= reserved && (committed..=committed + uncertain).contains(&sold);
    let summary = json!({
        "scenario": format!("{:?}", args.scenario),
        "connections": args.connections,
        "batch": args.batch,
        "rate_target": args.rate,
        "hold_only": args.hold_only,
        "seconds": seconds,
        "holds": holds,
        "holds_per_second": holds as f64 / seconds,
        "requests": counters.requests.load(Ordering::Relaxed),
        "requests_per_second": counters.requests.load(Ordering::Relaxed) as f64 / seconds,
        "refused": counters.refused.load(Ordering::Relaxed),
        "busy": counters.busy.load(Ordering::Relaxed),
        "errors": counters.errors.load(Ordering::Relaxed),
        "latency_us": {
            "p50": latencies.value_at_quantile(0.50), "p90": latencies.value_at_quantile(0.90),
            "p99": latencies.value_at_quantile(0.99), "p999": latencies.value_at_quantile(0.999), "max": latencies.max(),
        },
        "send_lag_us": {"p50": lag.value_at_quantile(0.50), "p99": lag.value_at_quantile(0.99), "max": lag.max()},
        "units_sold": sold,
        "units_committed": committed,
        "units_of_failed_commits": uncertain,
        "units_reserved": reserved,
        "oversell_check": if oversell_ok { "passed" } else { "FAILED" },
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{:?}: {holds} holds in {seconds:.1} s = {:.0} holds/s over {} connections (batch {}); {:.0} requests/s",
            args.scenario,
            holds as f64 / seconds,
            args.connections,
            args.batch,
            summary["requests_per_second"].as_f64().unwrap_or(0.0)
        );
        println!(
            "request latency us: p50 {} p90 {} p99 {} p99.9 {} max {}",
            latencies.value_at_quantile(0.5),
            latencies.value_at_quantile(0.9),
            latencies.value_at_quantile(0.99),
            latencies.value_at_quantile(0.999),
            latencies.max()
        );
        if args.rate > 0 {
            println!(
                "sends behind schedule us: p50 {} p99 {} max {}",
                lag.value_at_quantile(0.5),
                lag.value_at_quantile(0.99),
                lag.max()
            );
        }
        println!(
            "refused {} busy {} errors {}; units sold {sold}, commits acknowledged {committed}: oversell check {}",
            counters.refused.load(Ordering::Relaxed),
            counters.busy.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
            summary["oversell_check"].as_str().unwrap_or("")
        );
    }
    if !oversell_ok {
        bail!("OVERSELL CHECK FAILED: sold {sold} units, {committed} commits acknowledged");
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

    /// A batch refused whole (busy, timed out) counts as each op refused,
    /// as single requests would, instead of ending the run without a report.
    #[test]
    fn a_batch_refused_whole_is_a_503_for_each_op() {
        let busy = answer(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"busy","message":"full"}"#);
        assert_eq!(batch_statuses(busy, 3, "reserve").unwrap(), vec![503; 3]);
        let served = answer(StatusCode::OK, r#"{"results":[{"status":201,"body":{}},{"status":409,"body":{}}]}"#);
        assert_eq!(batch_statuses(served, 2, "reserve").unwrap(), vec![201, 409]);
        assert!(batch_statuses(answer(StatusCode::UNPROCESSABLE_ENTITY, "{}"), 1, "reserve").is_err());
    }
}
