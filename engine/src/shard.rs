//! A shard's thread: the only owner of its `ShardState`. Each loop turn it
//! takes what waits in its two inboxes (messages from other shards first,
//! then up to `batch_len_max` client commands), stamps them with one time,
//! ticks, applies everything, appends every command that changed the state
//! to its `Durability`, and ends the batch. The batch's *completion*
//! (publishing its counts, its messages to other shards, its replies) runs
//! only once the batch is durable: no caller, reader or peer ever sees state
//! a crash could take back.
//!
//! Two inboxes: clients use a bounded queue (full = an immediate `Busy`);
//! shards use an unbounded one, so a shard never blocks on another (no
//! deadlock). What can wait there grows with the carts in flight: their
//! parts (at most `pending_carts_max` carts per home), and their decisions
//! and aborts, which the client queue's bound limits only indirectly (a
//! waiter moved to `Carts::settling` has left that queue). A turn takes
//! every peer message waiting, so none is starved.

use crate::carts::{CartRequest, Carts};
use crate::clock::Clock;
use crate::command::{CartLine, Command, PartOutcome, PartReply, Query, ReservePart};
use crate::ids::{ReservationId, Sku};
use crate::inbox::ShardEnd;
use crate::limits::{IDLE_TICK_MS, TICK_EVENTS_MAX};
use crate::read_view::{SharedSkuIndex, SkuCounts};
use crate::rejection::Rejection;
use crate::snapshot::{ImageRoom, StateImage};
use crate::state::{publish, Batch, ShardState, WARM_WINDOW};
use crate::stats::ShardStats;
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long an idle shard waits between two slices of a capture.
const CAPTURE_IDLE_MS: u64 = 1;

/// One client request for one shard.
pub(crate) enum ClientOp {
    /// SetStock, AdjustStock, Commit, Release.
    Apply(Command),
    /// A cart whose every line lives on its home shard.
    ReserveLocal {
        id: ReservationId,
        fingerprint: u128,
        lines: Vec<CartLine>,
        ttl_ms: u64,
    },
    /// A cart with lines on other shards, sent to its home.
    ReserveCart(CartRequest),
    Query(Query),
    /// Write a snapshot of the shard now (answered once it is durable).
    Snapshot,
    /// Copy the shard's whole state (answered with an image).
    Capture,
}

pub(crate) enum ClientMessage {
    One {
        op: ClientOp,
        reply: oneshot::Sender<PartOutcome>,
    },
    Many {
        ops: Vec<ClientOp>,
        reply: oneshot::Sender<Vec<PartOutcome>>,
    },
    /// Finish what is queued, then exit.
    Stop,
}

impl ClientOp {
    /// The SKUs this op looks up on this shard.
    fn skus(&self) -> impl Iterator<Item = &Sku> {
        let (lines, single): (&[CartLine], Option<&Sku>) = match self {
            ClientOp::ReserveLocal { lines, .. } => (lines, None),
            ClientOp::ReserveCart(cart) => (&cart.home_lines, None),
            ClientOp::Apply(Command::SetStock { sku, .. } | Command::AdjustStock { sku, .. }) => (&[], Some(sku)),
            ClientOp::Query(Query::GetSku { sku }) => (&[], Some(sku)),
            _ => (&[], None),
        };
        lines.iter().map(|line| &line.sku).chain(single)
    }

    /// The reservation this op looks up, if any.
    fn reservation_id(&self) -> Option<&ReservationId> {
        match self {
            ClientOp::Apply(command) => command.reservation_id(),
            ClientOp::ReserveLocal { id, .. } => Some(id),
            ClientOp::ReserveCart(cart) => Some(&cart.id),
            ClientOp::Query(Query::GetReservation { id }) => Some(id),
            _ => None,
        }
    }
}

impl ClientMessage {
    fn ops(&self) -> &[ClientOp] {
        match self {
            ClientMessage::One { op, .. } => std::slice::from_ref(op),
            ClientMessage::Many { ops, .. } => ops,
            ClientMessage::Stop => &[],
        }
    }

