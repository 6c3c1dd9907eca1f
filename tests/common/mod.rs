//! The crash tests' shared workload and oracle. A shopper reports what it
//! is about to try (`TRY ...`) and what it was acknowledged (`ACK ...`) as
//! lines; `Knowledge` learns them; `verify` checks a recovered engine
//! against them. The crash loop carries the lines over a pipe from a child
//! process; the fault tests collect them in-process.

#![allow(dead_code)] // each test file uses part of this module

use std::collections::BTreeMap;
use stockd_engine::limits::BATCH_REQUESTS_MAX;
use stockd_engine::{
    CartLine, Engine, Rejection, Reply, Request, ReservationId, ReservationState, ReserveRequest, Sku,
};

pub const SKUS: usize = 9;
pub const STOCK: u64 = 1_000_000;
/// One SKU runs out, so some carts are refused.
pub const SCARCE_SKU: usize = 0;
pub const SCARCE_STOCK: u64 = 300;
pub const ADMIN_SKU: &str = "admin-counter";

pub fn sku(index: usize) -> Sku {
    Sku::new(&format!("sku-{index}")).unwrap()
}

/// A small deterministic generator (xorshift), so a failing seed replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Sets every SKU's initial stock (and the admin counter to 0).
pub fn stock_up(engine: &Engine) {
    let mut requests: Vec<Request> = (0..SKUS)
        .map(|s| Request::SetStock {
            sku: sku(s),
            on_hand: if s == SCARCE_SKU { SCARCE_STOCK } else { STOCK },
            expected_version: Some(0),
        })
        .collect();
    requests.push(Request::SetStock { sku: Sku::new(ADMIN_SKU).unwrap(), on_hand: 0, expected_version: Some(0) });
    for outcome in engine.submit_batch_blocking(requests) {
        outcome.expect("stock is set");
    }
}

/// What a shopper's attempt ended as, when it did not end normally.
pub enum Stopped {
    /// The engine answered `storage_failed` (outcome unknown).
    StorageFailed,
}

/// Reserves carts of 1-3 lines (often spanning shards) under ids
/// `{prefix}-{n}`, then commits half, releases a quarter, keeps the rest
/// held. Reports every try and acknowledgement through `report`.
pub fn shop(
    engine: &Engine,
    prefix: &str,
    rng: &mut Rng,
    ops: usize,
    report: &mut dyn FnMut(String),
) -> Result<(), Stopped> {
    for n in 0..ops {
        let id = format!("{prefix}-{n}");
        let mut lines = BTreeMap::new();
        for _ in 0..1 + rng.below(3) {
            lines.insert(rng.below(SKUS as u64) as usize, 1 + rng.below(3) as u32);
        }
        let text: Vec<String> = lines.iter().map(|(s, q)| format!("{s}:{q}")).collect();
        report(format!("TRY RESERVE {id} {}", text.join(",")));
        let request = ReserveRequest {
            id: ReservationId::new(&id).unwrap(),
            lines: lines.iter().map(|(&s, &qty)| CartLine { sku: sku(s), qty }).collect(),
            ttl_ms: Some(3_600_000),
        };
        match engine.submit_blocking(Request::Reserve(request)) {
            Ok(Reply::Held(_)) => report(format!("ACK HELD {id}")),
            Err(Rejection::InsufficientStock { .. } | Rejection::Busy) => {
                report(format!("ACK REFUSED {id}"));
                continue;
            }
            Err(Rejection::StorageFailed { .. }) => return Err(Stopped::StorageFailed),
            other => panic!("reserve {id}: {other:?}"),
        }
        let id = ReservationId::new(&id).unwrap();
        let (request, state, reply) = match rng.below(4) {
            0 | 1 => (Request::Commit { id: id.clone() }, ReservationState::Committed, Reply::Committed),
            2 => (Request::Release { id: id.clone() }, ReservationState::Released, Reply::Released),
            _ => continue,
        };
        report(format!("TRY {} {id}", state.as_str()));
        match engine.submit_blocking(request) {
            Ok(answer) if answer == reply => report(format!("ACK {} {id}", state.as_str())),
            Err(Rejection::StorageFailed { .. }) => return Err(Stopped::StorageFailed),
            other => panic!("{} {id}: {other:?}", state.as_str()),
        }
    }
    Ok(())
}

