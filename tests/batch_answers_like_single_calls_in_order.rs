//! A batch answers each request as the same requests sent one at a time, in
//! order, would be answered, whenever they depend on each other: a hold
//! then its commit, a stock change then a hold or a read of that SKU, a
//! cart then a read of one of its SKUs on another shard, more carts for one
//! home than it takes at once. Random batches over a few SKUs and ids on 2
//! to 4 shards (so many carts span shards) are sent to one engine as
//! batches and to another one by one; every outcome and the final counts
//! must be equal. Stock is ample, so holds by different ids never compete
//! for the last units (the one case a batch leaves to the shards' timing,
//! see `Engine::submit_batch`).

use proptest::prelude::*;
use std::sync::Arc;
use stockd_engine::{CartLine, Engine, EngineConfig, ManualClock, Request, ReservationId, ReserveRequest, Sku};

const SKUS: usize = 6;
const IDS: usize = 8;

fn sku(n: usize) -> Sku {
    Sku::new(&format!("sku-{n}")).unwrap()
}

fn id(n: usize) -> ReservationId {
    ReservationId::new(&format!("r-{n}")).unwrap()
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (0..SKUS, 1_000u64..2_000, prop::option::of(0u64..4)).prop_map(|(n, on_hand, expected_version)| {
            Request::SetStock { sku: sku(n), on_hand, expected_version }
        }),
        (0..SKUS, -5i64..5).prop_map(|(n, delta)| Request::AdjustStock { sku: sku(n), delta }),
        (0..SKUS).prop_map(|n| Request::GetSku { sku: sku(n) }),
        (0..IDS, prop::collection::btree_set(0..SKUS, 1..4), 1u32..4).prop_map(|(n, skus, qty)| {
            let lines = skus.into_iter().map(|s| CartLine { sku: sku(s), qty }).collect();
            Request::Reserve(ReserveRequest { id: id(n), lines, ttl_ms: None })
        }),
        (0..IDS).prop_map(|n| Request::Commit { id: id(n) }),
        (0..IDS).prop_map(|n| Request::Release { id: id(n) }),
        (0..IDS).prop_map(|n| Request::GetReservation { id: id(n) }),
    ]
}

/// `carts_max`: carts a home takes at once (small, so batches reach it).
fn engine(shards: usize, carts_max: usize) -> Engine {
    let config = EngineConfig { shards, pending_carts_max: carts_max, ..EngineConfig::default() };
    Engine::start(config, Arc::new(ManualClock::new(1_000_000)))
}

/// Sequences to try: 300 by default, more with `STOCKD_BATCH_ORDER_CASES`.
fn cases() -> u32 {
    std::env::var("STOCKD_BATCH_ORDER_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(300)
}

/// Sends `batches` to one engine as batches and to another one request at
/// a time, and compares every outcome and the final counts.
fn compare(batches: Vec<Vec<Request>>, shards: usize, carts_max: usize, on_hand: u64) -> Result<(), TestCaseError> {
    let (batched, single) = (engine(shards, carts_max), engine(shards, carts_max));
    // Every SKU but the last exists, with plenty of stock.
    for n in 0..SKUS - 1 {
        for engine in [&batched, &single] {
            engine.submit_blocking(Request::SetStock { sku: sku(n), on_hand, expected_version: None }).unwrap();
        }
    }
    for batch in batches {
        let one_by_one: Vec<_> = batch.iter().map(|request| single.submit_blocking(request.clone())).collect();
        prop_assert_eq!(batched.submit_batch_blocking(batch.clone()), one_by_one, "batch {:?}", batch);
    }
    for n in 0..SKUS {
        let name = format!("sku-{n}");
        prop_assert_eq!(batched.read_view().get(&name), single.read_view().get(&name), "{}", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn a_batch_answers_like_single_calls_in_order(
        batches in prop::collection::vec(prop::collection::vec(request(), 1..16), 1..4),
        shards in 2usize..5,
        carts_max in 1usize..3,
    ) {
        compare(batches, shards, carts_max, 1_000)?;
    }
}

proptest! {
    // Shrinking a failing batch of thousands of requests would take long:
    // a few steps only.
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 32, ..ProptestConfig::default() })]

    /// A batch reaches a shard in several queue messages once it is longer
    /// than one (`BATCH_CHUNK`, 1,024 requests): on one shard the whole
    /// batch is one wave, so requests that depend on each other land in
    /// different messages; the answers must still come back in order.
    #[test]
    fn a_batch_longer_than_a_queue_message_answers_like_single_calls(
        batch in prop::collection::vec(request(), 2_100..3_000),
        shards in 1usize..3,
        carts_max in 1usize..3,
    ) {
        compare(vec![batch], shards, carts_max, 1_000)?;
    }

    /// With several shards, waves are cut wherever requests depend on each
    /// other, so only a batch of many independent requests has a wave with
    /// more than 1,024 requests for one shard: thousands of distinct
    /// reservations (many of them carts spanning shards), then one commit,
    /// release or read of each, in random order. Homes take all the carts
    /// at once. Every read answers differently, so an answer paired with
    /// the wrong request shows.
    #[test]
    fn a_long_wave_on_several_shards_answers_like_single_calls(
        batch in holds_then_decisions(),
        shards in 2usize..4,
    ) {
        compare(vec![batch], shards, 10_000, 1_000_000)?;
    }
}

/// 3,400 to 4,000 holds of one unit of one to three SKUs by distinct ids,
/// then a commit, release or read of each, in random order: two waves,
/// each over 1,024 requests per shard on two or three shards.
fn holds_then_decisions() -> impl Strategy<Value = Vec<Request>> {
    (3_400usize..4_000)
        .prop_flat_map(|holds| {
            let carts = prop::collection::vec(prop::collection::btree_set(0..SKUS - 1, 1..4), holds);
            let order = Just((0..holds).collect::<Vec<_>>()).prop_shuffle();
            let kinds = prop::collection::vec(0..3u8, holds);
            (carts, order, kinds)
        })
        .prop_map(|(carts, order, kinds)| {
            let hold_id = |n: usize| id(1_000 + n);
            let holds = carts.into_iter().enumerate().map(|(n, skus)| {
                let lines = skus.into_iter().map(|s| CartLine { sku: sku(s), qty: 1 }).collect();
                Request::Reserve(ReserveRequest { id: hold_id(n), lines, ttl_ms: None })
            });
            let follow_ups = order.into_iter().zip(kinds).map(|(n, kind)| match kind {
                0 => Request::Commit { id: hold_id(n) },
                1 => Request::Release { id: hold_id(n) },
                _ => Request::GetReservation { id: hold_id(n) },
            });
            holds.chain(follow_ups).collect()
        })
}
