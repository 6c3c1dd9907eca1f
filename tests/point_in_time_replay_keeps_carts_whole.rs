//! Point-in-time recovery (`tools::replay_into`) over several shards: a cut
//! by time keeps a cart that spans shards whole (held everywhere, or sold
//! everywhere once the new directory starts), and a cut by LSN, which is a
//! different moment on each shard, is refused. It stays whole when the
//! shards read different times from the clock (as after a clock step back).

use std::path::Path;
use std::sync::Arc;
use stockd_engine::tools::{replay_into, ReplayBound};
use stockd_engine::{
    CartLine, Clock, Engine, EngineConfig, ManualClock, Reply, Request, ReservationId, ReservationState,
    ReserveRequest, Sku, StoreConfig, StoreError,
};
use stockd_wal::{MemStorage, Storage};

const SHARDS: usize = 3;
const SKUS: usize = 9;

fn open(storage: &Arc<MemStorage>, dir: &str, clock: &Arc<impl Clock>) -> Engine {
    let segment_bytes_max = stockd_wal::SEGMENT_BYTES_MIN;
    let store = StoreConfig { storage: storage.clone(), lock: false, segment_bytes_max, ..StoreConfig::new(dir) };
    let config = EngineConfig { shards: SHARDS, ..EngineConfig::default() };
    Engine::open(config, store, clock.clone(), &Default::default()).expect("recovers").0
}

fn sku(i: usize) -> Sku {
    Sku::new(&format!("sku-{i}")).unwrap()
}

fn wide_cart(id: &str) -> Request {
    let lines = (0..SKUS).map(|i| CartLine { sku: sku(i), qty: 1 }).collect();
    Request::Reserve(ReserveRequest { id: ReservationId::new(id).unwrap(), lines, ttl_ms: Some(600_000) })
}

/// (on_hand, reserved) of every SKU.
fn counts(engine: &Engine) -> Vec<(u64, u64)> {
    (0..SKUS)
        .map(|i| engine.read_view().get(sku(i).as_str()).map(|c| (c.on_hand, c.reserved)).expect("the SKU exists"))
        .collect()
}

fn state_of(engine: &Engine, id: &str) -> Option<ReservationState> {
    match engine.submit_blocking(Request::GetReservation { id: ReservationId::new(id).unwrap() }) {
        Ok(Reply::Reservation(view)) => Some(view.state),
        _ => None,
    }
}

#[test]
fn a_cut_by_time_keeps_carts_whole_and_a_cut_by_lsn_is_refused() {
    let storage = MemStorage::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let engine = open(&storage, "/data", &clock);
    let spans: std::collections::BTreeSet<usize> = (0..SKUS).map(|i| engine.shard_of_sku(sku(i).as_str())).collect();
    assert_eq!(spans.len(), SHARDS, "the cart has a line on every shard");
    for i in 0..SKUS {
        engine.submit_blocking(Request::SetStock { sku: sku(i), on_hand: 10, expected_version: None }).unwrap();
    }
    clock.advance_ms(1_000); // t = 1_001_000
    assert!(matches!(engine.submit_blocking(wide_cart("first")), Ok(Reply::Held(_))));
    clock.advance_ms(1_000); // t = 1_002_000
    let commit = Request::Commit { id: ReservationId::new("first").unwrap() };
    assert_eq!(engine.submit_blocking(commit.clone()), Ok(Reply::Committed));
    clock.advance_ms(1_000); // t = 1_003_000
    assert!(matches!(engine.submit_blocking(wide_cart("second")), Ok(Reply::Held(_))));
    engine.shutdown();
    drop(engine);

    let refused = replay_into(storage.as_ref(), Path::new("/data"), Path::new("/by-lsn"), ReplayBound::Lsn(12));
    assert!(matches!(refused, Err(StoreError::LsnCutAcrossShards { shards: SHARDS, .. })), "{refused:?}");
    assert!(!storage.exists(Path::new("/by-lsn")), "a refused replay writes nothing");

    // Held, not yet sold: every shard holds its part, and the cart commits.
    replay_into(storage.as_ref(), Path::new("/data"), Path::new("/held"), ReplayBound::TimeMs(1_001_500)).unwrap();
    let held = open(&storage, "/held", &clock);
    assert_eq!(counts(&held), vec![(10, 1); SKUS]);
    assert_eq!(state_of(&held, "first"), Some(ReservationState::Held));
    assert_eq!(state_of(&held, "second"), None, "after the cut");
    assert_eq!(held.submit_blocking(commit.clone()), Ok(Reply::Committed));
    assert_eq!(counts(&held), vec![(9, 0); SKUS]);
    futures::executor::block_on(held.audit()).expect("invariants hold");
    drop(held);

    // Sold on every shard.
    replay_into(storage.as_ref(), Path::new("/data"), Path::new("/sold"), ReplayBound::TimeMs(1_002_500)).unwrap();
    let sold = open(&storage, "/sold", &clock);
    assert_eq!(counts(&sold), vec![(9, 0); SKUS]);
    assert_eq!(state_of(&sold, "first"), Some(ReservationState::Committed));
    futures::executor::block_on(sold.audit()).expect("invariants hold");
}