    fn op_count(&self) -> usize {
        self.ops().len()
    }
}

/// Shard-to-shard messages of the cart protocol (see `carts`).
#[derive(Debug)]
pub(crate) enum PeerMessage {
    /// From a cart's home: hold this part, then answer with `PartAnswer`.
    ReservePart(ReservePart),
    /// To a cart's home: how its part on `shard` went.
    PartAnswer { id: ReservationId, shard: u16, outcome: PartOutcome },
    /// From a cart's home: carry out its decision or abort the part, then
    /// acknowledge with `Settled`.
    Follow { command: Command, home: u16 },
    /// To a cart's home: one `Follow` about `id` is applied and durable.
    Settled { id: ReservationId },
}

/// What one shard sends another after a batch: the messages, and the
/// sender's shard time. The receiver's time moves up to it, so that each
/// step of the cart protocol is stamped no earlier than the step that caused
/// it, whatever the clock does between the threads' readings (a clock
/// stepped back, or read on each side of a tick): a cut by time then keeps
/// every cart whole (see `tools::replay_into`).
pub(crate) struct PeerMail {
    pub sent_at_ms: u64,
    pub messages: Vec<PeerMessage>,
}

impl PeerMail {
    /// Takes the messages into `peers`, and the sender's time into `now_ms`.
    fn receive(self, peers: &mut Vec<PeerMessage>, now_ms: &mut u64) {
        *now_ms = (*now_ms).max(self.sent_at_ms);
        peers.extend(self.messages);
    }
}

/// Who waits for an outcome that may come a few batches later.
pub(crate) enum Waiter {
    One(oneshot::Sender<PartOutcome>),
    /// Position `position` of the `Many` reply `reply` in `ManyReplies`.
    Many {
        reply: usize,
        position: usize,
    },
}

/// `Many` replies with outcomes still to come (a cart in progress).
#[derive(Default)]
pub(crate) struct ManyReplies {
    slots: Vec<Option<ManyReply>>,
    free: Vec<usize>,
}

struct ManyReply {
    outcomes: Vec<PartOutcome>,
    missing: usize,
    reply: oneshot::Sender<Vec<PartOutcome>>,
}

impl ManyReplies {
    fn insert(&mut self, reply: ManyReply) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(reply);
                key
            }
            None => {
                self.slots.push(Some(reply));
                self.slots.len() - 1
            }
        }
    }

    /// Fills one outcome; hands the reply to `done` when it was the last.
    fn fill(&mut self, key: usize, position: usize, outcome: PartOutcome, done: &mut Completion) {
        let reply = self.slots[key].as_mut().expect("a waiter's reply is live");
        reply.outcomes[position] = outcome;
        reply.missing -= 1;
        if reply.missing == 0 {
            let reply = self.slots[key].take().expect("checked above");
            self.free.push(key);
            done.many_replies.push((reply.reply, reply.outcomes));
        }
    }

    /// Sends every unfinished reply as it stands (shutdown: the unfilled
    /// positions still say `shutting_down`).
    fn abandon(&mut self, done: &mut Completion) {
        for reply in self.slots.drain(..).flatten() {
            done.many_replies.push((reply.reply, reply.outcomes));
        }
        self.free.clear();
    }
}

/// Everything a batch hands out once it is durable.
#[derive(Default)]
pub(crate) struct Completion {
    pub published: Vec<(u32, SkuCounts)>,
    pub one_replies: Vec<(oneshot::Sender<PartOutcome>, PartOutcome)>,
    pub many_replies: Vec<(oneshot::Sender<Vec<PartOutcome>>, Vec<PartOutcome>)>,
    /// Messages for each shard, by shard index.
    pub peer_out: Vec<Vec<PeerMessage>>,
    /// The shard time of the batch that sent them.
    pub sent_at_ms: u64,
    /// A snapshot of the state after this batch, to write once it is durable.
    pub snapshot: Option<SnapshotJob>,
}

