//! The engine: starts one thread per shard and routes every request to the
//! one shard that answers it. A SKU request goes to the SKU's shard; a
//! reservation request goes to the id's *home* shard, which dedupes the id,
//! decides the cart's fate, and coordinates carts spanning shards itself
//! (see `carts`). Every request is one message to one shard, except reading
//! a cross-shard reservation, which also reads its other parts.
//!
//! Callers may be async (`submit`, `submit_batch`) or blocking (the
//! `_blocking` twins, which drive the same futures to completion). Dropping
//! a future never leaves a cart half done: the shards finish the protocol.

use crate::batch_order::Wave;
use crate::carts::{participant_shards, CartRequest};
use crate::clock::Clock;
use crate::command::{Command, PartOutcome, PartReply, PartView, Query};
use crate::durable::Failure;
use crate::hash::{cart_fingerprint, shard_of};
use crate::ids::ReservationId;
use crate::inbox::{self, Inbox};
use crate::limits::{
    BATCH_LEN_MAX_DEFAULT, BATCH_REQUESTS_MAX, CAPTURE_SLICE_DEFAULT, PENDING_CARTS_MAX_DEFAULT, QUEUE_LEN_MAX_DEFAULT,
    RETENTION_MS_DEFAULT, SHARDS_MAX, TTL_MS_DEFAULT, TTL_MS_MAX, TTL_MS_MIN,
};
use crate::read_view::ReadView;
use crate::rejection::Rejection;
use crate::request::{validate_stock, Hold, Outcome, Reply, Request, ReservationView, ReserveRequest};
use crate::shard::{self, ClientMessage, ClientOp, CompletionTarget, Durability, InMemory, PeerMail, ShardContext};
use crate::state::{ShardConfig, ShardState};
use crate::stats::ShardStats;
use crate::store::DirLock;
use crossbeam_channel::Sender;
use futures::future::join_all;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub shards: usize,
    /// Depth of each shard's client queue, in messages.
    pub queue_len_max: usize,
    /// Client ops a shard applies between two durability points.
    pub batch_len_max: usize,
    pub ttl_ms_default: u64,
    /// How long a finished reservation is remembered past its deadline.
    pub retention_ms: u64,
    /// Cross-shard carts in progress per home shard.
    pub pending_carts_max: usize,
    /// SKUs and reservation slots a snapshot's capture copies per loop turn.
    pub capture_slice: usize,
}

impl Default for EngineConfig {
    /// Shards default to half the cores (at least one): each shard needs a
    /// core for its thread and its log's syncer, and the HTTP front end the
    /// rest. Measured on 2 cores: 1 shard serves 51.6k durable reserves/s
    /// over HTTP, 2 shards 42.4k (README.md, "Measured figures").
    fn default() -> EngineConfig {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        EngineConfig {
            shards: (cores / 2).clamp(1, SHARDS_MAX),
            queue_len_max: QUEUE_LEN_MAX_DEFAULT,
            batch_len_max: BATCH_LEN_MAX_DEFAULT,
            ttl_ms_default: TTL_MS_DEFAULT,
            retention_ms: RETENTION_MS_DEFAULT,
            pending_carts_max: PENDING_CARTS_MAX_DEFAULT,
            capture_slice: CAPTURE_SLICE_DEFAULT,
        }
    }
}

impl EngineConfig {
    fn check(&self) {
        assert!((1..=SHARDS_MAX).contains(&self.shards), "1..={SHARDS_MAX} shards, got {}", self.shards);
        let sizes = [self.queue_len_max, self.batch_len_max, self.pending_carts_max, self.capture_slice];
        assert!(sizes.iter().all(|&size| size > 0), "{self:?}");
        assert!(self.retention_ms > 0, "retention must be at least 1 ms");
        let ttl = self.ttl_ms_default;
        assert!(
            (TTL_MS_MIN..=TTL_MS_MAX).contains(&ttl),
            "the default TTL must be {TTL_MS_MIN}..={TTL_MS_MAX} ms, got {ttl}"
        );
    }
}

pub struct Engine {
    config: EngineConfig,
    clients: Vec<Inbox>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    read_view: ReadView,
    stats: Vec<Arc<ShardStats>>,
    closed: AtomicBool,
    store: OnceLock<StoreHandles>,
}

/// What an engine opened on a data directory keeps of it.
pub(crate) struct StoreHandles {
    pub failure: Arc<Failure>,
    pub retain_from_lsn: Vec<Arc<AtomicU64>>,
    pub _lock: Option<DirLock>,
    pub data_dir: PathBuf,
}

