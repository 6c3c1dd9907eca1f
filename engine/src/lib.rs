//! stockd-engine: the inventory state machine, its shards and queues, and
//! the read view. It keeps every SKU's stock in memory and never holds a
//! unit that does not exist.
//!
//! What it never does: read the wall clock (time comes from the `Clock` it
//! is given and is stamped once per batch), speak HTTP or JSON, or touch a
//! database. Its only I/O (with the WAL) is through the log handle a shard
//! is given.
//!
//! # Layout
//! - `limits`: every `_MAX` / default, as named constants.
//! - `ids`: validated `Sku` and `ReservationId`.
//! - `rejection`: the one error enum, with stable codes.
//! - `request`: the public `Request` / `Reply` vocabulary and its validation.
//! - `command`: the per-shard `Command` the state machine applies and logs.
//! - `state`: one shard's state and `apply(state, command, now)`.
//! - `reservations`: reservation records, id index, deadline timers.
//! - `read_view`: the SKU index and published counts readers use.
//! - `shard`: the shard thread's batch loop.
//! - `engine`: starting shards, routing, and the cross-shard cart protocol.
//! - `clock`, `hash`: injected time; stable hashing and shard choice.
#![forbid(unsafe_code)]

pub mod clock;
pub mod command;
mod engine;
pub mod hash;
pub mod ids;
pub mod limits;
pub mod read_view;
pub mod rejection;
pub mod request;
mod reservations;
mod shard;
pub mod state;

pub use clock::{Clock, ManualClock, SystemClock};
pub use command::{Command, PartOutcome, PartReply, PartView, ReservationState};
pub use engine::{Engine, EngineConfig};
pub use ids::{ReservationId, Sku};
pub use read_view::{ReadView, SkuCounts};
pub use rejection::Rejection;
pub use request::{CartLine, Hold, Outcome, Reply, Request, ReservationView, ReserveRequest};
pub use state::{Batch, ShardConfig, ShardState};
