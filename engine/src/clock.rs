//! Time, injected. The engine asks a `Clock` for "now" once per batch and
//! stamps every command of the batch with it; the state machine itself only
//! ever sees that number, so replay and simulation never consult a clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch (or any fixed origin, for tests).
    fn now_ms(&self) -> u64;
}

/// The wall clock, for servers.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("the system clock is set after 1970");
        u64::try_from(since_epoch.as_millis()).expect("milliseconds since 1970 fit in u64")
    }
}

/// A clock that moves only when told, for tests and simulation.
#[derive(Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock { now_ms: AtomicU64::new(now_ms) }
    }

    pub fn advance_ms(&self, delta_ms: u64) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
