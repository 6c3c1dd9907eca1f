//! Model-based test: random sequences of every request (set, adjust,
//! reserve, commit, release, reads, batches) over a few SKUs on three shards,
//! with clock advances and reused ids, are applied to the real engine and to
//! a deliberately simple single-threaded model. After every step the
//! outcomes must match, every shard must pass its invariant audit, and every
//! published count must equal the model's.
//!
//! A cart spanning shards expires everywhere when its home expires (the
//! home shard tells the others; parts never expire on their own), and is
//! remembered at least `CART_RETENTION_MS_MIN` after its deadline.
//!
//! `STOCKD_MODEL_CASES` raises the number of sequences (default 2000).

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use stockd_engine::limits::CART_RETENTION_MS_MIN;
use stockd_engine::{
    CartLine, Engine, EngineConfig, Hold, ManualClock, Outcome, Rejection, Reply, Request, ReservationId,
    ReservationState, ReservationView, ReserveRequest, Sku, SkuCounts,
};

const SKUS: usize = 6;
const IDS: usize = 6;
const SHARDS: usize = 3;
const RETENTION_MS: u64 = 6_000;
const TTL_MS_DEFAULT: u64 = 2_000;

#[derive(Debug, Clone)]
enum Op {
    SetStock { sku: usize, on_hand: u64, expected_version: Option<u64> },
    Adjust { sku: usize, delta: i64 },
    Reserve { id: usize, lines: Vec<(usize, u32)>, ttl_ms: Option<u64> },
    Commit { id: usize },
    Release { id: usize },
    GetSku { sku: usize },
    GetReservation { id: usize },
    Advance { ms: u64 },
    Batch(Vec<Op>),
}

fn sku(index: usize) -> Sku {
    Sku::new(&format!("sku-{index}")).unwrap()
}

fn id(index: usize) -> ReservationId {
    ReservationId::new(&format!("cart-{index}")).unwrap()
}

fn single_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SKUS, 0..12u64, prop::option::of(0..4u64))
            .prop_map(|(sku, on_hand, expected_version)| Op::SetStock { sku, on_hand, expected_version }),
        1 => (0..SKUS, -6..6i64).prop_map(|(sku, delta)| Op::Adjust { sku, delta }),
        5 => (0..IDS, prop::collection::btree_map(0..SKUS, 1..4u32, 1..4), prop::option::of(1..4u64))
            .prop_map(|(id, lines, ttl_s)| Op::Reserve {
                id,
                lines: lines.into_iter().collect(),
                ttl_ms: ttl_s.map(|s| s * 1_000),
            }),
        2 => (0..IDS).prop_map(|id| Op::Commit { id }),
        2 => (0..IDS).prop_map(|id| Op::Release { id }),
        1 => (0..SKUS).prop_map(|sku| Op::GetSku { sku }),
        1 => (0..IDS).prop_map(|id| Op::GetReservation { id }),
        2 => (0..2_500u64).prop_map(|ms| Op::Advance { ms }),
        // Past a cart's retention floor, so that carts are forgotten too.
        1 => Just(Op::Advance { ms: CART_RETENTION_MS_MIN }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![9 => single_op(), 1 => prop::collection::vec(single_op(), 1..8).prop_map(Op::Batch)]
}

fn request(op: &Op) -> Request {
    match *op {
        Op::SetStock { sku: s, on_hand, expected_version } => {
            Request::SetStock { sku: sku(s), on_hand, expected_version }
        }
        Op::Adjust { sku: s, delta } => Request::AdjustStock { sku: sku(s), delta },
        Op::Reserve { id: i, ref lines, ttl_ms } => Request::Reserve(ReserveRequest {
            id: id(i),
            lines: lines.iter().map(|&(s, qty)| CartLine { sku: sku(s), qty }).collect(),
            ttl_ms,
        }),
        Op::Commit { id: i } => Request::Commit { id: id(i) },
        Op::Release { id: i } => Request::Release { id: id(i) },
        Op::GetSku { sku: s } => Request::GetSku { sku: sku(s) },
        Op::GetReservation { id: i } => Request::GetReservation { id: id(i) },
        Op::Advance { .. } | Op::Batch(_) => unreachable!("not a request"),
    }
}

/// What the model accepts as the engine's outcome. A refused cart may name
/// any one of its failing lines.
#[derive(Debug)]
enum Expected {
    Exactly(Outcome),
    OneOf(Vec<Rejection>),
}

struct ModelLine {
    sku: usize,
    qty: u32,
}

struct ModelReservation {
    lines: Vec<ModelLine>,
    /// The TTL as the request gave it (part of the body).
    ttl_ms: Option<u64>,
    expires_at_ms: u64,
    /// How long it is remembered after its deadline.
    retention_ms: u64,
    state: ReservationState,
}

struct Model {
    now_ms: u64,
    skus: BTreeMap<usize, SkuCounts>,
    reservations: BTreeMap<usize, ModelReservation>,
    /// The engine's routing: the home shard of each id, the shard of each
    /// SKU (a cart with a line away from home is remembered longer).
    home_of_id: Vec<usize>,
    shard_of_sku: Vec<usize>,
}

