//! The same reservation id sent from many threads at once, for carts on one
//! shard and carts spanning shards: exactly one hold is applied and every
//! caller hears the same answer (one original, the rest marked replayed).
//! When the storm mixes two bodies, one body wins and the other is refused as
//! a reused key. (A cart in progress being the first attempt against a
//! same-id reserve on home alone is tested in `engine.rs`, which can put
//! both in one message to home.)

use std::sync::{Arc, Barrier};
use stockd_engine::{
    CartLine, Engine, EngineConfig, Outcome, Rejection, Reply, Request, ReservationId, ReserveRequest, Sku, SystemClock,
};

const THREADS: usize = 8;
const ROUNDS: usize = 100;
const SKUS: usize = 8;

fn cart(id: &str, skus: &[usize], qty: u32) -> Request {
    Request::Reserve(ReserveRequest {
        id: ReservationId::new(id).unwrap(),
        lines: skus.iter().map(|&s| CartLine { sku: Sku::new(&format!("sku-{s}")).unwrap(), qty }).collect(),
        ttl_ms: None,
    })
}

fn storm(engine: &Arc<Engine>, requests: Vec<Request>) -> Vec<Outcome> {
    let start = Arc::new(Barrier::new(requests.len()));
    let threads: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let (engine, start) = (Arc::clone(engine), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                engine.submit_blocking(request)
            })
        })
        .collect();
    threads.into_iter().map(|thread| thread.join().expect("storm thread panicked")).collect()
}

fn reserved_total(engine: &Engine) -> u64 {
    (0..SKUS).map(|s| engine.read_view().get(&format!("sku-{s}")).unwrap().reserved).sum()
}

fn start_engine() -> Arc<Engine> {
    let engine = Arc::new(Engine::start(EngineConfig { shards: 4, ..EngineConfig::default() }, Arc::new(SystemClock)));
    for s in 0..SKUS {
        let set = Request::SetStock {
            sku: Sku::new(&format!("sku-{s}")).unwrap(),
            on_hand: 1_000_000,
            expected_version: None,
        };
        engine.submit_blocking(set).unwrap();
    }
    engine
}

#[test]
fn same_id_same_body_from_many_threads_holds_once() {
    let engine = start_engine();
    for round in 0..ROUNDS {
        // Alternate single-line carts and carts over every SKU (all shards).
        let skus: Vec<usize> = if round % 2 == 0 { vec![round % SKUS] } else { (0..SKUS).collect() };
        let before = reserved_total(&engine);
        let id = format!("storm-{round}");
        let outcomes = storm(&engine, (0..THREADS).map(|_| cart(&id, &skus, 3)).collect());
        let holds: Vec<_> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(Reply::Held(hold)) => *hold,
                other => panic!("round {round}: {other:?}"),
            })
            .collect();
        assert_eq!(holds.iter().filter(|hold| !hold.replayed).count(), 1, "one original answer: {holds:?}");
        assert!(holds.iter().all(|hold| hold.expires_at_ms == holds[0].expires_at_ms), "{holds:?}");
        assert_eq!(reserved_total(&engine) - before, 3 * skus.len() as u64, "applied exactly once");
    }
    futures::executor::block_on(engine.audit()).expect("invariants hold");
}

#[test]
fn same_id_two_bodies_from_many_threads_one_body_wins() {
    let engine = start_engine();
    for round in 0..ROUNDS {
        let before = reserved_total(&engine);
        let id = format!("clash-{round}");
        let (body_a, body_b) = ([0, 3, 5], [1, 3, 6]);
        let requests = (0..THREADS).map(|t| if t % 2 == 0 { cart(&id, &body_a, 1) } else { cart(&id, &body_b, 1) });
        let outcomes = storm(&engine, requests.collect());
        let winners: Vec<usize> = (0..THREADS).filter(|&t| matches!(outcomes[t], Ok(Reply::Held(_)))).collect();
        assert!(!winners.is_empty(), "round {round}: {outcomes:?}");
        let winning_parity = winners[0] % 2;
        for (t, outcome) in outcomes.iter().enumerate() {
            if t % 2 == winning_parity {
                assert!(matches!(outcome, Ok(Reply::Held(_))), "round {round}: {outcome:?}");
            } else {
                assert_eq!(outcome, &Err(Rejection::IdempotencyKeyReused), "round {round}");
            }
        }
        assert_eq!(reserved_total(&engine) - before, 3, "one body of three lines is held, once");
    }
    futures::executor::block_on(engine.audit()).expect("invariants hold");
}