/// A captured state waiting to be written, and who waits for it.
pub(crate) struct SnapshotJob {
    pub image: StateImage,
    pub replies: Vec<oneshot::Sender<PartOutcome>>,
}

impl SnapshotJob {
    pub fn answer(self, outcome: PartOutcome) {
        for reply in self.replies {
            let _ = reply.send(outcome.clone());
        }
    }
}

impl Completion {
    pub fn with_shards(shards: usize) -> Completion {
        Completion { peer_out: (0..shards).map(|_| Vec::new()).collect(), ..Completion::default() }
    }

    /// Publishes, tells the other shards, then replies; leaves the buffers
    /// empty for reuse.
    pub fn deliver(&mut self, target: &CompletionTarget) {
        publish(&target.index, &self.published);
        self.published.clear();
        for (messages, peer) in self.peer_out.iter_mut().zip(&target.peers) {
            if !messages.is_empty() {
                // A stopped peer has dropped its inbox; recovery finishes
                // whatever it was told.
                let _ = peer.send(PeerMail { sent_at_ms: self.sent_at_ms, messages: std::mem::take(messages) });
            }
        }
        // A caller that stopped waiting dropped its receiver; nothing to do.
        for (reply, outcome) in self.one_replies.drain(..) {
            let _ = reply.send(outcome);
        }
        for (reply, outcomes) in self.many_replies.drain(..) {
            let _ = reply.send(outcomes);
        }
    }

    /// The batch could not be made durable: every caller hears so, nothing
    /// is published and no peer is told.
    pub fn fail(&mut self, rejection: &Rejection) {
        if let Some(snapshot) = self.snapshot.take() {
            snapshot.answer(Err(rejection.clone()));
        }
        self.published.clear();
        self.peer_out.iter_mut().for_each(Vec::clear);
        for (reply, _) in self.one_replies.drain(..) {
            let _ = reply.send(Err(rejection.clone()));
        }
        for (reply, outcomes) in self.many_replies.drain(..) {
            let _ = reply.send(vec![Err(rejection.clone()); outcomes.len()]);
        }
    }
}

/// Where a completion delivers: the shard's read view and every shard's
/// peer inbox.
#[derive(Clone)]
pub(crate) struct CompletionTarget {
    pub index: SharedSkuIndex,
    pub peers: Vec<Sender<PeerMail>>,
}

/// How a shard makes its batches durable before their completion runs.
pub(crate) trait Durability: Send {
    /// Records a command that changed the state, stamped with the batch time.
    fn append(&mut self, command: &Command, now_ms: u64);
    /// Ends the batch: `completion` runs once everything appended so far is
    /// durable. Returns an empty completion for the next batch.
    fn end_batch(&mut self, completion: Completion) -> Completion;
    /// Set once the log failed: the shard stops acknowledging anything.
    fn failure(&self) -> Option<Rejection>;
    /// Whether enough log was written since the last snapshot to take one.
    fn wants_snapshot(&self) -> bool;
    /// An empty image to capture a snapshot into, once it is ready: the
    /// first call asks for one with `room`, a later turn's call gets it.
    fn snapshot_image(&mut self, room: &dyn Fn() -> ImageRoom) -> Option<StateImage>;
    /// The LSN of the last record appended (`None`: there is no log).
    fn last_lsn(&self) -> Option<u64>;
    /// Waits until every ended batch has completed.
    fn close(self: Box<Self>);
}

/// No log: a batch is complete the moment it is applied.
pub(crate) struct InMemory {
    pub target: CompletionTarget,
}

impl Durability for InMemory {
    fn append(&mut self, _command: &Command, _now_ms: u64) {}

    fn end_batch(&mut self, mut completion: Completion) -> Completion {
        completion.deliver(&self.target);
        completion
    }

    fn failure(&self) -> Option<Rejection> {
        None
    }

    fn wants_snapshot(&self) -> bool {
        false
    }

