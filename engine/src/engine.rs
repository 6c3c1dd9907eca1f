//! The engine: starts one thread per shard and coordinates requests that
//! need more than one command. Every reservation id has a home shard (the
//! id's hash picks it) that dedupes the id and decides the cart's fate.
//! A cart whose lines all live at home is one message to one shard. Other
//! carts follow the protocol in ARCHITECTURE.md ("Cross-shard carts"): parts
//! away from home are held first and the home part last, so that "the home
//! part exists" means "the cart is complete"; commit and release are decided
//! at home and then carried to the parts.
//!
//! Callers may be async (`submit`, `submit_batch`) or blocking (the
//! `_blocking` twins, which drive the same futures to completion).

use crate::clock::Clock;
use crate::command::{Command, PartOutcome, PartReply, PartView, ReservationState};
use crate::hash::{cart_fingerprint, key_hash, shard_of};
use crate::ids::{ReservationId, Sku};
use crate::limits::{
    BATCH_LEN_MAX_DEFAULT, BATCH_REQUESTS_MAX, CART_GRACE_MS_DEFAULT, QUEUE_LEN_MAX_DEFAULT, RETENTION_MS_DEFAULT,
    SHARDS_MAX, TTL_MS_DEFAULT,
};
use crate::read_view::ReadView;
use crate::rejection::Rejection;
use crate::request::{validate_stock, CartLine, Hold, Outcome, Reply, Request, ReservationView, ReserveRequest};
use crate::shard::{self, ShardContext, ShardMessage};
use crate::state::{ShardConfig, ShardState};
use crossbeam_channel::{Sender, TrySendError};
use futures::future::join_all;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub shards: usize,
    pub queue_len_max: usize,
    pub batch_len_max: usize,
    pub ttl_ms_default: u64,
    pub retention_ms: u64,
    pub cart_grace_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        EngineConfig {
            shards: cores.min(SHARDS_MAX),
            queue_len_max: QUEUE_LEN_MAX_DEFAULT,
            batch_len_max: BATCH_LEN_MAX_DEFAULT,
            ttl_ms_default: TTL_MS_DEFAULT,
            retention_ms: RETENTION_MS_DEFAULT,
            cart_grace_ms: CART_GRACE_MS_DEFAULT,
        }
    }
}

/// Cross-shard reserves of one id are serialised by one of these stripes, so
/// two concurrent attempts never interleave their holds and aborts.
const CART_STRIPES: usize = 256;