/// Requests of a batch a shard gets in one queue message at most: the
/// shard starts on the first chunk while the caller plans the rest, and
/// the caller reads the first answers while the shard applies the rest.
/// Measured (one caller, 4,096-request batches, no WAL): +10-12 % with
/// 256 or 1,024; with four callers 256 lost 2-4 % to the extra wake-ups
/// and 1,024 nothing. A `/v1/batch` of the default 1,000 ops at most
/// stays one message per shard and wave.
const BATCH_CHUNK: usize = 1_024;

/// A batch wave's requests on their way: each shard's requests are sent a
/// chunk (`BATCH_CHUNK`) at a time as they are planned.
struct WaveSend {
    /// By shard: requests not yet sent, and what each answers.
    open: Vec<(Vec<ClientOp>, Answers)>,
    /// Chunks sent, with what each of their requests answers.
    sent: Vec<(Dispatched, Answers)>,
}

/// For each request of a message: (its position in the batch, how to read
/// its answer).
type Answers = Vec<(usize, Expect)>;

/// A queue message sent, or refused before it reached the shard.
enum Dispatched {
    Sent(oneshot::Receiver<Vec<PartOutcome>>),
    Refused(Rejection),
}

/// How to read a shard's answer as the request's outcome.
enum Expect {
    Sku,
    Held,
    Decision,
    Reservation { id: ReservationId },
}

impl Engine {
    /// An engine with no log: state lives and dies with the process.
    pub fn start(config: EngineConfig, clock: Arc<dyn Clock>) -> Engine {
        let states = (0..config.shards).map(|shard| ShardState::new(ShardConfig { shard: shard as u16 })).collect();
        Engine::launch(config, clock, states, 0, |_, target, _| Box::new(InMemory { target }))
    }

    /// Starts a thread per shard state, each with the durability `make` gives it.
    pub(crate) fn launch(
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        states: Vec<ShardState>,
        now_ms_floor: u64,
        mut make: impl FnMut(usize, CompletionTarget, Arc<ShardStats>) -> Box<dyn Durability>,
    ) -> Engine {
        config.check();
        assert_eq!(states.len(), config.shards);
        let (clients, client_inboxes): (Vec<_>, Vec<_>) =
            (0..config.shards).map(|_| inbox::bounded(config.queue_len_max)).unzip();
        let (peers, peer_inboxes): (Vec<Sender<PeerMail>>, Vec<_>) =
            (0..config.shards).map(|_| crossbeam_channel::unbounded()).unzip();
        let mut threads = Vec::with_capacity(config.shards);
        let mut indexes = Vec::with_capacity(config.shards);
        let mut stats = Vec::with_capacity(config.shards);
        let inboxes = client_inboxes.into_iter().zip(peer_inboxes);
        for (shard, (state, (client_inbox, peer_inbox))) in states.into_iter().zip(inboxes).enumerate() {
            assert_eq!(usize::from(state.shard()), shard);
            let index = state.shared_index();
            indexes.push(Arc::clone(&index));
            let shard_stats = Arc::new(ShardStats::default());
            stats.push(Arc::clone(&shard_stats));
            let context = ShardContext {
                client_inbox,
                peer_inbox,
                clock: Arc::clone(&clock),
                batch_len_max: config.batch_len_max,
                retention_ms: config.retention_ms,
                pending_carts_max: config.pending_carts_max,
                capture_slice: config.capture_slice,
                shard_count: config.shards,
                durability: make(shard, CompletionTarget { index, peers: peers.clone() }, Arc::clone(&shard_stats)),
                now_ms_floor,
                stats: shard_stats,
            };
            let thread = std::thread::Builder::new()
                .name(format!("stockd-shard-{shard}"))
                .spawn(move || shard::run(state, context))
                .expect("the OS can start a shard thread");
            threads.push(thread);
        }
        Engine {
            config,
            clients,
            threads: Mutex::new(threads),
            read_view: ReadView::new(indexes),
            stats,
            closed: AtomicBool::new(false),
            store: OnceLock::new(),
        }
    }

    pub(crate) fn attach_store(&self, handles: StoreHandles) {
        assert!(self.store.set(handles).is_ok(), "a store is attached once");
    }

    /// The first storage failure of any shard. Once set, no shard
    /// acknowledges anything more (callers hear `storage_failed`, whose
    /// outcome is unknown) and the process should exit: a failed fsync is
    /// never retried.
    pub fn failure(&self) -> Option<String> {
        self.store.get()?.failure.get().map(str::to_owned)
    }