    fn snapshot_image(&mut self, _room: &dyn Fn() -> ImageRoom) -> Option<StateImage> {
        Some(StateImage::default())
    }

    fn last_lsn(&self) -> Option<u64> {
        None
    }

    fn close(self: Box<Self>) {}
}

/// What a shard thread is given.
pub(crate) struct ShardContext {
    pub client_inbox: ShardEnd,
    pub peer_inbox: Receiver<PeerMail>,
    pub clock: Arc<dyn Clock>,
    pub batch_len_max: usize,
    pub retention_ms: u64,
    pub pending_carts_max: usize,
    pub capture_slice: usize,
    pub shard_count: usize,
    pub durability: Box<dyn Durability>,
    /// Shard time never goes below this (the last time in the recovered log).
    pub now_ms_floor: u64,
    pub stats: Arc<ShardStats>,
}

/// One loop turn's view of the shard: the open batch and where its effects go.
pub(crate) struct Turn<'t, 's> {
    pub batch: Batch<'s>,
    pub now_ms: u64,
    pub retention_ms: u64,
    pub me: u16,
    /// A `Stop` was taken: no new cart starts (its parts could not finish).
    pub stopping: bool,
    log: &'t mut dyn Durability,
    done: &'t mut Completion,
    many: &'t mut ManyReplies,
    snapshot_waiters: &'t mut Vec<oneshot::Sender<PartOutcome>>,
    capture_waiters: &'t mut Vec<oneshot::Sender<PartOutcome>>,
}

impl Turn<'_, '_> {
    /// Applies a command and logs it if it changed the state.
    pub fn apply(&mut self, command: &Command) -> PartOutcome {
        let before = self.batch.mutations();
        let outcome = self.batch.apply(command, self.now_ms);
        if self.batch.mutations() != before {
            self.log.append(command, self.now_ms);
        }
        outcome
    }

    pub fn answer(&mut self, waiter: Waiter, outcome: PartOutcome) {
        match waiter {
            Waiter::One(reply) => self.done.one_replies.push((reply, outcome)),
            Waiter::Many { reply, position } => self.many.fill(reply, position, outcome, self.done),
        }
    }

    pub fn send(&mut self, shard: u16, message: PeerMessage) {
        self.done.sent_at_ms = self.now_ms;
        self.done.peer_out[usize::from(shard)].push(message);
    }

    /// A reserve of a cart's part, resolved at this shard's time.
    pub fn resolve_part(&self, id: ReservationId, fingerprint: u128, lines: Vec<CartLine>, ttl_ms: u64) -> ReservePart {
        let expires_at_ms = self.now_ms.saturating_add(ttl_ms);
        let forget_at_ms = expires_at_ms.saturating_add(self.retention_ms.max(1));
        ReservePart { id, fingerprint, lines, expires_at_ms, forget_at_ms, home: self.me, participants: 1 << self.me }
    }
}

