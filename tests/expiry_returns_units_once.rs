//! Holds expire on the injected clock and return their units exactly once,
//! including a mass expiry larger than one tick's bounded share and carts
//! spanning shards (whose parts expire when home does, never on their own);
//! commit and release after expiry are refused.

use std::sync::Arc;
use stockd_engine::{
    limits::TICK_EVENTS_MAX, CartLine, Command, Engine, EngineConfig, ManualClock, PartReply, Query, Rejection, Reply,
    Request, ReservationId, ReservePart, ReserveRequest, ShardConfig, ShardState, Sku, SkuCounts,
};

fn sku(s: usize) -> Sku {
    Sku::new(&format!("sku-{s}")).unwrap()
}

fn reserve(id: &str, skus: &[usize], ttl_ms: u64) -> Request {
    Request::Reserve(ReserveRequest {
        id: ReservationId::new(id).unwrap(),
        lines: skus.iter().map(|&s| CartLine { sku: sku(s), qty: 1 }).collect(),
        ttl_ms: Some(ttl_ms),
    })
}

fn counts(engine: &Engine, s: usize) -> SkuCounts {
    engine.read_view().get(sku(s).as_str()).unwrap()
}

fn start(clock: &Arc<ManualClock>, skus: usize, stock: u64) -> Engine {
    let config = EngineConfig { shards: 3, ..EngineConfig::default() };
    let engine = Engine::start(config, clock.clone());
    for s in 0..skus {
        engine.submit_blocking(Request::SetStock { sku: sku(s), on_hand: stock, expected_version: None }).unwrap();
    }
    engine
}

#[test]
fn expired_holds_return_units_once_and_refuse_commit_and_release() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let engine = start(&clock, 1, 10);
    for r in 0..4 {
        assert!(matches!(engine.submit_blocking(reserve(&format!("r{r}"), &[0], 1_000)), Ok(Reply::Held(_))));
    }
    assert_eq!(counts(&engine, 0).reserved, 4);
    clock.advance_ms(999);
    audit_twice(&engine);
    assert_eq!(counts(&engine, 0).reserved, 4, "not due one millisecond early");
    clock.advance_ms(1);
    audit_twice(&engine);
    assert_eq!(counts(&engine, 0), SkuCounts { on_hand: 10, reserved: 0, version: 1 });
    let id = |r: usize| ReservationId::new(&format!("r{r}")).unwrap();
    assert_eq!(engine.submit_blocking(Request::Commit { id: id(0) }), Err(Rejection::ReservationExpired));
    assert_eq!(engine.submit_blocking(Request::Release { id: id(1) }), Err(Rejection::ReservationExpired));
    // A retry of an expired hold replays the original answer and holds nothing new.
    assert!(matches!(engine.submit_blocking(reserve("r2", &[0], 1_000)), Ok(Reply::Held(hold)) if hold.replayed));
    clock.advance_ms(60_000);
    audit_twice(&engine);
    assert_eq!(counts(&engine, 0), SkuCounts { on_hand: 10, reserved: 0, version: 1 }, "returned exactly once");
}

#[test]
fn mass_expiry_beyond_one_tick_returns_every_unit() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let holds = 3 * TICK_EVENTS_MAX + 17;
    let engine = start(&clock, 1, holds as u64);
    let requests = (0..holds).map(|r| reserve(&format!("m{r}"), &[0], 1_000 + (r as u64 % 7) * 100)).collect();
    assert!(engine.submit_batch_blocking(requests).iter().all(|outcome| matches!(outcome, Ok(Reply::Held(_)))));
    assert_eq!(counts(&engine, 0).reserved, holds as u64);
    clock.advance_ms(2_000);
    // Each audit is one loop turn on every shard; a bounded number must do.
    for _ in 0..holds / TICK_EVENTS_MAX + 2 {
        audit_twice(&engine);
    }
    assert_eq!(counts(&engine, 0).reserved, 0);
    assert_eq!(counts(&engine, 0).on_hand, holds as u64);
}

fn audit_twice(engine: &Engine) {
    // The second pass applies the `ExpirePart` messages the first one sent.
    for _ in 0..2 {
        futures::executor::block_on(engine.audit()).unwrap();
    }
}