/// Like `shop`, `batch` carts at a time through `submit_batch` (one batch
/// spans several pages of the log), then their commits and releases as one
/// more batch.
pub fn shop_batched(
    engine: &Engine,
    prefix: &str,
    rng: &mut Rng,
    rounds: usize,
    batch: usize,
    report: &mut dyn FnMut(String),
) -> Result<(), Stopped> {
    for round in 0..rounds {
        let mut carts = Vec::with_capacity(batch);
        for n in 0..batch {
            let id = format!("{prefix}-{round}-{n}");
            let mut lines = BTreeMap::new();
            for _ in 0..1 + rng.below(3) {
                lines.insert(rng.below(SKUS as u64) as usize, 1 + rng.below(3) as u32);
            }
            let text: Vec<String> = lines.iter().map(|(s, q)| format!("{s}:{q}")).collect();
            report(format!("TRY RESERVE {id} {}", text.join(",")));
            carts.push((id, lines));
        }
        let requests = carts
            .iter()
            .map(|(id, lines)| {
                let lines = lines.iter().map(|(&s, &qty)| CartLine { sku: sku(s), qty }).collect();
                Request::Reserve(ReserveRequest { id: ReservationId::new(id).unwrap(), lines, ttl_ms: Some(3_600_000) })
            })
            .collect();
        let mut decisions = Vec::new();
        for ((id, _), outcome) in carts.iter().zip(engine.submit_batch_blocking(requests)) {
            match outcome {
                Ok(Reply::Held(_)) => {
                    report(format!("ACK HELD {id}"));
                    match rng.below(3) {
                        0 => decisions.push((id.clone(), ReservationState::Committed)),
                        1 => decisions.push((id.clone(), ReservationState::Released)),
                        _ => {}
                    }
                }
                Err(Rejection::InsufficientStock { .. } | Rejection::Busy) => report(format!("ACK REFUSED {id}")),
                Err(Rejection::StorageFailed { .. }) => return Err(Stopped::StorageFailed),
                other => panic!("reserve {id}: {other:?}"),
            }
        }
        for (id, state) in &decisions {
            report(format!("TRY {} {id}", state.as_str()));
        }
        let requests = decisions
            .iter()
            .map(|(id, state)| {
                let id = ReservationId::new(id).unwrap();
                if *state == ReservationState::Committed {
                    Request::Commit { id }
                } else {
                    Request::Release { id }
                }
            })
            .collect();
        for ((id, state), outcome) in decisions.iter().zip(engine.submit_batch_blocking(requests)) {
            match outcome {
                Ok(Reply::Committed | Reply::Released) => report(format!("ACK {} {id}", state.as_str())),
                Err(Rejection::StorageFailed { .. }) => return Err(Stopped::StorageFailed),
                other => panic!("{} {id}: {other:?}", state.as_str()),
            }
        }
    }
    Ok(())
}

/// Adds 1 to the admin counter `ops` times, reporting each acknowledged count.
pub fn adjust(engine: &Engine, ops: usize, report: &mut dyn FnMut(String)) -> Result<(), Stopped> {
    for _ in 0..ops {
        report("TRY ADJUST".into());
        let request = Request::AdjustStock { sku: Sku::new(ADMIN_SKU).unwrap(), delta: 1 };
        match engine.submit_blocking(request) {
            Ok(Reply::Sku(counts)) => report(format!("ACK ADJUSTED {}", counts.on_hand)),
            Err(Rejection::StorageFailed { .. }) => return Err(Stopped::StorageFailed),
            other => panic!("adjust: {other:?}"),
        }
    }
    Ok(())
}

/// What the oracle knows of one reservation id.
#[derive(Debug, Default)]
pub struct Known {
    pub lines: BTreeMap<usize, u32>,
    pub held: bool,
    pub refused: bool,
    pub tried: Option<ReservationState>,
    pub acknowledged: Option<ReservationState>,
}

#[derive(Default)]
pub struct Knowledge {
    pub carts: BTreeMap<String, Known>,
    /// Highest acknowledged on_hand of the admin counter.
    pub admin_acknowledged: u64,
    /// Adjustments tried since that acknowledgement: each may have been
    /// applied without its answer arriving (one per killed process, so
    /// several when consecutive processes die before any adjustment is
    /// acknowledged).
    pub admin_unacknowledged_tries: u64,
}

fn state_named(name: &str) -> ReservationState {
    match name {
        "committed" => ReservationState::Committed,
        "released" => ReservationState::Released,
        other => panic!("not a decision: {other}"),
    }
}