pub struct Engine {
    config: EngineConfig,
    queues: Vec<Sender<ShardMessage>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    read_view: ReadView,
    cart_stripes: Box<[tokio::sync::Mutex<()>]>,
    closed: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
enum Decision {
    Commit,
    Release,
}

impl Engine {
    pub fn start(config: EngineConfig, clock: Arc<dyn Clock>) -> Engine {
        assert!((1..=SHARDS_MAX).contains(&config.shards), "1..={SHARDS_MAX} shards, got {}", config.shards);
        assert!(config.queue_len_max > 0 && config.batch_len_max > 0);
        let (queues, inboxes): (Vec<_>, Vec<_>) =
            (0..config.shards).map(|_| crossbeam_channel::bounded(config.queue_len_max)).unzip();
        let mut threads = Vec::with_capacity(config.shards);
        let mut indexes = Vec::with_capacity(config.shards);
        for (shard, inbox) in inboxes.into_iter().enumerate() {
            let state = ShardState::new(ShardConfig {
                shard: shard as u16,
                retention_ms: config.retention_ms,
                cart_grace_ms: config.cart_grace_ms,
            });
            indexes.push(state.shared_index());
            let context = ShardContext {
                inbox,
                peers: queues.clone(),
                clock: Arc::clone(&clock),
                batch_len_max: config.batch_len_max,
            };
            let thread = std::thread::Builder::new()
                .name(format!("stockd-shard-{shard}"))
                .spawn(move || shard::run(state, context))
                .expect("the OS can start a shard thread");
            threads.push(thread);
        }
        Engine {
            config,
            queues,
            threads: Mutex::new(threads),
            read_view: ReadView::new(indexes),
            cart_stripes: (0..CART_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            closed: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Durable counts of every SKU, readable without entering a shard queue.
    pub fn read_view(&self) -> &ReadView {
        &self.read_view
    }

    /// The shard that owns `sku`.
    pub fn shard_of_sku(&self, sku: &str) -> usize {
        shard_of(key_hash(sku), self.queues.len())
    }

    pub fn submit_blocking(&self, request: Request) -> Outcome {
        futures::executor::block_on(self.submit(request))
    }

    pub fn submit_batch_blocking(&self, requests: Vec<Request>) -> Vec<Outcome> {
        futures::executor::block_on(self.submit_batch(requests))
    }

    pub async fn submit(&self, request: Request) -> Outcome {
        match request {
            Request::SetStock { sku, on_hand, expected_version } => {
                validate_stock(on_hand)?;
                let shard = self.shard_of_sku(sku.as_str());
                sku_reply(self.send(shard, Command::SetStock { sku, on_hand, expected_version }).await)
            }
            Request::AdjustStock { sku, delta } => {
                validate_stock(delta.unsigned_abs())?;
                let shard = self.shard_of_sku(sku.as_str());
                sku_reply(self.send(shard, Command::AdjustStock { sku, delta }).await)
            }
            Request::GetSku { sku } => {
                let shard = self.shard_of_sku(sku.as_str());
                sku_reply(self.send(shard, Command::GetSku { sku }).await)
            }
            Request::Reserve(request) => self.reserve(request).await,
            Request::Commit { id } => self.decide(id, Decision::Commit).await,
            Request::Release { id } => self.decide(id, Decision::Release).await,
            Request::GetReservation { id } => self.get_reservation(id).await,
        }
    }

    /// Submits many requests and answers one outcome per request, in order.
    /// Requests that need one command on one shard travel as one queue
    /// message per shard and are applied in batch order on that shard;
    /// everything else runs concurrently. A batch is not a transaction:
    /// requests that depend on each other belong in separate batches.
    pub async fn submit_batch(&self, requests: Vec<Request>) -> Vec<Outcome> {
        if requests.len() > BATCH_REQUESTS_MAX {
            return vec![Err(Rejection::BatchTooLarge); requests.len()];
        }
        let shard_count = self.queues.len();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
        let mut commands: Vec<Vec<Command>> = (0..shard_count).map(|_| Vec::new()).collect();
        let mut finishers: Vec<Vec<(usize, Finish)>> = (0..shard_count).map(|_| Vec::new()).collect();
        let mut general: Vec<(usize, FollowUp)> = Vec::new();
        for (position, request) in requests.into_iter().enumerate() {
            match self.plan_one_command(request) {
                Planned::OneCommand { shard, command, finish } => {
                    commands[shard].push(command);
                    finishers[shard].push((position, finish));
                }
                Planned::General(request) => general.push((position, FollowUp::Request(request))),
                Planned::Refused(rejection) => outcomes[position] = Some(Err(rejection)),
            }
        }
        let sent = commands
            .into_iter()
            .enumerate()
            .filter(|(_, commands)| !commands.is_empty())
            .map(|(shard, commands)| self.send_many(shard, commands));
        let replies = join_all(sent).await;
        let answered = finishers.into_iter().filter(|finishers| !finishers.is_empty());
        for (shard_replies, shard_finishers) in replies.into_iter().zip(answered) {
            for (reply, (position, finish)) in shard_replies.into_iter().zip(shard_finishers) {
                match self.finish_one_command(finish, reply) {
                    Ok(outcome) => outcomes[position] = Some(outcome),
                    Err(follow_up) => general.push((position, follow_up)),
                }
            }
        }
        let general_outcomes = join_all(
            general.into_iter().map(|(position, follow_up)| async move { (position, self.follow_up(follow_up).await) }),
        )
        .await;
        for (position, outcome) in general_outcomes {
            outcomes[position] = Some(outcome);
        }
        outcomes.into_iter().map(|outcome| outcome.expect("every request was answered")).collect()
    }

    /// Checks every shard's invariants by a full scan (panics in the shard,
    /// and so answers `ShuttingDown`, on a breach). For tests and SREs.
    pub async fn audit(&self) -> Result<(), Rejection> {
        for shard in 0..self.queues.len() {
            self.send(shard, Command::Audit).await?;
        }
        Ok(())
    }

    /// Stops accepting requests, lets every shard finish its queue, and joins
    /// the shard threads. Idempotent; `Drop` calls it too.
    pub fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for queue in &self.queues {
            // A shard that already exited has dropped its inbox; nothing to stop.
            let _ = queue.send(ShardMessage::Stop);
        }
        for thread in self.threads.lock().drain(..) {
            if let Err(panic) = thread.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }

    // ---- single commands -------------------------------------------------

    async fn send(&self, shard: usize, command: Command) -> PartOutcome {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Rejection::ShuttingDown);
        }
        let (reply, answer) = oneshot::channel();
        match self.queues[shard].try_send(ShardMessage::One { command, reply }) {
            Ok(()) => answer.await.unwrap_or(Err(Rejection::ShuttingDown)),
            Err(TrySendError::Full(_)) => Err(Rejection::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Rejection::ShuttingDown),
        }
    }

    /// For the second half of a protocol whose first half was applied: waits
    /// for queue space instead of answering `Busy`, and ignores `closed` so a
    /// shutdown still lets a decided commit reach its parts. Blocks the
    /// calling thread while the queue is full (shards never wait on each
    /// other, so queues always drain).
    async fn send_must_finish(&self, shard: usize, command: Command) -> PartOutcome {
        let (reply, answer) = oneshot::channel();
        match self.queues[shard].send(ShardMessage::One { command, reply }) {
            Ok(()) => answer.await.unwrap_or(Err(Rejection::ShuttingDown)),
            Err(_) => Err(Rejection::ShuttingDown),
        }
    }

    async fn send_many(&self, shard: usize, commands: Vec<Command>) -> Vec<PartOutcome> {
        let count = commands.len();
        if self.closed.load(Ordering::Relaxed) {
            return vec![Err(Rejection::ShuttingDown); count];
        }
        let (reply, answer) = oneshot::channel();
        match self.queues[shard].try_send(ShardMessage::Many { commands, reply }) {
            Ok(()) => answer.await.unwrap_or_else(|_| vec![Err(Rejection::ShuttingDown); count]),
            Err(TrySendError::Full(_)) => vec![Err(Rejection::Busy); count],
            Err(TrySendError::Disconnected(_)) => vec![Err(Rejection::ShuttingDown); count],
        }
    }

    // ---- reservations ----------------------------------------------------

    /// The shard that dedupes reservation `id` and decides its fate.
    pub fn home_of(&self, id: &ReservationId) -> u16 {
        shard_of(key_hash(id.as_str()), self.queues.len()) as u16
    }

    async fn reserve(&self, mut request: ReserveRequest) -> Outcome {
        let ttl_ms = request.validate(self.config.ttl_ms_default)?;
        let fingerprint = cart_fingerprint(request.lines.iter().map(|line| (line.sku.as_str(), line.qty)));
        let id = request.id;
        let home = self.home_of(&id);
        let cart = CartPlan::new(request.lines, self.queues.len(), home);
        if cart.away.is_empty() {
            let command = reserve_command(id, fingerprint, cart.home_lines, ttl_ms, home, cart.participants);
            return held_reply(self.send(home as usize, command).await);
        }
        let stripe = key_hash(id.as_str()) as usize % CART_STRIPES;
        let _one_attempt_per_id = self.cart_stripes[stripe].lock().await;
        // A second round runs only after the first cleared orphans, which
        // cannot reappear while this stripe is held.
        for _round in 0..2 {
            let holds = join_all(cart.away.iter().map(|(shard, lines)| {
                let command = reserve_command(id.clone(), fingerprint, lines.clone(), ttl_ms, home, cart.participants);
                self.send(*shard as usize, command)
            }))
            .await;
            let mut refusal = None;
            let mut finished_part_seen = false;
            for hold in holds {
                match hold {
                    Ok(PartReply::Held { state: ReservationState::Held, .. }) => {}
                    Ok(PartReply::Held { .. }) => finished_part_seen = true,
                    Ok(other) => panic!("a reserve answered {other:?}"),
                    Err(rejection) => {
                        refusal.get_or_insert(rejection);
                    }
                }
            }
            if refusal.is_some() || finished_part_seen {
                // The home part exists exactly when the cart was completed:
                // it alone says whether this is a retry or a new cart.
                match self.send(home as usize, Command::GetReservation { id: id.clone() }).await {
                    Ok(PartReply::Part(view)) if view.fingerprint == fingerprint => {
                        return Ok(Reply::Held(Hold { expires_at_ms: view.expires_at_ms, replayed: true }));
                    }
                    Ok(PartReply::Part(_)) => {
                        self.abort_away_parts(&id, fingerprint, &cart.away).await;
                        return Err(Rejection::IdempotencyKeyReused);
                    }
                    Err(Rejection::UnknownReservation) => {
                        // Parts without a home are this attempt's or orphans
                        // of an attempt that never completed (or forgotten).
                        self.abort_away_parts(&id, fingerprint, &cart.away).await;
                        match refusal {
                            Some(rejection) => return Err(rejection),
                            None => continue,
                        }
                    }
                    Ok(other) => panic!("a reservation read answered {other:?}"),
                    Err(rejection) => return Err(refusal.unwrap_or(rejection)),
                }
            }
            let command =
                reserve_command(id.clone(), fingerprint, cart.home_lines.clone(), ttl_ms, home, cart.participants);
            let outcome = self.send(home as usize, command).await;
            if outcome.is_err() {
                self.abort_away_parts(&id, fingerprint, &cart.away).await;
            }
            return held_reply(outcome);
        }
        unreachable!("orphans cannot reappear while the cart's stripe is held")
    }

    async fn abort_away_parts(&self, id: &ReservationId, fingerprint: u128, away: &[(u16, Vec<(Sku, u32)>)]) {
        let aborts = away
            .iter()
            .map(|(shard, _)| self.send_must_finish(*shard as usize, Command::Abort { id: id.clone(), fingerprint }));
        for outcome in join_all(aborts).await {
            // An abort fails only if its shard is gone, and with it the hold
            // it was meant to remove.
            debug_assert!(matches!(outcome, Ok(PartReply::Done) | Err(Rejection::ShuttingDown)), "{outcome:?}");
        }
    }

    async fn decide(&self, id: ReservationId, decision: Decision) -> Outcome {
        let home = self.home_of(&id);
        let reply = self.send(home as usize, decision.home_command(id.clone())).await?;
        let PartReply::Decided { participants } = reply else {
            panic!("a decision answered {reply:?}");
        };
        self.carry_decision(id, home, participants, decision).await
    }

    /// Carries a decision the home shard recorded to every other part. Safe
    /// to repeat: parts apply a decision once and then answer `Done`.
    async fn carry_decision(&self, id: ReservationId, home: u16, participants: u64, decision: Decision) -> Outcome {
        let parts = participant_shards(participants).filter(|&shard| shard != home);
        let carried =
            join_all(parts.map(|shard| self.send_must_finish(shard as usize, decision.part_command(id.clone()))));
        for outcome in carried.await {
            outcome?;
        }
        Ok(decision.reply())
    }

    async fn get_reservation(&self, id: ReservationId) -> Outcome {
        let home = self.home_of(&id);
        let reply = self.send(home as usize, Command::GetReservation { id: id.clone() }).await?;
        let PartReply::Part(view) = reply else {
            panic!("a reservation read answered {reply:?}");
        };
        let PartView { participants, state, expires_at_ms, mut lines, .. } = view;
        for shard in participant_shards(participants).filter(|&shard| shard != home) {
            match self.send(shard as usize, Command::GetReservation { id: id.clone() }).await? {
                PartReply::Part(part) => lines.extend(part.lines),
                other => panic!("a reservation read answered {other:?}"),
            }
        }
        lines.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let lines = lines.into_iter().map(|(sku, qty)| CartLine { sku, qty }).collect();
        Ok(Reply::Reservation(ReservationView { id, state, expires_at_ms, lines }))
    }

    // ---- batch planning --------------------------------------------------

    /// Turns a request into one command for one shard when that is all it
    /// needs; otherwise leaves it to the general path.
    fn plan_one_command(&self, request: Request) -> Planned {
        match request {
            Request::SetStock { ref sku, on_hand, .. } => match validate_stock(on_hand) {
                Ok(()) => self.plan_sku_command(sku.clone(), request),
                Err(rejection) => Planned::Refused(rejection),
            },
            Request::AdjustStock { ref sku, delta } => match validate_stock(delta.unsigned_abs()) {
                Ok(()) => self.plan_sku_command(sku.clone(), request),
                Err(rejection) => Planned::Refused(rejection),
            },
            Request::GetSku { ref sku } => self.plan_sku_command(sku.clone(), request),
            Request::Reserve(mut reserve) => {
                let ttl_ms = match reserve.validate(self.config.ttl_ms_default) {
                    Ok(ttl_ms) => ttl_ms,
                    Err(rejection) => return Planned::Refused(rejection),
                };
                let home = self.home_of(&reserve.id);
                let shard_count = self.queues.len();
                let at_home = |line: &CartLine| shard_of(key_hash(line.sku.as_str()), shard_count) == usize::from(home);
                if !reserve.lines.iter().all(at_home) {
                    return Planned::General(Request::Reserve(reserve));
                }
                let fingerprint = cart_fingerprint(reserve.lines.iter().map(|line| (line.sku.as_str(), line.qty)));
                let cart = CartPlan::new(reserve.lines, shard_count, home);
                let command =
                    reserve_command(reserve.id, fingerprint, cart.home_lines, ttl_ms, home, cart.participants);
                Planned::OneCommand { shard: home as usize, command, finish: Finish::Reserve }
            }
            Request::Commit { id } => self.plan_decision(id, Decision::Commit),
            Request::Release { id } => self.plan_decision(id, Decision::Release),
            Request::GetReservation { id } => {
                let home = self.home_of(&id);
                let command = Command::GetReservation { id: id.clone() };
                Planned::OneCommand { shard: home as usize, command, finish: Finish::Reservation { id } }
            }
        }
    }

    fn plan_decision(&self, id: ReservationId, decision: Decision) -> Planned {
        let home = self.home_of(&id);
        let command = decision.home_command(id.clone());
        Planned::OneCommand { shard: home as usize, command, finish: Finish::Decision { id, home, decision } }
    }

    fn plan_sku_command(&self, sku: Sku, request: Request) -> Planned {
        let shard = self.shard_of_sku(sku.as_str());
        let command = match request {
            Request::SetStock { sku, on_hand, expected_version } => {
                Command::SetStock { sku, on_hand, expected_version }
            }
            Request::AdjustStock { sku, delta } => Command::AdjustStock { sku, delta },
            Request::GetSku { sku } => Command::GetSku { sku },
            other => unreachable!("not a SKU request: {other:?}"),
        };
        Planned::OneCommand { shard, command, finish: Finish::Sku }
    }

    /// The outcome of a one-command request, or the request to run on the
    /// general path when its cart spans shards.
    fn finish_one_command(&self, finish: Finish, reply: PartOutcome) -> Result<Outcome, FollowUp> {
        match finish {
            Finish::Sku => Ok(sku_reply(reply)),
            Finish::Reserve => Ok(held_reply(reply)),
            Finish::Decision { id, home, decision } => match reply {
                Ok(PartReply::Decided { participants }) if participants == 1 << home => Ok(Ok(decision.reply())),
                Ok(PartReply::Decided { participants }) => Err(FollowUp::Carry { id, home, participants, decision }),
                Ok(other) => panic!("a decision answered {other:?}"),
                Err(rejection) => Ok(Err(rejection)),
            },
            Finish::Reservation { id } => match reply {
                Ok(PartReply::Part(view)) if view.participants == 1 << view.home => {
                    let lines = view.lines.into_iter().map(|(sku, qty)| CartLine { sku, qty }).collect();
                    let view = ReservationView { id, state: view.state, expires_at_ms: view.expires_at_ms, lines };
                    Ok(Ok(Reply::Reservation(view)))
                }
                Ok(PartReply::Part(_)) => Err(FollowUp::Request(Request::GetReservation { id })),
                Ok(other) => panic!("a reservation read answered {other:?}"),
                Err(rejection) => Ok(Err(rejection)),
            },
        }
    }

    async fn follow_up(&self, follow_up: FollowUp) -> Outcome {
        match follow_up {
            FollowUp::Request(request) => self.submit(request).await,
            FollowUp::Carry { id, home, participants, decision } => {
                self.carry_decision(id, home, participants, decision).await
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Decision {
    fn home_command(self, id: ReservationId) -> Command {
        match self {
            Decision::Commit => Command::Commit { id },
            Decision::Release => Command::Release { id },
        }
    }

    fn part_command(self, id: ReservationId) -> Command {
        match self {
            Decision::Commit => Command::CommitPart { id },
            Decision::Release => Command::ReleasePart { id },
        }
    }

    fn reply(self) -> Reply {
        match self {
            Decision::Commit => Reply::Committed,
            Decision::Release => Reply::Released,
        }
    }
}

enum Planned {
    OneCommand { shard: usize, command: Command, finish: Finish },
    General(Request),
    Refused(Rejection),
}

/// How to turn a one-command request's reply into its outcome.
enum Finish {
    Sku,
    Reserve,
    Decision { id: ReservationId, home: u16, decision: Decision },
    Reservation { id: ReservationId },
}

/// Work a batch hands to the general path.
enum FollowUp {
    Request(Request),
    Carry { id: ReservationId, home: u16, participants: u64, decision: Decision },
}

/// A validated cart split by shard: the home part (the id's shard; possibly
/// no lines) and the parts away from home, in shard order.
struct CartPlan {
    home_lines: Vec<(Sku, u32)>,
    away: Vec<(u16, Vec<(Sku, u32)>)>,
    participants: u64,
}

impl CartPlan {
    fn new(lines: Vec<CartLine>, shard_count: usize, home: u16) -> CartPlan {
        let mut home_lines = Vec::with_capacity(lines.len());
        let mut away: Vec<(u16, Vec<(Sku, u32)>)> = Vec::new();
        for line in lines {
            let shard = shard_of(key_hash(line.sku.as_str()), shard_count) as u16;
            let part = if shard == home {
                &mut home_lines
            } else if let Some(index) = away.iter().position(|(part_shard, _)| *part_shard == shard) {
                &mut away[index].1
            } else {
                away.push((shard, Vec::new()));
                &mut away.last_mut().expect("just pushed").1
            };
            part.push((line.sku, line.qty));
        }
        away.sort_unstable_by_key(|(shard, _)| *shard);
        let participants = away.iter().fold(1u64 << home, |set, (shard, _)| set | (1 << shard));
        CartPlan { home_lines, away, participants }
    }
}

fn reserve_command(
    id: ReservationId,
    fingerprint: u128,
    lines: Vec<(Sku, u32)>,
    ttl_ms: u64,
    home: u16,
    participants: u64,
) -> Command {
    Command::Reserve { id, fingerprint, lines, ttl_ms, home, participants }
}

fn participant_shards(participants: u64) -> impl Iterator<Item = u16> {
    (0..64u16).filter(move |shard| participants & (1 << shard) != 0)
}

fn held_reply(outcome: PartOutcome) -> Outcome {
    match outcome? {
        PartReply::Held { expires_at_ms, replayed, .. } => Ok(Reply::Held(Hold { expires_at_ms, replayed })),
        other => panic!("a reserve answered {other:?}"),
    }
}

fn sku_reply(outcome: PartOutcome) -> Outcome {
    match outcome? {
        PartReply::Sku(counts) => Ok(Reply::Sku(counts)),
        other => panic!("a SKU command answered {other:?}"),
    }
}