pub(crate) fn run(mut state: ShardState, context: ShardContext) {
    let ShardContext {
        client_inbox: ShardEnd { queue: client_inbox, guard: _exit_guard },
        peer_inbox,
        clock,
        batch_len_max,
        retention_ms,
        pending_carts_max,
        capture_slice,
        shard_count,
        mut durability,
        now_ms_floor,
        stats,
    } = context;
    let me = state.shard();
    let mut carts = Carts::new(pending_carts_max);
    let mut many = ManyReplies::default();
    let mut done = Completion::with_shards(shard_count);
    // Reused across turns: the loop allocates nothing per command once warm.
    let mut clients: Vec<ClientMessage> = Vec::new();
    let mut peers: Vec<PeerMessage> = Vec::new();
    let mut snapshot_waiters = Vec::new();
    // Who waits for the snapshot being captured.
    let mut capturing_for = Vec::new();
    let mut capture_waiters = Vec::new();
    let mut now_ms = now_ms_floor;
    let mut stopping = false;
    loop {
        // A capture in progress goes on a slice per turn: an idle shard
        // copies one every millisecond (a request waits one slice at most,
        // and spinning through the copy would take a core from the HTTP
        // workers).
        let idle = Duration::from_millis(if state.is_capturing() { CAPTURE_IDLE_MS } else { IDLE_TICK_MS });
        wait_for_work(&client_inbox, &peer_inbox, idle, &mut clients, (&mut peers, &mut now_ms), &mut stopping);
        while let Ok(mail) = peer_inbox.try_recv() {
            mail.receive(&mut peers, &mut now_ms);
        }
        let mut op_count: usize = clients.iter().map(ClientMessage::op_count).sum();
        while op_count < batch_len_max {
            let Ok(message) = client_inbox.try_recv() else { break };
            op_count += message.op_count();
            clients.push(message);
        }
        // Shard time never goes backwards, whatever the clock does (and
        // never behind a peer's mail taken above: `PeerMail`).
        now_ms = now_ms.max(clock.now_ms());
        let failure = durability.failure();
        {
            let mut turn = Turn {
                batch: state.batch(),
                now_ms,
                retention_ms,
                me,
                stopping,
                log: durability.as_mut(),
                done: &mut done,
                many: &mut many,
                snapshot_waiters: &mut snapshot_waiters,
                capture_waiters: &mut capture_waiters,
            };
            if failure.is_none() {
                // Bounded, so a mass expiry never stalls the shard, yet in
                // proportion to the batch: every reservation needs a timer
                // event later, and forgets must keep pace with holds.
                let events_max = TICK_EVENTS_MAX + 2 * op_count;
                if let Some(tick) = turn.batch.tick(now_ms, events_max) {
                    turn.log.append(&tick, now_ms);
                    for notice in turn.batch.take_notices() {
                        carts.follow_notice(&mut turn, notice);
                    }
                }
                for message in peers.drain(..) {
                    handle_peer(&mut turn, &mut carts, message);
                }
            } else {
                // Nothing more is applied; do not let them pile up.
                peers.clear();
            }
            let mut messages = clients.drain(..);
            // Single-op messages ahead whose lookups are already warmed.
            let mut warmed = 0;
            while let Some(message) = messages.next() {
                if warmed == 0 {
                    warmed = warm_singles(&turn.batch, std::iter::once(&message).chain(messages.as_slice()));
                }
                warmed -= 1;
                match (message, &failure) {
                    (ClientMessage::Stop, _) => {
                        stopping = true;
                        turn.stopping = true;
                    }
                    (message, Some(rejection)) => refuse(message, rejection),
                    (message, None) => handle_client(&mut turn, &mut carts, message),
                }
            }
            // Stopping, or the log failed: nobody may wait for an answer that
            // will never come (after a failure, every answer of this batch
            // becomes `storage_failed`).
            if stopping || failure.is_some() {
                carts.abandon(&mut turn);
                turn.many.abandon(turn.done);
            }
        }
        state.take_published(&mut done.published);
        if !capture_waiters.is_empty() {
            let image = state.capture(durability.last_lsn().unwrap_or(0), now_ms);
            for reply in capture_waiters.drain(..) {
                done.one_replies.push((reply, Ok(PartReply::Image(Box::new(image.clone())))));
            }
        }
        if !state.is_capturing() && (!snapshot_waiters.is_empty() || durability.wants_snapshot()) {
            // Stopping: capture now rather than wait for prepared memory.
            let image =
                if stopping { Some(StateImage::default()) } else { durability.snapshot_image(&|| state.image_room()) };
            if let Some(image) = image {
                begin_snapshot(
                    &mut state,
                    image,
                    durability.as_ref(),
                    now_ms,
                    &mut snapshot_waiters,
                    &mut capturing_for,
                );
            }
        }
        if state.is_capturing() {
            // A stopping shard finishes the capture in this turn, for whoever
            // asked for a snapshot meanwhile too (there is no later turn).
            if stopping {
                capturing_for.append(&mut snapshot_waiters);
            }
            let budget = if stopping { usize::MAX } else { capture_slice };
            let began = std::time::Instant::now();
            if let Some(image) = state.continue_capture(budget) {
                done.snapshot = Some(SnapshotJob { image, replies: std::mem::take(&mut capturing_for) });
            }
            stats.snapshot_capture_us.record(began.elapsed().as_micros() as u64);
        }
        stats.record_turn(op_count, &state, carts.len());
        done = durability.end_batch(done);
        if stopping && client_inbox.is_empty() {
            durability.close();
            return;
        }
    }
}

