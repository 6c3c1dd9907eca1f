//! Every limit the engine enforces, as named constants. The edge (HTTP, CLI,
//! in-process callers) checks them through the constructors in `ids` and
//! `request`; the state machine asserts them again inside.

/// Longest SKU id in bytes; SKUs are `[A-Za-z0-9._:/-]`.
pub const SKU_LEN_MAX: usize = 64;
/// Longest reservation id in bytes; ids are printable ASCII.
pub const RESERVATION_ID_LEN_MAX: usize = 128;
/// Largest quantity of one cart line.
pub const QTY_MAX: u32 = 1_000_000;
/// Most lines in one reservation.
pub const LINES_MAX: usize = 100;
/// Largest `on_hand` of one SKU (2^40): sums of quantities never overflow `u64`.
pub const ON_HAND_MAX: u64 = 1 << 40;
/// Shortest hold.
pub const TTL_MS_MIN: u64 = 1_000;
/// Longest hold.
pub const TTL_MS_MAX: u64 = 24 * 60 * 60 * 1_000;
/// Hold length when the caller names none.
pub const TTL_MS_DEFAULT: u64 = 15 * 60 * 1_000;
/// How long a finished reservation is remembered after its deadline, so that
/// retries still dedupe.
pub const RETENTION_MS_DEFAULT: u64 = 24 * 60 * 60 * 1_000;
/// The least time a cross-shard cart is remembered after its deadline,
/// whatever the retention: its parts hear home's decision only after home
/// logged it, and a recovery that finds a part still held finishes it from
/// home's record. Home must not forget the cart first (with a 1 ms
/// retention it could, and recovery would then abort a part of a sold
/// cart). Ten minutes covers any stall of a live process short of a hang.
pub const CART_RETENTION_MS_MIN: u64 = 10 * 60 * 1_000;
/// Cross-shard carts a home shard holds in progress at once; beyond this a
/// new one is refused as `busy`.
pub const PENDING_CARTS_MAX_DEFAULT: usize = 16_384;
/// Attempts with another body that may wait behind one in-progress cart id.
pub const CART_QUEUE_LEN_MAX: usize = 16;
/// Most shards; a cart's participants are a `u64` bit set.
pub const SHARDS_MAX: usize = 64;
/// Default depth of each shard's command queue, in messages.
pub const QUEUE_LEN_MAX_DEFAULT: usize = 4_096;
/// Default number of commands a shard applies between two publishes.
pub const BATCH_LEN_MAX_DEFAULT: usize = 8_192;
/// Default number of SKUs and reservation slots a snapshot's capture copies
/// per loop turn: under 1 ms of copying (measured ~30 ns per reservation).
pub const CAPTURE_SLICE_DEFAULT: usize = 16_384;
/// Timer events (expiries and forgets) one tick handles on top of two per
/// op in the turn's batch, so a mass expiry never stalls a shard (the rest
/// waits for the next loop turn) while forgets keep pace with new holds.
pub const TICK_EVENTS_MAX: usize = 1_024;
/// How long an idle shard sleeps before it ticks on its own.
pub const IDLE_TICK_MS: u64 = 10;
/// Most requests in one `submit_batch` call.
pub const BATCH_REQUESTS_MAX: usize = 100_000;
