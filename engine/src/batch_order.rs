//! The order a batch keeps (`Engine::submit_batch`). The requests for one
//! shard travel through its queue in batch order (one message per 1,024)
//! and are applied in that order there, so most of a batch runs at once. A request that depends on an earlier one
//! handled elsewhere (or on several shards) must not overtake it: the batch
//! is cut into waves, and a wave is sent only once the one before it has
//! answered, so the request is answered as if sent after the earlier one's
//! answer.
//!
//! A request depends on an earlier one when both name the same reservation
//! id, or the same SKU with at least one of them a stock change or a read
//! of it, unless both are handled wholly on the same shard (then its
//! queue keeps their order). A commit or release may change SKUs on
//! other shards than its home (a cart's parts), which its request does not
//! name: it and a stock change or read on another shard keep their batch
//! order (the later waits for the earlier). Holds (and decisions) by
//! different ids on one SKU do not depend on each other: they compete as
//! concurrent single calls do, so a hot-SKU batch stays one wave. Keys
//! are compared by hash; a collision only cuts a wave early. A wave also
//! holds no more carts spanning shards per home than a home takes at once
//! (`pending_carts_max`).

use crate::command::{Command, Query};
use crate::hash::KeyHashHasher;
use crate::shard::ClientOp;
use smallvec::{smallvec, SmallVec};
use std::hash::BuildHasherDefault;

/// Keyed by XXH3 key hashes, used as they are.
type HashMap<V> = hashbrown::HashMap<u64, V, BuildHasherDefault<KeyHashHasher>>;

/// Where a request is handled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reach {
    /// Wholly on this shard.
    Shard(usize),
    /// On several shards (a cart's parts).
    Shards,
}

impl Reach {
    /// Two requests on this key keep their order only within one shard's queue.
    fn ordered_with(self, other: Reach) -> bool {
        matches!((self, other), (Reach::Shard(a), Reach::Shard(b)) if a == b)
    }

    fn merge(self, other: Reach) -> Reach {
        if self == other {
            self
        } else {
            Reach::Shards
        }
    }
}

/// The requests of the wave being gathered, by the keys they name.
pub(crate) struct Wave {
    /// With one shard every request is handled wholly on it, in order:
    /// nothing is tracked.
    one_shard: bool,
    /// Reservation id hash -> where the wave's requests on it are handled.
    ids: HashMap<Reach>,
    /// SKU hash -> (where, whether a stock change or read names it).
    skus: HashMap<(Reach, bool)>,
    /// The home shards of the wave's commits and releases, as a bit set.
    decided_at: u64,
    /// The shards of the wave's stock changes and reads, as a bit set.
    exclusive_at: u64,
    /// Carts spanning shards in the wave, by home: a home takes at most
    /// `carts_max` at once (more would be `busy`, which one by one they
    /// are not).
    carts_at: Vec<usize>,
    carts_max: usize,
}

/// The keys a request names: (its reservation id, its SKUs, whether it
/// changes or reads a SKU's stock, where it is handled).
fn keys(shard: usize, op: &ClientOp) -> (Option<u64>, SmallVec<[u64; 4]>, bool, Reach) {
    match op {
        ClientOp::Apply(Command::SetStock { sku, .. } | Command::AdjustStock { sku, .. }) => {
            (None, smallvec![sku.key_hash()], true, Reach::Shard(shard))
        }
        ClientOp::Apply(Command::Commit { id } | Command::Release { id })
        | ClientOp::Query(Query::GetReservation { id }) => {
            (Some(id.key_hash()), SmallVec::new(), false, Reach::Shard(shard))
        }
        ClientOp::Query(Query::GetSku { sku }) => (None, smallvec![sku.key_hash()], true, Reach::Shard(shard)),
        ClientOp::ReserveLocal { id, lines, .. } => {
            (Some(id.key_hash()), lines.iter().map(|line| line.sku.key_hash()).collect(), false, Reach::Shard(shard))
        }
        ClientOp::ReserveCart(cart) => {
            let lines = cart.home_lines.iter().chain(cart.away.iter().flat_map(|(_, lines)| lines));
            (Some(cart.id.key_hash()), lines.map(|line| line.sku.key_hash()).collect(), false, Reach::Shards)
        }
        _ => unreachable!("only requests are planned into a batch"),
    }
}

impl Wave {
    /// A wave for a batch of `requests` on `shard_count` shards, whose
    /// homes hold at most `carts_max` carts at once.
    pub(crate) fn new(shard_count: usize, requests: usize, carts_max: usize) -> Wave {
        let room = if shard_count == 1 { 0 } else { requests };
        Wave {
            one_shard: shard_count == 1,
            ids: HashMap::with_capacity_and_hasher(room, Default::default()),
            skus: HashMap::with_capacity_and_hasher(room, Default::default()),
            decided_at: 0,
            exclusive_at: 0,
            carts_at: vec![0; shard_count],
            carts_max,
        }
    }

    /// Adds `op` (sent to `shard`) to the wave, unless it depends on a
    /// request already in it: then it returns false and adds nothing (send
    /// this wave, `clear` it, and add `op` to the next).
    pub(crate) fn try_add(&mut self, shard: usize, op: &ClientOp) -> bool {
        if self.one_shard {
            return true;
        }
        let (id, skus, exclusive, reach) = keys(shard, op);
        let id_waits = id.is_some_and(|id| self.ids.get(&id).is_some_and(|earlier| !earlier.ordered_with(reach)));
        let sku_waits = skus.iter().any(|sku| {
            self.skus.get(sku).is_some_and(|&(earlier, earlier_exclusive)| {
                (earlier_exclusive || exclusive) && !earlier.ordered_with(reach)
            })
        });
        let decision = matches!(op, ClientOp::Apply(Command::Commit { .. } | Command::Release { .. }));
        let others = !(1u64 << shard);
        let crosses_a_decision =
            (exclusive && self.decided_at & others != 0) || (decision && self.exclusive_at & others != 0);
        let cart = matches!(op, ClientOp::ReserveCart(_));
        let home_full = cart && self.carts_at[shard] >= self.carts_max;
        if id_waits || sku_waits || crosses_a_decision || home_full {
            return false;
        }
        if cart {
            self.carts_at[shard] += 1;
        }
        if decision {
            self.decided_at |= 1 << shard;
        }
        if exclusive {
            self.exclusive_at |= 1 << shard;
        }
        if let Some(id) = id {
            self.ids.entry(id).and_modify(|earlier| *earlier = earlier.merge(reach)).or_insert(reach);
        }
        for sku in skus {
            self.skus
                .entry(sku)
                .and_modify(|(earlier, earlier_exclusive)| {
                    (*earlier, *earlier_exclusive) = (earlier.merge(reach), *earlier_exclusive || exclusive)
                })
                .or_insert((reach, exclusive));
        }
        true
    }

    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.skus.clear();
        self.decided_at = 0;
        self.exclusive_at = 0;
        self.carts_at.fill(0);
    }
}