/// Blocks until a message arrives or `idle` passes, unless work is already
/// waiting.
fn wait_for_work(
    client_inbox: &Receiver<ClientMessage>,
    peer_inbox: &Receiver<PeerMail>,
    idle: Duration,
    clients: &mut Vec<ClientMessage>,
    (peers, now_ms): (&mut Vec<PeerMessage>, &mut u64),
    stopping: &mut bool,
) {
    if !client_inbox.is_empty() || !peer_inbox.is_empty() || *stopping {
        return;
    }
    crossbeam_channel::select! {
        recv(client_inbox) -> message => match message {
            Ok(message) => clients.push(message),
            Err(_) => *stopping = true,
        },
        recv(peer_inbox) -> mail => {
            // Every shard holds a sender to every inbox, its own included,
            // so this inbox never disconnects while the shard runs.
            mail.expect("a shard holds a sender to its own peer inbox").receive(peers, now_ms);
        },
        default(idle) => {},
    }
}

fn handle_client(turn: &mut Turn<'_, '_>, carts: &mut Carts, message: ClientMessage) {
    match message {
        ClientMessage::One { op, reply } => {
            if let Some(outcome) = handle_op(turn, carts, op, Waiter::One(reply)) {
                unreachable!("handle_op answers a One waiter itself: {outcome:?}")
            }
        }
        ClientMessage::Many { ops, reply } => {
            let count = ops.len();
            let key = turn.many.insert(ManyReply {
                outcomes: vec![Err(Rejection::ShuttingDown); count],
                missing: count,
                reply,
            });
            let mut ops = ops.into_iter();
            for position in 0..count {
                if position % WARM_WINDOW == 0 {
                    warm(&turn.batch, ops.as_slice().iter().take(WARM_WINDOW));
                }
                let op = ops.next().expect("count ops");
                let waiter = Waiter::Many { reply: key, position };
                if let Some(outcome) = handle_op(turn, carts, op, waiter) {
                    unreachable!("handle_op answers a Many waiter itself: {outcome:?}")
                }
            }
        }
        ClientMessage::Stop => unreachable!("handled by the loop"),
    }
}

/// Looks up what `ops` will use, just before they are applied (`Batch::warm`).
fn warm<'o>(batch: &Batch<'_>, ops: impl Iterator<Item = &'o ClientOp> + Clone) {
    batch.warm(ops.clone().filter_map(ClientOp::reservation_id), ops.flat_map(ClientOp::skus));
}

/// Warms the single-op messages at the front of `messages`, up to
/// `WARM_WINDOW`, and returns how many messages that covers (at least one:
/// a `Many` message warms its own ops as it goes, in `handle_client`).
fn warm_singles<'m>(batch: &Batch<'_>, messages: impl Iterator<Item = &'m ClientMessage> + Clone) -> usize {
    let singles = messages.take(WARM_WINDOW).take_while(|message| matches!(message, ClientMessage::One { .. }));
    warm(batch, singles.clone().flat_map(ClientMessage::ops));
    singles.count().max(1)
}

