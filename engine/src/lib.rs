//! stockd-engine: the inventory state machine, its shards and queues, and
//! the read view. It keeps every SKU's stock in memory and never holds a
//! unit that does not exist.
//!
//! What it never does: read the wall clock (time comes from the `Clock` it
//! is given and is stamped once per batch), speak HTTP or JSON, or touch a
//! database. Its only I/O is through the log a shard is given and the data
//! directory around it (manifest, lock, the record of a storage failure,
//! which also reads the kernel's boot id).
//!
//! # Layout
//! - `limits`: every `_MAX` / default, as named constants.
//! - `ids`: validated `Sku` and `ReservationId`, each with its hash.
//! - `rejection`: the one error enum, with stable codes.
//! - `request`: the public `Request` / `Reply` vocabulary and its validation.
//! - `command`: the per-shard `Command` the state machine applies and logs.
//! - `state`: one shard's state and `apply(state, command, now)`.
//! - `reservations`: reservation records; `id_index` and `timers` index them.
//! - `carts`: the cross-shard cart protocol, run by each cart's home shard.
//! - `read_view`: the SKU index and published counts readers use.
//! - `shard`: the shard thread's batch loop and its durability seam.
//! - `engine`: starting shards and routing requests to them.
//! - `stats`: counters for operators.
//! - `codec`: commands as WAL payloads (rkyv).
//! - `durable`: a shard's log: group commit on a syncer thread, snapshots.
//! - `snapshot`: a shard's state as an image, captured and restored.
//! - `store`: the data directory (layout, manifest, lock) and its options.
//! - `recovery`: opening a data directory: replay, reconciliation, start.
//! - `tools`: what SREs run on a stopped server's data directory.
//! - `clock`, `hash`: injected time; stable hashing and shard choice.
#![forbid(unsafe_code)]

mod batch_order;
mod carts;
pub mod clock;
mod codec;
pub mod command;
mod durable;
mod engine;
pub mod hash;
mod id_index;
pub mod ids;
mod inbox;
pub mod limits;
pub mod read_view;
mod recovery;
pub mod rejection;
pub mod request;
mod reservations;
mod shard;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod store;
mod timers;
pub mod tools;

pub use clock::{Clock, ManualClock, SystemClock};
pub use command::{
    CartLine, Command, PartOutcome, PartReply, PartView, Query, ReservationState, ReservePart, TimerKey,
};
pub use durable::SNAPSHOT_THREAD_NICE;
pub use engine::{Engine, EngineConfig};
pub use ids::{ReservationId, Sku};
pub use read_view::{ReadView, SkuCounts};
pub use recovery::{RecoveryProgress, RecoveryReport, ShardRecovery};
pub use rejection::Rejection;
pub use request::{Hold, Outcome, Reply, Request, ReservationView, ReserveRequest};
pub use state::{Batch, Notice, ShardConfig, ShardState, WARM_WINDOW};
pub use store::{FsyncPolicy, StoreConfig, StoreError, FAILURE_MARKER};