    /// A shard whose thread stopped while the engine serves: it panicked
    /// (a bug). Its callers hear `shutting_down`, but carts with a part on
    /// it may wait on its answer forever, and what it holds is stuck: the
    /// process should exit, and a restart recovers the shard from its log.
    pub fn stopped_shard(&self) -> Option<usize> {
        let exited = self.clients.iter().position(Inbox::exited)?;
        // A shutdown marks the engine closed before any shard exits: read
        // after the exit marks, an open engine means no shutdown stopped it.
        (!self.closed.load(Ordering::SeqCst)).then_some(exited)
    }

    /// The data directory, for an engine opened on one.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.store.get().map(|store| store.data_dir.as_path())
    }

    /// Keeps `shard`'s log segments from `lsn` on, even once a snapshot
    /// covers them: the hook for a consumer of the log (an order sink) that
    /// has not read them yet. `u64::MAX` releases the hold.
    pub fn retain_log_from(&self, shard: usize, lsn: u64) {
        if let Some(store) = self.store.get() {
            store.retain_from_lsn[shard].store(lsn, Ordering::Relaxed);
        }
    }

    /// A copy of every shard's state, consistent with everything applied
    /// before it (for tests and tools: it copies all of each shard).
    pub async fn capture_states(&self) -> Result<Vec<crate::snapshot::StateImage>, Rejection> {
        let shards = (0..self.clients.len()).map(|shard| self.send_one(shard, ClientOp::Capture));
        join_all(shards)
            .await
            .into_iter()
            .map(|outcome| match outcome? {
                PartReply::Image(image) => Ok(*image),
                other => unreachable!("a capture answered {other:?}"),
            })
            .collect()
    }

    /// Writes a snapshot of every shard and returns once all are durable.
    pub async fn snapshot(&self) -> Result<(), Rejection> {
        let shards = (0..self.clients.len()).map(|shard| self.send_one(shard, ClientOp::Snapshot));
        for outcome in join_all(shards).await {
            outcome?;
        }
        Ok(())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Durable counts of every SKU, readable without entering a shard queue.
    pub fn read_view(&self) -> &ReadView {
        &self.read_view
    }

    /// Each shard's counters.
    pub fn stats(&self) -> &[Arc<ShardStats>] {
        &self.stats
    }

    /// Client messages waiting in `shard`'s queue.
    pub fn queue_len(&self, shard: usize) -> usize {
        self.clients[shard].len()
    }

    /// The shard that owns `sku`.
    pub fn shard_of_sku(&self, sku: &str) -> usize {
        shard_of(crate::hash::key_hash(sku), self.clients.len())
    }

    /// The shard that dedupes reservation `id` and decides its fate.
    pub fn home_of(&self, id: &ReservationId) -> u16 {
        shard_of(id.key_hash(), self.clients.len()) as u16
    }

    pub fn submit_blocking(&self, request: Request) -> Outcome {
        futures::executor::block_on(self.submit(request))
    }

    pub fn submit_batch_blocking(&self, requests: Vec<Request>) -> Vec<Outcome> {
        futures::executor::block_on(self.submit_batch(requests))
    }

    pub async fn submit(&self, request: Request) -> Outcome {
        let (shard, op, expect) = self.plan(request)?;
        let outcome = self.send_one(shard, op).await;
        self.finish(expect, outcome).await
    }

    /// Submits many requests and answers one outcome per request, in order.
    /// Each is answered as if sent once the earlier requests it depends on
    /// were answered (the same reservation id, the same SKU with a stock
    /// change or read, ...: see `batch_order`); the rest run at once, the
    /// requests for one shard as one queue message per `BATCH_CHUNK`. A
    /// full queue refuses that message's requests `Busy`: in a long batch
    /// some may be `Busy` while later ones ran (retry them in batch order).
    /// Holds by different ids on one SKU compete as concurrent calls do. A
    /// batch is not a transaction: each request succeeds or fails on its own.
    pub async fn submit_batch(&self, requests: Vec<Request>) -> Vec<Outcome> {
        if requests.len() > BATCH_REQUESTS_MAX {
            return vec![Err(Rejection::BatchTooLarge); requests.len()];
        }
        let shard_count = self.clients.len();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
        let mut wave = Wave::new(shard_count, requests.len(), self.config.pending_carts_max);
        let mut send =
            WaveSend { open: (0..shard_count).map(|_| (Vec::new(), Vec::new())).collect(), sent: Vec::new() };
        for (position, request) in requests.into_iter().enumerate() {
            match self.plan(request) {
                Ok((shard, op, expect)) => {
                    if !wave.try_add(shard, &op) {
                        self.finish_wave(&mut send, &mut outcomes).await;
                        wave.clear();
                        assert!(wave.try_add(shard, &op), "an empty wave takes any request");
                    }
                    let (ops, expects) = &mut send.open[shard];
                    ops.push(op);
                    expects.push((position, expect));
                    if ops.len() == BATCH_CHUNK {
                        self.send_chunk(&mut send, shard);
                    }
                }
                Err(rejection) => outcomes[position] = Some(Err(rejection)),
            }
        }
        self.finish_wave(&mut send, &mut outcomes).await;
        outcomes.into_iter().map(|outcome| outcome.expect("every request was answered")).collect()
    }

    /// Sends `shard`'s open requests of the wave as one message (never an
    /// empty one: nothing would answer it).
    fn send_chunk(&self, send: &mut WaveSend, shard: usize) {
        let (ops, expects) = std::mem::take(&mut send.open[shard]);
        debug_assert!(!ops.is_empty(), "an empty message is never answered");
        send.sent.push((self.dispatch(shard, ops), expects));
    }

    /// Sends what is left of a wave, waits for every answer, fills in its
    /// outcomes, and leaves `send` empty for the next wave.
    async fn finish_wave(&self, send: &mut WaveSend, outcomes: &mut [Option<Outcome>]) {
        for shard in 0..send.open.len() {
            if !send.open[shard].0.is_empty() {
                self.send_chunk(send, shard);
            }
        }
        let mut follow_ups = Vec::new();
        for (dispatched, expects) in send.sent.drain(..) {
            let replies = Self::answers(dispatched, expects.len()).await;
            for (reply, (position, expect)) in replies.into_iter().zip(expects) {
                match expect {
                    // A cross-shard reservation also needs its other parts' lines.
                    Expect::Reservation { id } if is_multi_part(&reply) => follow_ups.push((position, id, reply)),
                    expect => outcomes[position] = Some(finish_local(expect, reply)),
                }
            }
        }
        for (position, outcome) in self.read_other_parts(follow_ups).await {
            outcomes[position] = Some(outcome);
        }
    }

    /// Completes cross-shard reservation reads of a batch: the other parts
    /// are read with one message per shard.
    async fn read_other_parts(&self, reads: Vec<(usize, ReservationId, PartOutcome)>) -> Vec<(usize, Outcome)> {
        let shard_count = self.clients.len();
        let mut ops: Vec<Vec<ClientOp>> = (0..shard_count).map(|_| Vec::new()).collect();
        let mut owners: Vec<Vec<usize>> = (0..shard_count).map(|_| Vec::new()).collect();
        let mut views = Vec::with_capacity(reads.len());
        for (read, (position, id, reply)) in reads.into_iter().enumerate() {
            let Ok(PartReply::Part(view)) = reply else { unreachable!("only multi-part reads follow up") };
            for shard in participant_shards(view.participants).filter(|&shard| shard != view.home) {
                ops[usize::from(shard)].push(ClientOp::Query(Query::GetReservation { id: id.clone() }));
                owners[usize::from(shard)].push(read);
            }
            views.push((position, id, Ok(view)));
        }
        let sent = ops
            .into_iter()
            .enumerate()
            .filter(|(_, ops)| !ops.is_empty())
            .map(|(shard, ops)| self.send_many(shard, ops));
        let replies = join_all(sent).await;
        for (shard_replies, shard_owners) in replies.into_iter().zip(owners.into_iter().filter(|o| !o.is_empty())) {
            for (reply, read) in shard_replies.into_iter().zip(shard_owners) {
                let view = &mut views[read].2;
                match (view.as_mut(), reply) {
                    (Ok(view), Ok(PartReply::Part(part))) => view.lines.extend(part.lines),
                    (Ok(_), Err(rejection)) => *view = Err(rejection),
                    (Ok(_), Ok(other)) => unreachable!("a reservation read answered {other:?}"),
                    (Err(_), _) => {}
                }
            }
        }
        views
            .into_iter()
            .map(|(position, id, view)| {
                let outcome = view.map(|mut view| {
                    view.lines.sort_unstable_by(|a, b| a.sku.cmp(&b.sku));
                    Reply::Reservation(ReservationView {
                        id,
                        state: view.state,
                        expires_at_ms: view.expires_at_ms,
                        lines: view.lines,
                    })
                });
                (position, outcome)
            })
            .collect()
    }

    /// Checks every shard's invariants by a full scan (a breach panics the
    /// shard, which then answers `shutting_down`). For tests and SREs.
    pub async fn audit(&self) -> Result<(), Rejection> {
        for shard in 0..self.clients.len() {
            self.send_one(shard, ClientOp::Query(Query::Audit)).await?;
        }
        Ok(())
    }

    /// Stops accepting requests, lets every shard finish its queue, and joins
    /// the shard threads. Idempotent; `Drop` calls it too.
    pub fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for client in &self.clients {
            // A shard that already exited drops it.
            client.send(ClientMessage::Stop);
        }
        for thread in self.threads.lock().drain(..) {
            if let Err(panic) = thread.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }

    // ---- routing ----------------------------------------------------------

    /// Validates a request and turns it into one op for one shard.
    fn plan(&self, request: Request) -> Result<(usize, ClientOp, Expect), Rejection> {
        let shard_count = self.clients.len();
        let sku_shard = |sku: &crate::ids::Sku| shard_of(sku.key_hash(), shard_count);
        Ok(match request {
            Request::SetStock { sku, on_hand, expected_version } => {
                validate_stock(on_hand)?;
                (sku_shard(&sku), ClientOp::Apply(Command::SetStock { sku, on_hand, expected_version }), Expect::Sku)
            }
            Request::AdjustStock { sku, delta } => {
                validate_stock(delta.unsigned_abs())?;
                (sku_shard(&sku), ClientOp::Apply(Command::AdjustStock { sku, delta }), Expect::Sku)
            }
            Request::GetSku { sku } => (sku_shard(&sku), ClientOp::Query(Query::GetSku { sku }), Expect::Sku),
            Request::Reserve(request) => {
                let (home, op) = self.plan_reserve(request)?;
                (home, op, Expect::Held)
            }
            Request::Commit { id } => {
                (self.home_of(&id).into(), ClientOp::Apply(Command::Commit { id }), Expect::Decision)
            }
            Request::Release { id } => {
                (self.home_of(&id).into(), ClientOp::Apply(Command::Release { id }), Expect::Decision)
            }
            Request::GetReservation { id } => {
                let op = ClientOp::Query(Query::GetReservation { id: id.clone() });
                (self.home_of(&id).into(), op, Expect::Reservation { id })
            }
        })
    }

    fn plan_reserve(&self, mut request: ReserveRequest) -> Result<(usize, ClientOp), Rejection> {
        let ttl_ms = request.validate(self.config.ttl_ms_default)?;
        let lines = request.lines.iter().map(|line| (line.sku.as_str(), line.qty));
        let fingerprint = cart_fingerprint(lines, request.ttl_ms);
        let shard_count = self.clients.len();
        let home = self.home_of(&request.id);
        let ReserveRequest { id, lines, .. } = request;
        if lines.iter().all(|line| shard_of(line.sku.key_hash(), shard_count) == usize::from(home)) {
            return Ok((home.into(), ClientOp::ReserveLocal { id, fingerprint, lines, ttl_ms }));
        }
        let mut home_lines = Vec::new();
        let mut away: Vec<(u16, Vec<crate::command::CartLine>)> = Vec::new();
        for line in lines {
            let shard = shard_of(line.sku.key_hash(), shard_count) as u16;
            if shard == home {
                home_lines.push(line);
            } else if let Some((_, part)) = away.iter_mut().find(|(part_shard, _)| *part_shard == shard) {
                part.push(line);
            } else {
                away.push((shard, vec![line]));
            }
        }
        let participants = away.iter().fold(1u64 << home, |set, (shard, _)| set | (1 << shard));
        let cart = CartRequest { id, fingerprint, home_lines, away, ttl_ms, participants };
        Ok((home.into(), ClientOp::ReserveCart(cart)))
    }

    async fn send_one(&self, shard: usize, op: ClientOp) -> PartOutcome {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Rejection::ShuttingDown);
        }
        let (reply, answer) = oneshot::channel();
        self.clients[shard].try_send(ClientMessage::One { op, reply })?;
        answer.await.unwrap_or(Err(Rejection::ShuttingDown))
    }

    async fn send_many(&self, shard: usize, ops: Vec<ClientOp>) -> Vec<PartOutcome> {
        let count = ops.len();
        Self::answers(self.dispatch(shard, ops), count).await
    }

    /// Puts `ops` in `shard`'s queue as one message, or says why not.
    fn dispatch(&self, shard: usize, ops: Vec<ClientOp>) -> Dispatched {
        if self.closed.load(Ordering::Relaxed) {
            return Dispatched::Refused(Rejection::ShuttingDown);
        }
        let (reply, answer) = oneshot::channel();
        match self.clients[shard].try_send(ClientMessage::Many { ops, reply }) {
            Ok(()) => Dispatched::Sent(answer),
            Err(rejection) => Dispatched::Refused(rejection),
        }
    }

    /// The `count` outcomes of a dispatched message.
    async fn answers(dispatched: Dispatched, count: usize) -> Vec<PartOutcome> {
        match dispatched {
            Dispatched::Sent(answer) => answer.await.unwrap_or_else(|_| vec![Err(Rejection::ShuttingDown); count]),
            Dispatched::Refused(rejection) => vec![Err(rejection); count],
        }
    }

    /// Turns a shard's answer into the request's outcome, reading a
    /// cross-shard reservation's other parts when needed.
    async fn finish(&self, expect: Expect, outcome: PartOutcome) -> Outcome {
        let Expect::Reservation { id } = expect else {
            return finish_local(expect, outcome);
        };
        let PartReply::Part(home_view) = outcome? else { unreachable!("a reservation read answers a part") };
        let PartView { participants, home, state, expires_at_ms, mut lines, .. } = home_view;
        for shard in participant_shards(participants).filter(|&shard| shard != home) {
            match self.send_one(usize::from(shard), ClientOp::Query(Query::GetReservation { id: id.clone() })).await? {
                PartReply::Part(part) => lines.extend(part.lines),
                other => unreachable!("a reservation read answered {other:?}"),
            }
        }
        lines.sort_unstable_by(|a, b| a.sku.cmp(&b.sku));
        Ok(Reply::Reservation(ReservationView { id, state, expires_at_ms, lines }))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn is_multi_part(reply: &PartOutcome) -> bool {
    matches!(reply, Ok(PartReply::Part(view)) if view.participants != 1 << view.home)
}

/// The outcome of a request whose one shard answered everything.
fn finish_local(expect: Expect, outcome: PartOutcome) -> Outcome {
    let reply = outcome?;
    Ok(match (expect, reply) {
        (Expect::Sku, PartReply::Sku(counts)) => Reply::Sku(counts),
        (Expect::Held, PartReply::Held { expires_at_ms, replayed, .. }) => {
            Reply::Held(Hold { expires_at_ms, replayed })
        }
        (Expect::Decision, PartReply::Committed) => Reply::Committed,
        (Expect::Decision, PartReply::Released) => Reply::Released,
        (Expect::Reservation { id }, PartReply::Part(view)) => {
            let PartView { state, expires_at_ms, lines, .. } = view;
            Reply::Reservation(ReservationView { id, state, expires_at_ms, lines })
        }
        (_, reply) => unreachable!("a shard answered {reply:?} to a request expecting another reply"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::command::CartLine;
    use crate::ids::Sku;

    fn cart(id: &str, skus: &[&Sku]) -> Request {
        let lines = skus.iter().map(|&sku| CartLine { sku: sku.clone(), qty: 1 }).collect();
        Request::Reserve(ReserveRequest { id: ReservationId::new(id).unwrap(), lines, ttl_ms: None })
    }

    /// A SKU's version moves with its on_hand: a compare-and-set of stock
    /// read before a sale (on the cart's home shard or on another) is
    /// refused; holds and releases, which leave on_hand alone, keep it.
    #[test]
    fn a_compare_and_set_of_stock_read_before_a_sale_is_refused() {
        let engine = Engine::start(EngineConfig { shards: 4, ..EngineConfig::default() }, Arc::new(SystemClock));
        let skus: Vec<Sku> = (0..8).map(|s| Sku::new(&format!("sku-{s}")).unwrap()).collect();
        let version = |sku: &Sku| engine.read_view().get(sku.as_str()).unwrap().version;
        for sku in &skus {
            let set = Request::SetStock { sku: sku.clone(), on_hand: 10, expected_version: None };
            engine.submit_blocking(set).unwrap();
        }
        let all: Vec<&Sku> = skus.iter().collect();
        engine.submit_blocking(cart("kept", &all)).unwrap();
        engine.submit_blocking(Request::Release { id: ReservationId::new("kept").unwrap() }).unwrap();
        assert!(skus.iter().all(|sku| version(sku) == 1), "a hold and its release change no version");
        engine.submit_blocking(cart("sold", &all)).unwrap();
        engine.submit_blocking(Request::Commit { id: ReservationId::new("sold").unwrap() }).unwrap();
        for sku in &skus {
            let stale = Request::SetStock { sku: sku.clone(), on_hand: 15, expected_version: Some(1) };
            assert_eq!(engine.submit_blocking(stale), Err(Rejection::VersionMismatch { expected: 1, current: 2 }));
            let fresh = Request::SetStock { sku: sku.clone(), on_hand: 14, expected_version: Some(2) };
            assert!(engine.submit_blocking(fresh).is_ok());
        }
    }

    /// A reserve of an id with every line on home, reaching home in the
    /// same message right behind a cart of that id still waiting for its
    /// other part, is `busy`: the cart is the first attempt. (A batch never
    /// sends them so, see `batch_order`; two callers racing can.)
    #[test]
    fn a_cart_in_progress_is_the_first_attempt_for_its_id() {
        let engine = Engine::start(EngineConfig { shards: 4, ..EngineConfig::default() }, Arc::new(SystemClock));
        let id = "first-wins";
        let home = usize::from(engine.home_of(&ReservationId::new(id).unwrap()));
        let skus: Vec<Sku> = (0..16).map(|s| Sku::new(&format!("sku-{s}")).unwrap()).collect();
        for sku in &skus {
            engine
                .submit_blocking(Request::SetStock { sku: sku.clone(), on_hand: 10, expected_version: None })
                .unwrap();
        }
        let on_home =
            skus.iter().find(|sku| engine.shard_of_sku(sku.as_str()) == home).expect("a SKU on the id's home");
        let away = skus.iter().find(|sku| engine.shard_of_sku(sku.as_str()) != home).expect("a SKU on another shard");
        let (wide, narrow) = (cart(id, &[on_home, away]), cart(id, &[on_home]));
        let op = |request: &Request| engine.plan(request.clone()).unwrap().1;
        let replies = futures::executor::block_on(engine.send_many(home, vec![op(&wide), op(&narrow)]));
        assert!(replies[0].is_ok(), "{replies:?}");
        assert_eq!(replies[1], Err(Rejection::Busy), "the narrow body waits for the cart");
        let reserved = |sku: &Sku| engine.read_view().get(sku.as_str()).unwrap().reserved;
        assert_eq!((reserved(on_home), reserved(away)), (1, 1), "only the cart is held");
        // Retried once the cart is settled: the cart's answer, or a reused key.
        assert!(matches!(engine.submit_blocking(wide), Ok(Reply::Held(Hold { replayed: true, .. }))));
        assert_eq!(engine.submit_blocking(narrow), Err(Rejection::IdempotencyKeyReused));
        futures::executor::block_on(engine.audit()).expect("invariants hold");
    }

    /// A cart whose part answers only after the cart's deadline (its shard
    /// stalled past the TTL) is refused `busy` with every part let go,
    /// never answered "held" with a deadline already past; a retry holds
    /// it afresh.
    #[test]
    fn a_cart_whose_parts_answer_after_its_deadline_is_refused() {
        let id =
            (0..).map(|i| format!("late-cart-{i}")).find(|id| shard_of(crate::hash::key_hash(id), 2) == 0).unwrap();
        let sku_on = |shard| {
            (0..)
                .map(|s| Sku::new(&format!("sku-{s}")).unwrap())
                .find(|sku| shard_of(sku.key_hash(), 2) == shard)
                .unwrap()
        };
        let (at_home, away) = (sku_on(0), sku_on(1));
        let (entered, shard_entered) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        let mut released = Some(released);
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let config = EngineConfig { shards: 2, ..EngineConfig::default() };
        let states = (0..2).map(|shard| ShardState::new(ShardConfig { shard })).collect();
        let engine = Arc::new(Engine::launch(config, clock.clone(), states, 0, |shard, target, _| {
            let in_memory = InMemory { target };
            match shard {
                1 => Box::new(HoldsAppend {
                    holds: |command| matches!(command, Command::Reserve(_)),
                    panics: false,
                    entered: entered.clone(),
                    release: released.take(),
                    in_memory,
                }),
                _ => Box::new(in_memory),
            }
        }));
        for sku in [&at_home, &away] {
            engine.submit_blocking(Request::SetStock { sku: sku.clone(), on_hand: 5, expected_version: None }).unwrap();
        }
        let request = Request::Reserve(ReserveRequest {
            id: ReservationId::new(&id).unwrap(),
            lines: vec![CartLine { sku: at_home.clone(), qty: 1 }, CartLine { sku: away.clone(), qty: 1 }],
            ttl_ms: Some(1_000),
        });
        let (answer, answered) = std::sync::mpsc::channel();
        {
            let (engine, request) = (Arc::clone(&engine), request.clone());
            std::thread::spawn(move || answer.send(engine.submit_blocking(request)));
        }
        let minute = std::time::Duration::from_secs(60);
        shard_entered.recv_timeout(minute).expect("the part's shard took the part");
        clock.advance_ms(5_000);
        release.send(()).unwrap();
        let answer = answered.recv_timeout(minute).expect("the cart was answered");
        assert_eq!(answer, Err(Rejection::Busy), "a deadline already past is not a hold");
        let reserved = |sku: &Sku| engine.read_view().get(sku.as_str()).unwrap().reserved;
        assert_eq!((reserved(&at_home), reserved(&away)), (0, 0), "every part let go before the answer");
        let retried = engine.submit_blocking(request);
        assert_eq!(retried, Ok(Reply::Held(Hold { expires_at_ms: 1_006_000, replayed: false })), "held afresh");
        futures::executor::block_on(engine.audit()).expect("invariants hold");
    }

    /// A log that holds the first command `holds` picks until told (as a
    /// shard behind a very deep queue would), then panics if `panics` (as
    /// a shard would on a bug). Otherwise it is `InMemory` (which holds the
    /// shard's peer senders, its own inbox's included).
    struct HoldsAppend {
        holds: fn(&Command) -> bool,
        panics: bool,
        entered: std::sync::mpsc::Sender<()>,
        release: Option<std::sync::mpsc::Receiver<()>>,
        in_memory: InMemory,
    }

    impl Durability for HoldsAppend {
        fn append(&mut self, command: &Command, _now_ms: u64) {
            if !(self.holds)(command) {
                return;
            }
            if let Some(release) = self.release.take() {
                self.entered.send(()).unwrap();
                let _ = release.recv();
                assert!(!self.panics, "injected: a shard panics mid-batch");
            }
        }
        fn end_batch(&mut self, completion: shard::Completion) -> shard::Completion {
            self.in_memory.end_batch(completion)
        }
        fn failure(&self) -> Option<Rejection> {
            None
        }
        fn wants_snapshot(&self) -> bool {
            false
        }
        fn snapshot_image(
            &mut self,
            _room: &dyn Fn() -> crate::snapshot::ImageRoom,
        ) -> Option<crate::snapshot::StateImage> {
            None
        }
        fn last_lsn(&self) -> Option<u64> {
            None
        }
        fn close(self: Box<Self>) {}
    }

    /// Waits for `request`'s answer on another thread, for at most a
    /// minute (a caller left waiting fails the test instead of hanging it).
    fn answer_within_a_minute(pending: impl std::future::Future<Output = Outcome> + Send + 'static) -> Outcome {
        let (answer, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || answer.send(futures::executor::block_on(pending)));
        answered.recv_timeout(std::time::Duration::from_secs(60)).expect("the caller was answered")
    }

    /// A shard that stops by a panic leaves nobody waiting: the request it
    /// had taken, the requests queued behind it, and a request sent after
    /// it is gone are all answered `shutting_down`. (The queued ones used
    /// to wait until the engine was dropped: the channel keeps queued
    /// messages while a sender lives.)
    #[test]
    fn every_caller_of_a_shard_that_panicked_is_answered() {
        let (entered, shard_entered) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        let mut released = Some(released);
        let config = EngineConfig { shards: 1, ..EngineConfig::default() };
        let states = vec![ShardState::new(ShardConfig { shard: 0 })];
        let engine = Arc::new(Engine::launch(config, Arc::new(SystemClock), states, 0, |_, target, _| {
            let in_memory = InMemory { target };
            Box::new(HoldsAppend {
                holds: |_| true,
                panics: true,
                entered: entered.clone(),
                release: released.take(),
                in_memory,
            })
        }));
        let set_stock = |on_hand| Request::SetStock { sku: Sku::new("tee").unwrap(), on_hand, expected_version: None };
        let submit = |on_hand| {
            let engine = Arc::clone(&engine);
            let mut pending = Box::pin(async move { engine.submit(set_stock(on_hand)).await });
            // The first poll puts the request in the queue.
            let waker = std::task::Waker::noop();
            let polled = std::future::Future::poll(pending.as_mut(), &mut std::task::Context::from_waker(waker));
            assert!(polled.is_pending());
            pending
        };
        let taken = submit(1);
        shard_entered.recv_timeout(std::time::Duration::from_secs(60)).expect("the shard took the request");
        let queued = [submit(2), submit(3)];
        assert_eq!(engine.queue_len(0), 2, "two requests wait behind the one the shard holds");
        release.send(()).unwrap();
        assert_eq!(answer_within_a_minute(taken), Err(Rejection::ShuttingDown), "the request the shard held");
        for pending in queued {
            assert_eq!(answer_within_a_minute(pending), Err(Rejection::ShuttingDown), "a queued request");
        }
        let after = {
            let engine = Arc::clone(&engine);
            async move { engine.submit(set_stock(4)).await }
        };
        assert_eq!(answer_within_a_minute(after), Err(Rejection::ShuttingDown), "a request sent after");
        assert_eq!(engine.stopped_shard(), Some(0), "the engine says which shard stopped");
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.shutdown()));
        assert!(stopped.is_err(), "the shard's panic comes out of shutdown");
    }
}
