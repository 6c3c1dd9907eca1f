//! Carts spanning shards under concurrency, with scarce stock so that many
//! are refused: a refused cart leaves no hold anywhere, a held cart is held
//! whole, commits sell every line, and at the end every unit is accounted
//! for: on_hand = initial - sold, and nothing stays reserved once every
//! remaining hold is released.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};
use stockd_engine::{
    CartLine, Engine, EngineConfig, Rejection, Reply, Request, ReservationId, ReservationState, ReserveRequest, Sku,
    SystemClock,
};

const SKUS: usize = 12;
const STOCK: u64 = 300;
const THREADS: usize = 8;
const CARTS_PER_THREAD: usize = 400;

fn sku(s: usize) -> Sku {
    Sku::new(&format!("sku-{s}")).unwrap()
}

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn cross_shard_carts_are_all_or_nothing_and_conserve_units() {
    let engine = Arc::new(Engine::start(EngineConfig { shards: 4, ..EngineConfig::default() }, Arc::new(SystemClock)));
    for s in 0..SKUS {
        engine.submit_blocking(Request::SetStock { sku: sku(s), on_hand: STOCK, expected_version: None }).unwrap();
    }
    let sold: Arc<Mutex<BTreeMap<usize, u64>>> = Arc::default();
    let still_held: Arc<Mutex<Vec<ReservationId>>> = Arc::default();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (engine, sold, still_held, start) =
                (Arc::clone(&engine), Arc::clone(&sold), Arc::clone(&still_held), Arc::clone(&start));
            std::thread::spawn(move || {
                let mut rng = Lcg(thread as u64 + 1);
                start.wait();
                for cart in 0..CARTS_PER_THREAD {
                    let id = ReservationId::new(&format!("t{thread}-c{cart}")).unwrap();
                    let mut lines: BTreeMap<usize, u32> = BTreeMap::new();
                    for _ in 0..1 + rng.next(4) {
                        lines.insert(rng.next(SKUS as u64) as usize, 1 + rng.next(3) as u32);
                    }
                    let request = ReserveRequest {
                        id: id.clone(),
                        lines: lines.iter().map(|(&s, &qty)| CartLine { sku: sku(s), qty }).collect(),
                        ttl_ms: None,
                    };
                    match engine.submit_blocking(Request::Reserve(request)) {
                        Ok(Reply::Held(_)) => {
                            let view = engine.submit_blocking(Request::GetReservation { id: id.clone() });
                            let Ok(Reply::Reservation(view)) = view else { panic!("{view:?}") };
                            assert_eq!(view.state, ReservationState::Held);
                            assert_eq!(view.lines.len(), lines.len(), "a held cart is held whole: {view:?}");
                            match rng.next(3) {
                                0 => {
                                    assert_eq!(engine.submit_blocking(Request::Commit { id }), Ok(Reply::Committed));
                                    let mut sold = sold.lock().unwrap();
                                    for (&s, &qty) in &lines {
                                        *sold.entry(s).or_default() += u64::from(qty);
                                    }
                                }
                                1 => assert_eq!(engine.submit_blocking(Request::Release { id }), Ok(Reply::Released)),
                                _ => still_held.lock().unwrap().push(id),
                            }
                        }
                        Err(Rejection::InsufficientStock { .. }) => {
                            let after = engine.submit_blocking(Request::GetReservation { id });
                            assert_eq!(after, Err(Rejection::UnknownReservation), "a refused cart leaves nothing");
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("cart thread panicked");
    }
    futures::executor::block_on(engine.audit()).expect("invariants hold");
    for id in still_held.lock().unwrap().drain(..) {
        assert_eq!(engine.submit_blocking(Request::Release { id }), Ok(Reply::Released));
    }
    let sold = sold.lock().unwrap();
    assert!(sold.values().sum::<u64>() > 0, "some carts sold");
    for s in 0..SKUS {
        let counts = engine.read_view().get(sku(s).as_str()).unwrap();
        assert_eq!(counts.reserved, 0, "sku-{s}: a hold leaked: {counts:?}");
        assert_eq!(counts.on_hand, STOCK - sold.get(&s).copied().unwrap_or(0), "sku-{s}: units not conserved");
    }
}

/// A refused cross-shard cart has let go of every part it held on other
/// shards by the time the caller reads the refusal: the published counts
/// of every SKU then show exactly the holds of the carts still held.
#[test]
fn a_refused_cart_holds_nothing_anywhere_once_answered() {
    let engine = Engine::start(EngineConfig { shards: 4, ..EngineConfig::default() }, Arc::new(SystemClock));
    let scarce = |s: usize| Sku::new(&format!("scarce-{s}")).unwrap();
    for s in 0..SKUS {
        engine.submit_blocking(Request::SetStock { sku: sku(s), on_hand: STOCK, expected_version: None }).unwrap();
        engine.submit_blocking(Request::SetStock { sku: scarce(s), on_hand: 0, expected_version: None }).unwrap();
    }
    let mut held: BTreeMap<usize, u64> = BTreeMap::new();
    let mut rng = Lcg(7);
    let mut refused_across_shards = 0;
    for cart in 0..300 {
        let mut lines: BTreeMap<usize, u32> = BTreeMap::new();
        for _ in 0..2 + rng.next(3) {
            lines.insert(rng.next(SKUS as u64) as usize, 1);
        }
        let mut cart_lines: Vec<CartLine> = lines.keys().map(|&s| CartLine { sku: sku(s), qty: 1 }).collect();
        // Most carts also want a unit that does not exist.
        let refused = rng.next(4) != 0;
        if refused {
            cart_lines.push(CartLine { sku: scarce(rng.next(SKUS as u64) as usize), qty: 1 });
        }
        let shards: std::collections::BTreeSet<usize> =
            cart_lines.iter().map(|line| engine.shard_of_sku(line.sku.as_str())).collect();
        let id = ReservationId::new(&format!("cart-{cart}")).unwrap();
        let request = ReserveRequest { id, lines: cart_lines, ttl_ms: Some(3_600_000) };
        match engine.submit_blocking(Request::Reserve(request)) {
            Ok(Reply::Held(_)) if !refused => {
                for &s in lines.keys() {
                    *held.entry(s).or_default() += 1;
                }
            }
            Err(Rejection::InsufficientStock { .. }) if refused => {
                refused_across_shards += usize::from(shards.len() > 1)
            }
            other => panic!("cart {cart} (refused: {refused}): {other:?}"),
        }
        for s in 0..SKUS {
            let reserved = engine.read_view().get(sku(s).as_str()).unwrap().reserved;
            assert_eq!(reserved, held.get(&s).copied().unwrap_or(0), "after cart {cart}: sku-{s} holds a refused part");
        }
    }
    assert!(refused_across_shards > 100, "carts refused across shards: {refused_across_shards}");
}