impl Knowledge {
    /// Learns one reported line (other lines are ignored).
    pub fn learn(&mut self, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["TRY", "RESERVE", id, lines] => {
                let lines = lines
                    .split(',')
                    .map(|line| {
                        let (s, q) = line.split_once(':').unwrap();
                        (s.parse().unwrap(), q.parse().unwrap())
                    })
                    .collect();
                self.carts.insert(id.to_string(), Known { lines, ..Known::default() });
            }
            ["ACK", "HELD", id] => self.carts.get_mut(*id).unwrap().held = true,
            ["ACK", "REFUSED", id] => self.carts.get_mut(*id).unwrap().refused = true,
            ["TRY", state, id] => self.carts.get_mut(*id).unwrap().tried = Some(state_named(state)),
            ["TRY", "ADJUST"] => self.admin_unacknowledged_tries += 1,
            ["ACK", "ADJUSTED", on_hand] => {
                // Adjustments are tried one at a time, so this answer covers
                // every earlier try.
                self.admin_acknowledged = self.admin_acknowledged.max(on_hand.parse().unwrap());
                self.admin_unacknowledged_tries = 0;
            }
            ["ACK", state, id] => self.carts.get_mut(*id).unwrap().acknowledged = Some(state_named(state)),
            _ => {} // libtest's own lines
        }
    }

    pub fn acknowledged_holds(&self) -> usize {
        self.carts.values().filter(|known| known.held).count()
    }
}

/// Checks a recovered engine against everything acknowledged:
/// acknowledged holds and decisions are present, unacknowledged tries
/// happened whole or not at all, refused carts left nothing, `reserved` is
/// exactly the held carts' units, sold units are exactly the committed
/// carts' (conserved, never oversold), the admin counter kept every
/// acknowledged adjustment, and every shard passes its audit.
pub fn verify(engine: &Engine, knowledge: &Knowledge, context: &str) {
    futures::executor::block_on(engine.audit()).expect("every shard passes its audit");
    let ids: Vec<&String> = knowledge.carts.keys().collect();
    let outcomes = ids.chunks(BATCH_REQUESTS_MAX).flat_map(|chunk| {
        let reads = chunk.iter().map(|id| Request::GetReservation { id: ReservationId::new(id).unwrap() }).collect();
        engine.submit_batch_blocking(reads)
    });
    let mut held = [0u64; SKUS];
    let mut sold = [0u64; SKUS];
    for (id, outcome) in ids.iter().zip(outcomes) {
        let known = &knowledge.carts[*id];
        let state = match outcome {
            Err(Rejection::UnknownReservation) => {
                assert!(!known.held, "{context}: acknowledged hold {id} was lost");
                continue;
            }
            Ok(Reply::Reservation(view)) => {
                let lines: BTreeMap<usize, u32> =
                    view.lines.iter().map(|line| (line.sku.as_str()[4..].parse().unwrap(), line.qty)).collect();
                assert_eq!(lines, known.lines, "{context}: {id} is not held whole");
                assert!(!known.refused, "{context}: refused cart {id} left a reservation");
                view.state
            }
            other => panic!("{context}: reading {id}: {other:?}"),
        };
        if let Some(acknowledged) = known.acknowledged {
            assert_eq!(state, acknowledged, "{context}: {id} lost its acknowledged decision");
        } else {
            let allowed = [Some(ReservationState::Held), known.tried];
            assert!(allowed.contains(&Some(state)), "{context}: {id} is {state:?}, never tried");
        }
        for (&s, &qty) in &known.lines {
            match state {
                ReservationState::Held => held[s] += u64::from(qty),
                ReservationState::Committed => sold[s] += u64::from(qty),
                _ => {}
            }
        }
    }
    for s in 0..SKUS {
        let counts = engine.read_view().get(sku(s).as_str()).expect("stocked SKUs exist");
        let initial = if s == SCARCE_SKU { SCARCE_STOCK } else { STOCK };
        assert_eq!(counts.reserved, held[s], "{context}: sku-{s} reserved is not its held carts");
        assert_eq!(counts.on_hand + sold[s], initial, "{context}: sku-{s} units not conserved");
    }
    let admin = engine.read_view().get(ADMIN_SKU).expect("the admin counter exists");
    let (acknowledged, in_flight) = (knowledge.admin_acknowledged, knowledge.admin_unacknowledged_tries);
    assert!(
        (acknowledged..=acknowledged + in_flight).contains(&admin.on_hand),
        "{context}: admin counter {} but {acknowledged} acknowledged and {in_flight} tried since",
        admin.on_hand
    );
    assert_eq!(admin.version, admin.on_hand + 1, "every adjustment bumped the version once");
}
