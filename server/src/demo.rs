//! `stockd demo`: an in-process flash sale. One hot SKU with little stock,
//! many buyers on several threads, some carts adding an accessory that
//! lives on another shard. Every buyer who gets a hold commits it. The demo
//! prints throughput, reserve latency percentiles, and the oversell check:
//! units sold must equal min(stock, buyers) and nothing may stay reserved.
//! It exits non-zero when the check fails.

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use stockd_engine::{
    CartLine, Engine, EngineConfig, Rejection, Reply, Request, ReservationId, ReserveRequest, Sku, SystemClock,
};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Units of the hot SKU on sale.
    #[arg(long, env = "STOCKD_DEMO_STOCK", default_value_t = 1_000)]
    stock: u64,
    /// Buyers, each wanting one unit.
    #[arg(long, env = "STOCKD_DEMO_BUYERS", default_value_t = 200_000)]
    buyers: u64,
    /// Buyer threads.
    #[arg(long, env = "STOCKD_DEMO_THREADS", default_value_t = 8)]
    threads: u64,
    /// Engine shards, 1..=64 (default: half the cores, at least 1).
    #[arg(long, env = "STOCKD_SHARDS")]
    shards: Option<usize>,
    /// Percentage of carts that add an accessory SKU (usually on another shard).
    #[arg(long, env = "STOCKD_DEMO_CART_PERCENT", default_value_t = 20)]
    cart_percent: u64,
}

const ACCESSORIES: u64 = 16;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.threads == 0 || args.buyers == 0 {
        bail!("--threads and --buyers must be at least 1");
    }
    let mut config = EngineConfig::default();
    if let Some(shards) = args.shards {
        if !(1..=stockd_engine::limits::SHARDS_MAX).contains(&shards) {
            bail!("--shards must be 1..={}", stockd_engine::limits::SHARDS_MAX);
        }
        config.shards = shards;
    }
    let engine = Arc::new(Engine::start(config, Arc::new(SystemClock)));
    let hot = Sku::new("flash-sale-sneaker").expect("a valid SKU literal");
    let accessories: Vec<Sku> =
        (0..ACCESSORIES).map(|i| Sku::new(&format!("laces-{i}")).expect("a valid SKU literal")).collect();
    stock_up(&engine, &hot, args.stock, &accessories, args.buyers)?;
    println!(
        "flash sale: {} units of {hot}, {} buyers on {} threads, {} shards, {}% carts with an accessory",
        args.stock,
        args.buyers,
        args.threads,
        engine.config().shards,
        args.cart_percent
    );

    let progress = ProgressBar::new(args.buyers);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} buyers {per_sec} eta {eta}").expect("a valid template"),
    );
    let sold = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(args.threads as usize + 1));
    let workers: Vec<_> = (0..args.threads)
        .map(|thread| {
            let worker = Worker {
                engine: Arc::clone(&engine),
                hot: hot.clone(),
                accessories: accessories.clone(),
                sold: Arc::clone(&sold),
                progress: progress.clone(),
                cart_percent: args.cart_percent,
            };
            let start = Arc::clone(&start);
            let buyers: Vec<u64> = (thread..args.buyers).step_by(args.threads as usize).collect();
            std::thread::spawn(move || {
                start.wait();
                worker.buy(&buyers)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    for worker in workers {
        let histogram = worker.join().map_err(|_| anyhow::anyhow!("a buyer thread panicked"))??;
        latency_us.add(histogram).context("merging latency histograms")?;
    }
    let elapsed = began.elapsed();
    progress.finish_and_clear();
    report(&engine, &hot, &args, sold.load(Ordering::Relaxed), elapsed, &latency_us)
}

fn stock_up(engine: &Engine, hot: &Sku, stock: u64, accessories: &[Sku], buyers: u64) -> anyhow::Result<()> {
    let mut requests = vec![Request::SetStock { sku: hot.clone(), on_hand: stock, expected_version: None }];
    requests.extend(accessories.iter().map(|sku| Request::SetStock {
        sku: sku.clone(),
        on_hand: buyers,
        expected_version: None,
    }));
    for outcome in engine.submit_batch_blocking(requests) {
        outcome.context("setting the demo's stock")?;
    }
    Ok(())
}

struct Worker {
    engine: Arc<Engine>,
    hot: Sku,
    accessories: Vec<Sku>,
    sold: Arc<AtomicU64>,
    progress: ProgressBar,
    cart_percent: u64,
}

impl Worker {
    fn buy(&self, buyers: &[u64]) -> anyhow::Result<Histogram<u64>> {
        let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        for (done, &buyer) in buyers.iter().enumerate() {
            let id = ReservationId::new(&format!("buyer-{buyer}")).expect("a valid id literal");
            let mut lines = vec![CartLine { sku: self.hot.clone(), qty: 1 }];
            if buyer % 100 < self.cart_percent {
                lines.push(CartLine { sku: self.accessories[(buyer % ACCESSORIES) as usize].clone(), qty: 1 });
            }
            let request = Request::Reserve(ReserveRequest { id: id.clone(), lines, ttl_ms: None });
            let began = Instant::now();
            let outcome = self.engine.submit_blocking(request);
            latency_us.saturating_record(began.elapsed().as_micros().max(1) as u64);
            match outcome {
                Ok(Reply::Held(_)) => {
                    self.engine.submit_blocking(Request::Commit { id }).context("committing a hold")?;
                    self.sold.fetch_add(1, Ordering::Relaxed);
                }
                Err(Rejection::InsufficientStock { .. }) => {}
                Err(rejection) if rejection.is_transient() => {}
                Err(rejection) => bail!("buyer {buyer}: {rejection}"),
                Ok(other) => bail!("buyer {buyer}: unexpected {other:?}"),
            }
            if done % 256 == 255 {
                self.progress.inc(256);
            }
        }
        self.progress.inc(buyers.len() as u64 % 256);
        Ok(latency_us)
    }
}

fn report(
    engine: &Engine,
    hot: &Sku,
    args: &DemoArgs,
    sold: u64,
    elapsed: Duration,
    latency_us: &Histogram<u64>,
) -> anyhow::Result<()> {
    let rate = args.buyers as f64 / elapsed.as_secs_f64();
    println!(
        "reserve attempts: {} in {:.3} s = {:.0} /s (one at a time, blocking)",
        args.buyers,
        elapsed.as_secs_f64(),
        rate
    );
    println!(
        "reserve latency us: p50 {} p90 {} p99 {} p99.9 {} max {}",
        latency_us.value_at_quantile(0.50),
        latency_us.value_at_quantile(0.90),
        latency_us.value_at_quantile(0.99),
        latency_us.value_at_quantile(0.999),
        latency_us.max()
    );
    futures::executor::block_on(engine.audit()).context("the invariant audit")?;
    let counts = engine.read_view().get(hot.as_str()).context("the hot SKU vanished")?;
    let expected_sold = args.stock.min(args.buyers);
    println!(
        "sold {sold} (expected min(stock, buyers) = {expected_sold}); {hot} now on_hand {} reserved {} available {}",
        counts.on_hand,
        counts.reserved,
        counts.available()
    );
    if sold != expected_sold || counts.on_hand != args.stock - sold || counts.reserved != 0 {
        bail!("OVERSELL CHECK FAILED");
    }
    println!("oversell check: passed");
    Ok(())
}
