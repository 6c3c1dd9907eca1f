//! What both benchmark binaries submit the same way.

use stockd_engine::{Engine, Request};

/// Each caller submits its batch of reserves, then (once they are answered)
/// their commits; the callers' batches are in flight at the same time.
pub fn reserve_then_commit_batches(engine: &Engine, work: Vec<(Vec<Request>, Vec<Request>)>) {
    let callers = work.into_iter().map(|(reserves, commits)| async move {
        assert!(engine.submit_batch(reserves).await.iter().all(Result::is_ok));
        assert!(engine.submit_batch(commits).await.iter().all(Result::is_ok));
    });
    futures::executor::block_on(futures::future::join_all(callers));
}
