//! A shard's thread: the only owner of its `ShardState`. It drains whatever
//! waits in its bounded queue (up to `batch_len_max` commands), ticks,
//! applies every command with one timestamp, makes the batch durable (the
//! WAL's group commit goes exactly there), publishes the new counts, and
//! only then replies. No reply ever precedes the publish of its batch.

use crate::clock::Clock;
use crate::command::{Command, PartOutcome};
use crate::limits::IDLE_TICK_MS;
use crate::state::ShardState;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
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
    /// Commands from another shard (`ExpirePart`); nobody waits for them.
    FromShard {
        commands: Vec<Command>,
    },
    /// Finish what is queued, then exit.
    Stop,
}

impl ShardMessage {
    fn command_count(&self) -> usize {
        match self {
            ShardMessage::One { .. } => 1,
            ShardMessage::Many { commands, .. } | ShardMessage::FromShard { commands } => commands.len(),
            ShardMessage::Stop => 0,
        }
    }
}

/// What a shard thread is given.
pub(crate) struct ShardContext {
    pub inbox: Receiver<ShardMessage>,
    /// Every shard's queue (its own included), for `ExpirePart` messages.
    pub peers: Vec<Sender<ShardMessage>>,
    pub clock: Arc<dyn Clock>,
    pub batch_len_max: usize,
}

pub(crate) fn run(mut state: ShardState, context: ShardContext) {
    let ShardContext { inbox, peers, clock, batch_len_max } = context;
    // Commands for other shards, kept until their queue has room: a shard
    // never blocks on another, so queues always drain.
    let mut outbox: Vec<Vec<Command>> = peers.iter().map(|_| Vec::new()).collect();
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
            batch.apply(Command::Tick, now_ms).expect("a tick is never refused");
            for message in messages.drain(..) {
                match message {
                    ShardMessage::One { command, reply } => {
                        one_replies.push((reply, batch.apply(command, now_ms)));
                    }
                    ShardMessage::Many { commands, reply } => {
                        let outcomes = commands.into_iter().map(|command| batch.apply(command, now_ms)).collect();
                        many_replies.push((reply, outcomes));
                    }
                    ShardMessage::FromShard { commands } => {
                        for command in commands {
                            batch.apply(command, now_ms).expect("a shard-to-shard command is never refused");
                        }
                    }
                    ShardMessage::Stop => stopping = true,
                }
            }
        }
        state.publish();
        let me = usize::from(state.shard());
        for (id, participants) in state.drain_expired_carts() {
            for (shard, commands) in outbox.iter_mut().enumerate() {
                if shard != me && participants & (1 << shard) != 0 {
                    commands.push(Command::ExpirePart { id: id.clone() });
                }
            }
        }
        send_outbox(&mut outbox, &peers);
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

/// Sends each peer its pending commands as one message. A full queue keeps
/// them for the next loop turn; a stopped peer drops them (the part's own
/// deadline expires it instead).
fn send_outbox(outbox: &mut [Vec<Command>], peers: &[Sender<ShardMessage>]) {
    for (commands, peer) in outbox.iter_mut().zip(peers) {
        if commands.is_empty() {
            continue;
        }
        let message = ShardMessage::FromShard { commands: std::mem::take(commands) };
        match peer.try_send(message) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(ShardMessage::FromShard { commands: kept })) => *commands = kept,
            Err(TrySendError::Full(_)) => unreachable!("try_send hands back the message it was given"),
        }
    }
}
