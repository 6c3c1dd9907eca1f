//! A shard's client queue, and the promise that nobody waits on a shard
//! that is gone. A caller waits for its answer on a reply handle inside
//! its message; dropping the message drops the handle, and the caller
//! reads `ShuttingDown`. When a shard's loop ends, normally or by a panic,
//! `ExitGuard` marks the inbox exited and drops every message queued. A
//! message that lands after that drop (its sender passed the engine's
//! `closed` check before shutdown began, or the shard panicked) is dropped
//! by its own sender, which looks at the mark after every send.
//!
//! Why not rely on the channel: dropping a crossbeam receiver marks the
//! channel disconnected but frees the queued messages only when the last
//! sender goes, which is the engine's own, so those callers would wait
//! until the engine is dropped.

use crate::rejection::Rejection;
use crate::shard::ClientMessage;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

/// The engine's end of one shard's client queue.
pub(crate) struct Inbox {
    sender: Sender<ClientMessage>,
    /// A second receiver, used only to drop what lands after the shard exited.
    orphans: Receiver<ClientMessage>,
    exited: Arc<AtomicBool>,
}

/// The shard's end: its queue, and the guard to hold for its loop's life.
pub(crate) struct ShardEnd {
    pub queue: Receiver<ClientMessage>,
    pub guard: ExitGuard,
}

/// A bounded queue of `len` messages.
pub(crate) fn bounded(len: usize) -> (Inbox, ShardEnd) {
    let (sender, queue) = crossbeam_channel::bounded(len);
    let exited = Arc::new(AtomicBool::new(false));
    let guard = ExitGuard { queue: queue.clone(), exited: Arc::clone(&exited) };
    (Inbox { sender, orphans: queue.clone(), exited }, ShardEnd { queue, guard })
}

impl Inbox {
    /// Queues `message`, or `Busy` when the queue is full. After the shard
    /// exited the message is accepted and dropped at once (its caller reads
    /// `ShuttingDown`).
    pub fn try_send(&self, message: ClientMessage) -> Result<(), Rejection> {
        // The inbox holds a receiver, so the channel never disconnects.
        self.sender.try_send(message).map_err(|_| Rejection::Busy)?;
        self.drop_if_exited();
        Ok(())
    }

    fn drop_if_exited(&self) {
        // Either the shard's final drain saw the message just sent, or this
        // load sees the mark: the send took its place with a SeqCst
        // compare-exchange (crossbeam's bounded channel), and the drain
        // decides the queue is empty after a SeqCst fence that follows the
        // mark's store, so the two are ordered one way or the other. (A
        // fence here as well measured 2-4 % slower on single requests, in
        // one set of alternating runs.)
        if self.exited.load(Ordering::SeqCst) {
            drain(&self.orphans);
        }
    }

    /// Queues `message`, waiting for room (the shard makes it; after it
    /// exited, each sender empties the queue behind its own message).
    pub fn send(&self, message: ClientMessage) {
        // The inbox holds a receiver, so the channel never disconnects.
        let _ = self.sender.send(message);
        self.drop_if_exited();
    }

    /// Whether the shard's loop has ended.
    pub fn exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.sender.len()
    }
}

/// Held by a shard thread for its loop's life; dropped when the loop ends,
/// by a return or a panic.
pub(crate) struct ExitGuard {
    queue: Receiver<ClientMessage>,
    exited: Arc<AtomicBool>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.exited.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        drain(&self.queue);
    }
}

fn drain(queue: &Receiver<ClientMessage>) {
    while queue.try_recv().is_ok() {}
}
