//! A reservation retried after the engine restarted (clean shutdown or
//! crash) returns its original answer and applies nothing twice: the
//! dedupe record is recovered from the log, and from a snapshot.

use std::sync::Arc;
use stockd_engine::{
    CartLine, Engine, EngineConfig, Hold, ManualClock, Rejection, Reply, Request, ReservationId, ReservationState,
    ReserveRequest, Sku, StoreConfig,
};
use stockd_wal::MemStorage;

fn store(storage: &Arc<MemStorage>) -> StoreConfig {
    let segment_bytes_max = stockd_wal::SEGMENT_BYTES_MIN;
    StoreConfig { storage: storage.clone(), lock: false, segment_bytes_max, ..StoreConfig::new("/data") }
}

fn open(storage: &Arc<MemStorage>, clock: &Arc<ManualClock>) -> Engine {
    let config = EngineConfig { shards: 3, ..EngineConfig::default() };
    Engine::open(config, store(storage), clock.clone(), &Default::default()).expect("recovers").0
}

fn cart(id: &str, skus: &[&str]) -> Request {
    Request::Reserve(ReserveRequest {
        id: ReservationId::new(id).unwrap(),
        lines: skus.iter().map(|sku| CartLine { sku: Sku::new(sku).unwrap(), qty: 2 }).collect(),
        ttl_ms: Some(60_000),
    })
}

fn reserved(engine: &Engine, sku: &str) -> u64 {
    engine.read_view().get(sku).expect("the SKU exists").reserved
}

#[test]
fn a_retry_after_restart_replays_the_original_answer() {
    let storage = MemStorage::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let skus: Vec<String> = (0..9).map(|i| format!("sku-{i}")).collect();
    let all: Vec<&str> = skus.iter().map(String::as_str).collect();
    let (single, wide) = (cart("single", &all[..1]), cart("wide", &all));
    let (first_single, first_wide) = {
        let engine = open(&storage, &clock);
        for sku in &skus {
            let set = Request::SetStock { sku: Sku::new(sku).unwrap(), on_hand: 10, expected_version: None };
            engine.submit_blocking(set).unwrap();
        }
        let answers = (engine.submit_blocking(single.clone()), engine.submit_blocking(wide.clone()));
        engine.shutdown();
        answers
    };
    let Ok(Reply::Held(Hold { expires_at_ms, replayed: false })) = first_single else { panic!("{first_single:?}") };
    assert!(matches!(first_wide, Ok(Reply::Held(Hold { replayed: false, .. }))));

    // Clean restart: replayed from the log.
    let engine = open(&storage, &clock);
    assert_eq!(engine.submit_blocking(single.clone()), Ok(Reply::Held(Hold { expires_at_ms, replayed: true })));
    assert!(matches!(engine.submit_blocking(wide.clone()), Ok(Reply::Held(Hold { replayed: true, .. }))));
    assert_eq!(reserved(&engine, "sku-0"), 4, "two carts hold sku-0 once each");
    assert_eq!(reserved(&engine, "sku-8"), 2);
    let reused = cart("wide", &all[..2]);
    assert_eq!(engine.submit_blocking(reused), Err(Rejection::IdempotencyKeyReused));
    futures::executor::block_on(engine.snapshot()).expect("snapshots are written");
    assert_eq!(
        engine.submit_blocking(Request::Commit { id: ReservationId::new("wide").unwrap() }),
        Ok(Reply::Committed)
    );
    drop(engine);

    // Crash (only durable bytes survive) after a snapshot: snapshot + log.
    storage.crash();
    let engine = open(&storage, &clock);
    // The acknowledged commit survived the crash (before any retry could
    // apply it again).
    let wide_id = ReservationId::new("wide").unwrap();
    let Ok(Reply::Reservation(view)) = engine.submit_blocking(Request::GetReservation { id: wide_id }) else {
        panic!("the wide cart is remembered")
    };
    assert_eq!(view.state, ReservationState::Committed);
    assert_eq!(engine.read_view().get("sku-8").unwrap().on_hand, 8, "sold before the crash");
    assert!(matches!(engine.submit_blocking(wide), Ok(Reply::Held(Hold { replayed: true, .. }))));
    assert_eq!(
        engine.submit_blocking(Request::Commit { id: ReservationId::new("wide").unwrap() }),
        Ok(Reply::Committed)
    );
    assert_eq!(reserved(&engine, "sku-0"), 2, "only the single cart still holds sku-0");
    assert_eq!(engine.read_view().get("sku-8").unwrap().on_hand, 8, "the wide cart sold once");
    futures::executor::block_on(engine.audit()).expect("invariants hold");
}