impl Model {
    fn tick(&mut self) {
        let now_ms = self.now_ms;
        for reservation in self.reservations.values_mut() {
            if reservation.state == ReservationState::Held && reservation.expires_at_ms <= now_ms {
                reservation.state = ReservationState::Expired;
                for line in &reservation.lines {
                    self.skus.get_mut(&line.sku).unwrap().reserved -= u64::from(line.qty);
                }
            }
        }
        self.reservations.retain(|_, reservation| {
            reservation.state == ReservationState::Held || reservation.expires_at_ms + reservation.retention_ms > now_ms
        });
    }

    fn apply(&mut self, op: &Op) -> Expected {
        use Expected::Exactly;
        match *op {
            Op::SetStock { sku: s, on_hand, expected_version } => {
                let current = self.skus.get(&s).copied().unwrap_or_default();
                if let Some(expected) = expected_version.filter(|&expected| expected != current.version) {
                    return Exactly(Err(Rejection::VersionMismatch { expected, current: current.version }));
                }
                if on_hand < current.reserved {
                    return Exactly(Err(Rejection::BelowReserved { sku: sku(s), reserved: current.reserved }));
                }
                let counts = SkuCounts { on_hand, reserved: current.reserved, version: current.version + 1 };
                self.skus.insert(s, counts);
                Exactly(Ok(Reply::Sku(counts)))
            }
            Op::Adjust { sku: s, delta } => {
                let Some(counts) = self.skus.get_mut(&s) else {
                    return Exactly(Err(Rejection::UnknownSku { sku: sku(s) }));
                };
                let on_hand = counts.on_hand as i64 + delta;
                if on_hand < counts.reserved as i64 {
                    return Exactly(Err(Rejection::BelowReserved { sku: sku(s), reserved: counts.reserved }));
                }
                counts.on_hand = on_hand as u64;
                counts.version += 1;
                Exactly(Ok(Reply::Sku(*counts)))
            }
            Op::Reserve { id: i, ref lines, ttl_ms } => self.reserve(i, lines, ttl_ms),
            Op::Commit { id: i } => Exactly(match self.reservations.get_mut(&i) {
                None => Err(Rejection::UnknownReservation),
                Some(reservation) => match reservation.state {
                    ReservationState::Held => {
                        for line in &reservation.lines {
                            let counts = self.skus.get_mut(&line.sku).unwrap();
                            counts.on_hand -= u64::from(line.qty);
                            counts.reserved -= u64::from(line.qty);
                            counts.version += 1;
                        }
                        reservation.state = ReservationState::Committed;
                        Ok(Reply::Committed)
                    }
                    ReservationState::Committed => Ok(Reply::Committed),
                    ReservationState::Released => Err(Rejection::ReservationReleased),
                    ReservationState::Expired => Err(Rejection::ReservationExpired),
                },
            }),
            Op::Release { id: i } => Exactly(match self.reservations.get_mut(&i) {
                None => Err(Rejection::UnknownReservation),
                Some(reservation) => match reservation.state {
                    ReservationState::Held => {
                        for line in &reservation.lines {
                            self.skus.get_mut(&line.sku).unwrap().reserved -= u64::from(line.qty);
                        }
                        reservation.state = ReservationState::Released;
                        Ok(Reply::Released)
                    }
                    ReservationState::Released => Ok(Reply::Released),
                    ReservationState::Committed => Err(Rejection::ReservationCommitted),
                    ReservationState::Expired => Err(Rejection::ReservationExpired),
                },
            }),
            Op::GetSku { sku: s } => Exactly(match self.skus.get(&s) {
                Some(&counts) => Ok(Reply::Sku(counts)),
                None => Err(Rejection::UnknownSku { sku: sku(s) }),
            }),
            Op::GetReservation { id: i } => Exactly(match self.reservations.get(&i) {
                None => Err(Rejection::UnknownReservation),
                Some(reservation) => Ok(Reply::Reservation(ReservationView {
                    id: id(i),
                    state: reservation.state,
                    expires_at_ms: reservation.expires_at_ms,
                    lines: reservation
                        .lines
                        .iter()
                        .map(|line| CartLine { sku: sku(line.sku), qty: line.qty })
                        .collect(),
                })),
            }),
            Op::Advance { .. } | Op::Batch(_) => unreachable!("handled by the runner"),
        }
    }

