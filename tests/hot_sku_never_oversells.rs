//! Many threads race for one hot SKU, one-at-a-time and in batches: exactly
//! `STOCK` holds succeed, and a reader polling the published view never sees
//! `reserved > on_hand` or `reserved` going backwards while nothing releases.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use stockd_engine::{
    CartLine, Engine, EngineConfig, Rejection, Reply, Request, ReservationId, ReserveRequest, Sku, SystemClock,
};

const STOCK: u64 = 10_000;
const THREADS: usize = 8;
const ATTEMPTS_PER_THREAD: usize = 5_000;
const BATCH_LEN: usize = 100;

fn reserve(sku: &Sku, thread: usize, attempt: usize) -> Request {
    Request::Reserve(ReserveRequest {
        id: ReservationId::new(&format!("t{thread}-a{attempt}")).unwrap(),
        lines: vec![CartLine { sku: sku.clone(), qty: 1 }],
        ttl_ms: None,
    })
}

#[test]
fn hot_sku_holds_exactly_the_stock_under_contention() {
    for shards in [1, 4] {
        let engine = Arc::new(Engine::start(EngineConfig { shards, ..EngineConfig::default() }, Arc::new(SystemClock)));
        let sku = Sku::new("hot-sneaker").unwrap();
        let set = Request::SetStock { sku: sku.clone(), on_hand: STOCK, expected_version: None };
        engine.submit_blocking(set).expect("stock is set");

        let holds = Arc::new(AtomicU64::new(0));
        let workers_done = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(THREADS + 1));
        let reader = {
            let (engine, done, sku) = (Arc::clone(&engine), Arc::clone(&workers_done), sku.clone());
            std::thread::spawn(move || {
                let mut last_reserved = 0;
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    let counts = engine.read_view().get(sku.as_str()).expect("the SKU is published");
                    assert!(counts.reserved <= counts.on_hand, "published {counts:?}");
                    assert_eq!(counts.on_hand, STOCK, "nothing is committed in this test");
                    assert!(counts.reserved >= last_reserved, "reserved went backwards: {counts:?}");
                    last_reserved = counts.reserved;
                    reads += 1;
                }
                reads
            })
        };
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (engine, holds, start, sku) =
                    (Arc::clone(&engine), Arc::clone(&holds), Arc::clone(&start), sku.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut attempt = 0;
                    while attempt < ATTEMPTS_PER_THREAD {
                        // Even threads submit one at a time, odd ones in batches.
                        let requests: Vec<Request> = if thread % 2 == 0 {
                            vec![reserve(&sku, thread, attempt)]
                        } else {
                            (attempt..attempt + BATCH_LEN).map(|a| reserve(&sku, thread, a)).collect()
                        };
                        let sent = requests.len();
                        for outcome in engine.submit_batch_blocking(requests) {
                            match outcome {
                                Ok(Reply::Held(hold)) => {
                                    assert!(!hold.replayed, "every id is fresh");
                                    holds.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(Rejection::InsufficientStock { available: 0, .. }) => {}
                                // A full queue is an explicit refusal; these ids are never retried.
                                Err(Rejection::Busy) => {}
                                other => panic!("unexpected outcome {other:?}"),
                            }
                        }
                        attempt += sent;
                    }
                })
            })
            .collect();
        start.wait();
        for worker in workers {
            worker.join().expect("worker panicked");
        }
        workers_done.store(true, Ordering::Release);
        let reads = reader.join().expect("reader panicked");
        assert!(reads > 0);

        assert_eq!(holds.load(Ordering::Relaxed), STOCK, "exactly the stock is held ({shards} shards)");
        let counts = engine.read_view().get(sku.as_str()).unwrap();
        assert_eq!((counts.on_hand, counts.reserved), (STOCK, STOCK));
        futures::executor::block_on(engine.audit()).expect("invariants hold");
    }
}