/// Applies one op and answers its waiter, now or (a cart) once its parts
/// have answered. Always returns `None`; the `Option` keeps the match arms
/// uniform for the callers' checks.
fn handle_op(turn: &mut Turn<'_, '_>, carts: &mut Carts, op: ClientOp, waiter: Waiter) -> Option<PartOutcome> {
    match op {
        ClientOp::Apply(command) => {
            let outcome = turn.apply(&command);
            match command {
                // A decision answers once every part has carried it out.
                Command::Commit { id } | Command::Release { id } => {
                    for notice in turn.batch.take_notices() {
                        carts.follow_notice(turn, notice);
                    }
                    carts.answer_when_settled(turn, &id, waiter, outcome);
                }
                _ => turn.answer(waiter, outcome),
            }
        }
        ClientOp::ReserveLocal { id, .. } if carts.is_pending(&id) => turn.answer(waiter, Err(Rejection::Busy)),
        ClientOp::ReserveLocal { id, fingerprint, lines, ttl_ms } => {
            let part = turn.resolve_part(id, fingerprint, lines, ttl_ms);
            let outcome = turn.apply(&Command::Reserve(part));
            turn.answer(waiter, outcome);
        }
        ClientOp::ReserveCart(_) if turn.stopping => turn.answer(waiter, Err(Rejection::ShuttingDown)),
        ClientOp::ReserveCart(request) => carts.start(turn, request, waiter),
        ClientOp::Query(query) => {
            let outcome = turn.batch.query(&query);
            turn.answer(waiter, outcome);
        }
        ClientOp::Snapshot | ClientOp::Capture => match waiter {
            Waiter::One(reply) if matches!(op, ClientOp::Snapshot) => turn.snapshot_waiters.push(reply),
            Waiter::One(reply) => turn.capture_waiters.push(reply),
            Waiter::Many { .. } => unreachable!("snapshots and captures are sent one per shard"),
        },
    }
    None
}

/// Begins capturing the state after this batch (the capture goes on a
/// slice per turn; the image is written once the batch that completes it is
/// durable). `waiters` become `capturing_for`, answered when it is written.
fn begin_snapshot(
    state: &mut ShardState,
    image: StateImage,
    durability: &dyn Durability,
    now_ms: u64,
    waiters: &mut Vec<oneshot::Sender<PartOutcome>>,
    capturing_for: &mut Vec<oneshot::Sender<PartOutcome>>,
) {
    let Some(lsn) = durability.last_lsn() else {
        for reply in waiters.drain(..) {
            let _ =
                reply.send(Err(Rejection::StorageFailed { reason: "the engine runs without a data directory".into() }));
        }
        return;
    };
    state.begin_capture(image, lsn, now_ms);
    capturing_for.append(waiters);
}

fn handle_peer(turn: &mut Turn<'_, '_>, carts: &mut Carts, message: PeerMessage) {
    match message {
        PeerMessage::ReservePart(part) => {
            let home = part.home;
            let id = part.id.clone();
            let outcome = turn.apply(&Command::Reserve(part));
            turn.send(home, PeerMessage::PartAnswer { id, shard: turn.me, outcome });
        }
        PeerMessage::PartAnswer { id, shard, outcome } => carts.part_answered(turn, id, shard, outcome),
        PeerMessage::Follow { command, home } => {
            let outcome = turn.apply(&command);
            assert!(outcome.is_ok(), "a part refused its home's {command:?}: {outcome:?}");
            let id = follow_id(&command).clone();
            turn.send(home, PeerMessage::Settled { id });
        }
        PeerMessage::Settled { id } => carts.settled(turn, &id),
    }
}

fn follow_id(command: &Command) -> &ReservationId {
    match command {
        Command::CommitPart { id }
        | Command::ReleasePart { id }
        | Command::ExpirePart { id }
        | Command::Abort { id, .. } => id,
        other => unreachable!("not a command home sends a part: {other:?}"),
    }
}

/// The log failed: nothing more is acknowledged.
fn refuse(message: ClientMessage, rejection: &Rejection) {
    match message {
        ClientMessage::One { reply, .. } => {
            let _ = reply.send(Err(rejection.clone()));
        }
        ClientMessage::Many { ops, reply } => {
            let _ = reply.send(vec![Err(rejection.clone()); ops.len()]);
        }
        ClientMessage::Stop => {}
    }
}