#[test]
fn cross_shard_cart_expires_everywhere_when_home_expires() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let engine = start(&clock, 12, 5);
    let cart: Vec<usize> = (0..12).collect();
    assert!(matches!(engine.submit_blocking(reserve("wide", &cart, 2_000)), Ok(Reply::Held(_))));
    let home = engine.home_of(&ReservationId::new("wide").unwrap()) as usize;
    assert!(cart.iter().any(|&s| engine.shard_of_sku(sku(s).as_str()) != home), "the cart spans shards");
    clock.advance_ms(1_999);
    audit_twice(&engine);
    assert!(cart.iter().all(|&s| counts(&engine, s).reserved == 1));
    clock.advance_ms(1);
    audit_twice(&engine);
    assert!(cart.iter().all(|&s| counts(&engine, s) == SkuCounts { on_hand: 5, reserved: 0, version: 1 }));
    let id = ReservationId::new("wide").unwrap();
    assert_eq!(engine.submit_blocking(Request::Commit { id: id.clone() }), Err(Rejection::ReservationExpired));
    assert_eq!(engine.submit_blocking(Request::Release { id }), Err(Rejection::ReservationExpired));
    clock.advance_ms(60_000);
    audit_twice(&engine);
    assert!(cart.iter().all(|&s| counts(&engine, s).reserved == 0), "returned exactly once");
}

/// A part away from home has no timer of its own: however late its shard's
/// clock runs, only home's `ExpirePart` (or a recovery that asks home)
/// returns its units. Otherwise a commit decided at home could meet a part
/// that had already expired: a cart partly sold and partly returned.
#[test]
fn away_part_waits_for_home_and_expires_when_told() {
    let mut state = ShardState::new(ShardConfig { shard: 1 });
    let mut batch = state.batch();
    let set = Command::SetStock { sku: sku(0), on_hand: 3, expected_version: None };
    batch.apply(&set, 0).unwrap();
    let id = ReservationId::new("away").unwrap();
    let part = ReservePart {
        id: id.clone(),
        fingerprint: 7,
        lines: vec![CartLine { sku: sku(0), qty: 2 }],
        expires_at_ms: 1_000,
        forget_at_ms: 61_000,
        home: 0,
        participants: 0b11,
    };
    assert!(matches!(batch.apply(&Command::Reserve(part), 0), Ok(PartReply::Held { expires_at_ms: 1_000, .. })));
    let reserved = |batch: &stockd_engine::Batch<'_>| match batch.query(&Query::GetSku { sku: sku(0) }) {
        Ok(PartReply::Sku(counts)) => counts.reserved,
        other => panic!("{other:?}"),
    };
    assert_eq!(batch.tick(1_000_000, TICK_EVENTS_MAX), None, "nothing fires on the part's own clock");
    assert_eq!(reserved(&batch), 2);
    batch.apply(&Command::ExpirePart { id }, 1_000_000).unwrap();
    assert_eq!(reserved(&batch), 0);
    batch.query(&Query::Audit).unwrap();
}

/// A commit or release that reaches home at or past the deadline, before
/// any tick expired the hold (ticks are bounded, so a mass expiry can lag),
/// finds the hold expired: refused, and the units come back once.
#[test]
fn a_decision_past_the_deadline_before_any_tick_finds_the_hold_expired() {
    for decision in [
        Command::Commit { id: ReservationId::new("late").unwrap() },
        Command::Release { id: ReservationId::new("late").unwrap() },
    ] {
        let mut state = ShardState::new(ShardConfig { shard: 0 });
        let mut batch = state.batch();
        batch.apply(&Command::SetStock { sku: sku(0), on_hand: 3, expected_version: None }, 0).unwrap();
        let part = ReservePart {
            id: ReservationId::new("late").unwrap(),
            fingerprint: 7,
            lines: vec![CartLine { sku: sku(0), qty: 2 }],
            expires_at_ms: 1_000,
            forget_at_ms: 61_000,
            home: 0,
            participants: 0b1,
        };
        assert!(matches!(batch.apply(&Command::Reserve(part), 0), Ok(PartReply::Held { .. })));
        let counts = |batch: &stockd_engine::Batch<'_>| match batch.query(&Query::GetSku { sku: sku(0) }) {
            Ok(PartReply::Sku(counts)) => (counts.on_hand, counts.reserved),
            other => panic!("{other:?}"),
        };
        assert_eq!(counts(&batch), (3, 2));
        assert_eq!(batch.apply(&decision, 1_000), Err(Rejection::ReservationExpired), "{decision:?}");
        assert_eq!(counts(&batch), (3, 0), "{decision:?}: the units came back, none sold");
        assert_eq!(batch.apply(&decision, 1_001), Err(Rejection::ReservationExpired), "{decision:?} again");
        assert_eq!(batch.tick(1_002, TICK_EVENTS_MAX), None, "{decision:?}: no timer returns them twice");
        assert_eq!(counts(&batch), (3, 0));
        batch.query(&Query::Audit).unwrap();
    }
}