/// A clock each shard thread reads `SKEW_MS` apart from the next: shard
/// `k` sees `base + k * SKEW_MS`, or with `descending`
/// `base + (SHARDS - 1 - k) * SKEW_MS`. What a clock stepped back does to
/// shards that read it on either side of the step, every time.
struct SkewedClock {
    base: ManualClock,
    descending: bool,
}

const SKEW_MS: u64 = 5_000;

impl SkewedClock {
    fn skew_of(&self, shard: usize) -> u64 {
        let rank = if self.descending { SHARDS - 1 - shard } else { shard };
        rank as u64 * SKEW_MS
    }
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> u64 {
        let thread = std::thread::current();
        let shard = thread.name().and_then(|name| name.strip_prefix("stockd-shard-")).map(|k| k.parse().unwrap());
        self.base.now_ms() + shard.map_or(0, |shard| self.skew_of(shard))
    }
}

/// With the shards' clocks ascending, some part reads a later time than
/// the cart's home when it is held; descending, some part reads an earlier
/// time when home's commit reaches it (the cart has a line on every shard,
/// so whichever shard is home, one of the two runs has a part ahead of it
/// and the other a part behind it). Without the mail's time, a part's hold
/// would be stamped after home's, or a part's commit before home's, and a
/// cut between them would split the cart.
#[test]
fn a_cut_by_time_keeps_carts_whole_when_the_shards_read_different_times() {
    let (mut part_ahead, mut part_behind) = (false, false);
    for descending in [false, true] {
        let (ahead, behind) = cuts_keep_the_cart_whole(SkewedClock { base: ManualClock::new(1_000_000), descending });
        part_ahead |= ahead;
        part_behind |= behind;
    }
    assert!(part_ahead && part_behind, "a part read a later time than home in one run, an earlier one in another");
}

