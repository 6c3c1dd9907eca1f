//! A shard's thread: the only owner of its `ShardState`. It drains whatever
//! waits in its bounded queue (up to `batch_len_max` commands), ticks,
//! applies every command with one timestamp, makes the batch durable (the
//! WAL's group commit goes exactly there), publishes the new counts, and
//! only then replies. No reply ever precedes the publish of its batch.

use crate::clock::Clock;
use crate::command::{Command, PartOutcome};
use crate::limits::IDLE_TICK_MS;
use crate::state::ShardState;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

pub(crate) enum ShardMessage {
    One {
        command: Command,
        reply: oneshot::Sender<PartOutcome>,
    },
    Many {
        commands: Vec<Command>,
        reply: oneshot::Sender<Vec<PartOutcome>>,
    },
    /// Finish what is queued, then exit.
    Stop,
}

impl ShardMessage {
    fn command_count(&self) -> usize {
        match self {
            ShardMessage::One { .. } => 1,
            ShardMessage::Many { commands, .. } => commands.len(),
            ShardMessage::Stop => 0,
        }
    }
}

pub(crate) fn run(
    mut state: ShardState,
    inbox: Receiver<ShardMessage>,
    clock: Arc<dyn Clock>,
    batch_len_max: usize,
) {
    // Reused across batches: the loop allocates nothing per batch once warm.
    let mut messages: Vec<ShardMessage> = Vec::new();
    let mut one_replies: Vec<(oneshot::Sender<PartOutcome>, PartOutcome)> = Vec::new();
    let mut many_replies: Vec<(oneshot::Sender<Vec<PartOutcome>>, Vec<PartOutcome>)> = Vec::new();
    let mut now_ms = 0u64;
    let mut stopping = false;
    loop {
        match inbox.recv_timeout(Duration::from_millis(IDLE_TICK_MS)) {
            Ok(message) => messages.push(message),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => stopping = true,
        }
        let mut command_count: usize = messages.iter().map(ShardMessage::command_count).sum();
        while command_count < batch_len_max {
            let Ok(message) = inbox.try_recv() else { break };
            command_count += message.command_count();
            messages.push(message);
        }
        // Shard time never goes backwards, whatever the clock does.
        now_ms = now_ms.max(clock.now_ms());
        {
            let mut batch = state.batch();
            batch
                .apply(Command::Tick, now_ms)
                .expect("a tick is never refused");
            for message in messages.drain(..) {
                match message {
                    ShardMessage::One { command, reply } => {
                        one_replies.push((reply, batch.apply(command, now_ms)));
                    }
                    ShardMessage::Many { commands, reply } => {
                        let outcomes = commands
                            .into_iter()
                            .map(|command| batch.apply(command, now_ms))
                            .collect();
                        many_replies.push((reply, outcomes));
                    }
                    ShardMessage::Stop => stopping = true,
                }
            }
        }
        state.publish();
        // A caller that stopped waiting dropped its receiver; nothing to do.
        for (reply, outcome) in one_replies.drain(..) {
            let _ = reply.send(outcome);
        }
        for (reply, outcomes) in many_replies.drain(..) {
            let _ = reply.send(outcomes);
        }
        if stopping && inbox.is_empty() {
            return;
        }
    }
}