    fn reserve(&mut self, i: usize, lines: &[(usize, u32)], ttl_ms: Option<u64>) -> Expected {
        if let Some(existing) = self.reservations.get(&i) {
            let same_lines = existing.lines.iter().map(|line| (line.sku, line.qty)).eq(lines.iter().copied());
            let same_body = same_lines && existing.ttl_ms == ttl_ms;
            return Expected::Exactly(if same_body {
                Ok(Reply::Held(Hold { expires_at_ms: existing.expires_at_ms, replayed: true }))
            } else {
                Err(Rejection::IdempotencyKeyReused)
            });
        }
        let failures: Vec<Rejection> = lines
            .iter()
            .filter_map(|&(s, qty)| match self.skus.get(&s) {
                None => Some(Rejection::UnknownSku { sku: sku(s) }),
                Some(counts) if counts.available() < u64::from(qty) => {
                    Some(Rejection::InsufficientStock { sku: sku(s), requested: qty, available: counts.available() })
                }
                Some(_) => None,
            })
            .collect();
        if !failures.is_empty() {
            return Expected::OneOf(failures);
        }
        let expires_at_ms = self.now_ms + ttl_ms.unwrap_or(TTL_MS_DEFAULT);
        let lines: Vec<ModelLine> = lines
            .iter()
            .map(|&(s, qty)| {
                self.skus.get_mut(&s).unwrap().reserved += u64::from(qty);
                ModelLine { sku: s, qty }
            })
            .collect();
        let spans_shards = lines.iter().any(|line| self.shard_of_sku[line.sku] != self.home_of_id[i]);
        let retention_ms = if spans_shards { RETENTION_MS.max(CART_RETENTION_MS_MIN) } else { RETENTION_MS };
        let reservation =
            ModelReservation { lines, ttl_ms, expires_at_ms, retention_ms, state: ReservationState::Held };
        self.reservations.insert(i, reservation);
        Expected::Exactly(Ok(Reply::Held(Hold { expires_at_ms, replayed: false })))
    }

    /// SKUs and ids an op reads or changes, to keep a batch's ops independent.
    fn footprint(&self, op: &Op) -> (Vec<usize>, Option<usize>) {
        match *op {
            Op::SetStock { sku, .. } | Op::Adjust { sku, .. } | Op::GetSku { sku } => (vec![sku], None),
            Op::Reserve { id, ref lines, .. } => {
                let mut skus: Vec<usize> = lines.iter().map(|&(sku, _)| sku).collect();
                skus.extend(self.reservations.get(&id).into_iter().flat_map(|r| r.lines.iter().map(|l| l.sku)));
                (skus, Some(id))
            }
            Op::Commit { id } | Op::Release { id } | Op::GetReservation { id } => {
                let skus = self.reservations.get(&id).into_iter().flat_map(|r| r.lines.iter().map(|l| l.sku));
                (skus.collect(), Some(id))
            }
            Op::Advance { .. } | Op::Batch(_) => (Vec::new(), None),
        }
    }
}

fn check(expected: Expected, actual: &Outcome, op: &Op) {
    match expected {
        Expected::Exactly(expected) => assert_eq!(actual, &expected, "after {op:?}"),
        Expected::OneOf(allowed) => match actual {
            Err(rejection) => assert!(allowed.contains(rejection), "after {op:?}: {rejection:?} not in {allowed:?}"),
            Ok(reply) => {
                panic!("after {op:?}: engine said {reply:?}, model refuses with one of {allowed:?}")
            }
        },
    }
}

fn run(ops: &[Op]) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = EngineConfig {
        shards: SHARDS,
        ttl_ms_default: TTL_MS_DEFAULT,
        retention_ms: RETENTION_MS,
        ..EngineConfig::default()
    };
    let engine = Engine::start(config, clock.clone());
    let mut model = Model {
        now_ms: 1_000_000,
        skus: BTreeMap::new(),
        reservations: BTreeMap::new(),
        home_of_id: (0..IDS).map(|i| usize::from(engine.home_of(&id(i)))).collect(),
        shard_of_sku: (0..SKUS).map(|s| engine.shard_of_sku(sku(s).as_str())).collect(),
    };
    for op in ops {
        match op {
            Op::Advance { ms } => {
                clock.advance_ms(*ms);
                model.now_ms += ms;
                model.tick();
            }
            Op::Batch(ops) => {
                let mut skus_seen = BTreeSet::new();
                let mut ids_seen = BTreeSet::new();
                let independent: Vec<&Op> = ops
                    .iter()
                    .filter(|op| !matches!(op, Op::Advance { .. }))
                    .filter(|op| {
                        let (skus, id) = model.footprint(op);
                        let clash =
                            skus.iter().any(|s| skus_seen.contains(s)) || id.is_some_and(|i| ids_seen.contains(&i));
                        skus_seen.extend(skus);
                        ids_seen.extend(id);
                        !clash
                    })
                    .collect();
                let outcomes = engine.submit_batch_blocking(independent.iter().map(|op| request(op)).collect());
                assert_eq!(outcomes.len(), independent.len());
                for (op, outcome) in independent.into_iter().zip(&outcomes) {
                    check(model.apply(op), outcome, op);
                }
            }
            op => {
                let outcome = engine.submit_blocking(request(op));
                check(model.apply(op), &outcome, op);
            }
        }
        // An audit makes every shard tick at the current time; the second
        // pass applies the `ExpirePart` messages the first pass's ticks sent.
        for _ in 0..2 {
            futures::executor::block_on(engine.audit()).expect("every shard passes its audit");
        }
        for s in 0..SKUS {
            let published = engine.read_view().get(sku(s).as_str());
            assert_eq!(published, model.skus.get(&s).copied(), "published counts of sku-{s} after {op:?}");
        }
    }
}

fn cases() -> u32 {
    std::env::var("STOCKD_MODEL_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops);
    }
}