/// Whether some part's shard read a later and some an earlier time than the
/// cart's home.
fn cuts_keep_the_cart_whole(clock: SkewedClock) -> (bool, bool) {
    let base_ms = clock.base.now_ms();
    let clock = Arc::new(clock);
    let storage = MemStorage::new();
    let engine = open(&storage, "/data", &clock);
    let home = usize::from(engine.home_of(&ReservationId::new("cart").unwrap()));
    let parts: Vec<u64> = (0..SHARDS).filter(|&shard| shard != home).map(|shard| clock.skew_of(shard)).collect();
    let ahead = parts.iter().any(|&skew| skew > clock.skew_of(home));
    let behind = parts.iter().any(|&skew| skew < clock.skew_of(home));
    for i in 0..SKUS {
        engine.submit_blocking(Request::SetStock { sku: sku(i), on_hand: 10, expected_version: None }).unwrap();
    }
    let stocked_ms = base_ms + SHARDS as u64 * SKEW_MS;
    clock.base.advance_ms(20_000);
    assert!(matches!(engine.submit_blocking(wide_cart("cart")), Ok(Reply::Held(_))));
    clock.base.advance_ms(20_000);
    let commit = Request::Commit { id: ReservationId::new("cart").unwrap() };
    assert_eq!(engine.submit_blocking(commit), Ok(Reply::Committed));
    engine.shutdown();
    drop(engine);

    // Every cut from when all stock is set to past the last shard's commit.
    let mut seen = std::collections::BTreeSet::new();
    for cut_ms in (stocked_ms..base_ms + 40_000 + (SHARDS as u64 + 1) * SKEW_MS).step_by(500) {
        let target = format!("/cut-{cut_ms}");
        replay_into(storage.as_ref(), Path::new("/data"), Path::new(&target), ReplayBound::TimeMs(cut_ms)).unwrap();
        let cut = open(&storage, &target, &clock);
        let state = state_of(&cut, "cart");
        let whole = match state {
            None => (10, 0),
            Some(ReservationState::Held) => (10, 1),
            Some(ReservationState::Committed) => (9, 0),
            Some(other) => panic!("cut at {cut_ms}: the cart is {other:?}"),
        };
        assert_eq!(counts(&cut), vec![whole; SKUS], "cut at {cut_ms}: the cart is {state:?} on its home shard");
        futures::executor::block_on(cut.audit()).expect("invariants hold");
        seen.insert(whole);
    }
    assert_eq!(seen.len(), 3, "cuts before the cart, while it is held, and after its commit");
    (ahead, behind)
}

/// A replay that one shard cannot finish (here: a damaged record on the
/// second shard) writes nothing, not the shards before it; and a directory
/// whose shard directories hold files but which has no manifest (what an
/// interrupted replay leaves) is refused at start instead of served as a
/// partial state.
#[test]
fn a_replay_a_shard_cannot_finish_leaves_no_directory_that_starts() {
    let storage = MemStorage::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let engine = open(&storage, "/data", &clock);
    for i in 0..SKUS {
        engine.submit_blocking(Request::SetStock { sku: sku(i), on_hand: 10, expected_version: None }).unwrap();
    }
    engine.shutdown();
    drop(engine);
    let shard_dir = Path::new("/data/shard-01");
    let segment = storage.list(shard_dir).unwrap().into_iter().find(|name| name.ends_with(".wal")).unwrap();
    let segment = shard_dir.join(segment);
    let at = stockd_wal::format::SEGMENT_HEADER_LEN + stockd_wal::format::RECORD_HEADER_LEN;
    let byte = storage.read(&segment).unwrap()[at];
    storage.open(&segment).unwrap().write_at(at as u64, &[!byte]).unwrap();

    let failed = replay_into(storage.as_ref(), Path::new("/data"), Path::new("/copy"), ReplayBound::End);
    assert!(failed.is_err(), "the second shard's first record is damaged");
    assert!(!storage.exists(Path::new("/copy")), "nothing is written, not even the first shard");

    // What an interrupted replay leaves: a shard's snapshot, no manifest.
    let half = Path::new("/half/shard-00");
    storage.create_dir_all(half).unwrap();
    storage.create(&half.join("snapshot-00000000000000000004.snap")).unwrap().write_at(0, b"partial").unwrap();
    let store = StoreConfig { storage: storage.clone(), lock: false, ..StoreConfig::new("/half") };
    let config = EngineConfig { shards: SHARDS, ..EngineConfig::default() };
    match Engine::open(config, store, clock.clone(), &Default::default()) {
        Err(StoreError::Manifest { reason, .. }) => assert!(reason.contains("replay"), "{reason}"),
        Err(other) => panic!("expected a manifest error, got {other}"),
        Ok(_) => panic!("a directory with shard files and no manifest started"),
    }
}
