//! A shard's whole state as of an LSN, for snapshot files and for tests
//! that compare states. The image is flat (a few large arrays, no
//! allocation per record) so that capturing it pauses the shard only for
//! memory copies; a background thread serializes and writes it.
//!
//! Contents: the SKU key arena in slot order (slots are stable, so lines can
//! name SKUs by slot), every SKU's counts, and every reservation the shard
//! remembers (held, and finished within retention) with its sequence
//! number and pending timer, so a restored shard fires the same timers in
//! the same order as the one that was captured.
//!
//! Capturing into fresh memory pauses the shard mostly for the kernel
//! zeroing new pages (measured: four fifths of the pause), so a shard
//! captures into an image whose pages another thread has already touched
//! (`StateImage::with_room`), sized by `ShardState::image_room`.
//!
//! A snapshot's capture is spread over the shard's turns, a slice of SKUs
//! and reservation slots per turn (`begin_capture`, `continue_capture`),
//! so no single pause grows with the state (one copy of 1M reservations
//! paused the shard ~30 ms, enough to miss a 5 ms p99). The image is still
//! the state as of the LSN where the capture began: SKU keys never change
//! once added, SKUs and slots added later are left out, and an element
//! changed before the copy reached it is copied first (copy-on-write): a
//! SKU's counts into a `Pending` (`ShardState::store_counts`), a
//! reservation straight into the image (`RecordCapture`, from
//! `Reservations::{insert_with_seq, remove, finish}`).

use crate::command::ReservationState;
use crate::hash::IntMap;
use crate::ids::ReservationId;
use crate::limits::ON_HAND_MAX;
use crate::read_view::{SkuCounts, SkuIndex};
use crate::reservations::{Line, Reservation, Reservations};
use crate::state::{ShardConfig, ShardState};
use rkyv::{Archive, Serialize};
use smallvec::SmallVec;
use std::ops::Range;

/// No pending timer (a held part away from home).
const NO_TIMER: u64 = u64::MAX;

#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize)]
pub struct StateImage {
    pub shard: u16,
    /// The LSN of the last record the image includes.
    pub lsn: u64,
    /// The shard time of that record.
    pub now_ms: u64,
    pub next_seq: u64,
    pub key_bytes: Vec<u8>,
    pub key_ends: Vec<u32>,
    pub counts: Vec<SkuCounts>,
    pub reservations: Vec<ReservationImage>,
    /// Every reservation's lines, back to back (see `lines_start`).
    pub lines: Vec<LineImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize)]
pub struct ReservationImage {
    pub id: ReservationId,
    pub fingerprint: u128,
    pub expires_at_ms: u64,
    pub forget_at_ms: u64,
    pub seq: u64,
    pub timer_due_ms: u64,
    /// 0 held, 1 committed, 2 released, 3 expired.
    pub state: u8,
    pub home: u16,
    pub participants: u64,
    pub lines_start: u32,
    pub lines_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize)]
pub struct LineImage {
    pub slot: u32,
    pub qty: u32,
}

fn state_code(state: ReservationState) -> u8 {
    match state {
        ReservationState::Held => 0,
        ReservationState::Committed => 1,
        ReservationState::Released => 2,
        ReservationState::Expired => 3,
    }
}

fn state_of(code: u8) -> Result<ReservationState, String> {
    Ok(match code {
        0 => ReservationState::Held,
        1 => ReservationState::Committed,
        2 => ReservationState::Released,
        3 => ReservationState::Expired,
        other => return Err(format!("reservation state {other} is not one of 0..=3")),
    })
}

/// How much an image of a state needs (plus room for the state to grow
/// while the image is being prepared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageRoom {
    pub skus: usize,
    pub key_bytes: usize,
    pub reservations: usize,
    pub lines: usize,
}

impl StateImage {
    /// An empty image whose arrays have `room` and whose pages are already
    /// touched, so that capturing into it only copies.
    pub(crate) fn with_room(room: ImageRoom) -> StateImage {
        /// Written a step at a time, yielding the core between steps
        /// (`stockd_wal::BACKGROUND_YIELD_BYTES`): touching a 200 MB image
        /// takes 50-400 ms.
        fn touched<T: Clone>(len: usize, filler: T) -> Vec<T> {
            let mut items = Vec::with_capacity(len);
            let step = (stockd_wal::BACKGROUND_YIELD_BYTES / std::mem::size_of::<T>().max(1)).max(1);
            while items.len() < len {
                let more = step.min(len - items.len());
                items.extend(std::iter::repeat_n(filler.clone(), more));
                std::thread::yield_now();
            }
            std::hint::black_box(&mut items).clear();
            items
        }
        let filler = ReservationImage {
            id: ReservationId::new("-").expect("a valid id"),
            fingerprint: 0,
            expires_at_ms: 0,
            forget_at_ms: 0,
            seq: 0,
            timer_due_ms: 0,
            state: 0,
            home: 0,
            participants: 0,
            lines_start: 0,
            lines_len: 0,
        };
        StateImage {
            key_bytes: touched(room.key_bytes, 0),
            key_ends: touched(room.skus, 0),
            counts: touched(room.skus, SkuCounts::default()),
            reservations: touched(room.reservations, filler),
            lines: touched(room.lines, LineImage { slot: 0, qty: 0 }),
            ..StateImage::default()
        }
    }
}

/// Copy-on-write for an array copied front to back, in order, over several
/// turns (a shard's SKU counts):
/// elements in `cursor..end` are not copied yet, and one changed before the
/// copy reaches it leaves its value from the capture's start in `saved`.
/// A bit per element says whether it has one, so the copy asks the map
/// only about the few that do (measured: a map lookup per copied element
/// and SipHash were a tenth of a busy shard's time while capturing).
pub(crate) struct Pending<T> {
    cursor: usize,
    end: usize,
    saved: IntMap<usize, T>,
    saved_bits: Vec<u64>,
}

impl<T> Pending<T> {
    /// Copying the first `end` elements (those that exist now).
    pub(crate) fn new(end: usize) -> Pending<T> {
        Pending { cursor: 0, end, saved: IntMap::default(), saved_bits: vec![0; end.div_ceil(64)] }
    }

    /// Called before element `at` changes; `now` gives its value now.
    pub(crate) fn before_change(&mut self, at: usize, now: impl FnOnce() -> T) {
        if (self.cursor..self.end).contains(&at) && !self.has_saved(at) {
            self.saved_bits[at / 64] |= 1 << (at % 64);
            self.saved.insert(at, now());
        }
    }

    fn has_saved(&self, at: usize) -> bool {
        self.saved_bits[at / 64] & (1 << (at % 64)) != 0
    }

    /// The next elements to copy, at most `budget` of them; copy element
    /// `at` from `take_saved(at)` if it has one, else from the live array.
    pub(crate) fn next_range(&mut self, budget: usize) -> Range<usize> {
        let range = self.cursor..self.cursor.saturating_add(budget).min(self.end);
        self.cursor = range.end;
        range
    }

    pub(crate) fn take_saved(&mut self, at: usize) -> Option<T> {
        if !self.has_saved(at) {
            return None;
        }
        self.saved_bits[at / 64] &= !(1 << (at % 64));
        self.saved.remove(&at)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.cursor == self.end
    }
}

/// A capture in progress: the image so far and the SKUs' copy-on-write.
pub(crate) struct Capturing {
    image: StateImage,
    counts: Pending<SkuCounts>,
}

impl Capturing {
    /// Called before SKU `slot`'s counts change.
    pub(crate) fn before_counts_change(&mut self, slot: u32, now: SkuCounts) {
        self.counts.before_change(slot as usize, || now);
    }
}

/// Appends `record`'s image (and its lines) to an image's arrays.
fn push_record_image(record: &Reservation, images: &mut Vec<ReservationImage>, lines: &mut Vec<LineImage>) {
    let lines_start = lines.len() as u32;
    lines.extend(record.lines.iter().map(|line| LineImage { slot: line.slot, qty: line.qty }));
    images.push(ReservationImage {
        id: record.id.clone(),
        fingerprint: record.fingerprint,
        expires_at_ms: record.expires_at_ms,
        forget_at_ms: record.forget_at_ms,
        seq: record.seq,
        timer_due_ms: record.timer_due_ms.unwrap_or(NO_TIMER),
        state: state_code(record.state),
        home: record.home,
        participants: record.participants,
        lines_start,
        lines_len: record.lines.len() as u32,
    });
}

/// The capture of a shard's reservation slab, front to back over several
/// turns: slots in `cursor..end` are not copied yet. A record about to
/// change before the copy reaches it is imaged at once, as it still is,
/// and its slot marked done, so that the copy skips it. Unlike `Pending`,
/// nothing is set aside: a record is never cloned, and the image's arrays
/// were usually touched ahead (`StateImage::with_room`). Measured with the
/// durable 4-caller benchmark: saving changed records in a map, with its
/// growth's page faults and copies, took 3.8 % of all samples on the shard
/// (another profile: 11.5 % more in the kernel clearing the map's new
/// pages); imaging them in place, 2.3 %. This copy is part of the command
/// that changes the record, not of a capture slice (nor of
/// `stockd_snapshot_capture_seconds`). The image therefore lists records,
/// and their line ranges, in no particular order; nothing reads them in
/// one (`StateImage::canonical` sorts them to compare images).
pub(crate) struct RecordCapture {
    cursor: usize,
    end: usize,
    /// A bit per slot below `end`: imaged (or empty) before the copy came.
    done_bits: Vec<u64>,
    images: Vec<ReservationImage>,
    lines: Vec<LineImage>,
}

impl RecordCapture {
    /// Imaging the first `end` slots (those that exist now) into `images`
    /// and `lines` (emptied first).
    pub(crate) fn new(end: usize, mut images: Vec<ReservationImage>, mut lines: Vec<LineImage>) -> RecordCapture {
        images.clear();
        lines.clear();
        RecordCapture { cursor: 0, end, done_bits: vec![0; end.div_ceil(64)], images, lines }
    }

    fn is_done(&self, at: usize) -> bool {
        self.done_bits[at / 64] & (1 << (at % 64)) != 0
    }

    /// Called before slot `at` changes; `record` is what it holds now.
    pub(crate) fn before_change(&mut self, at: usize, record: Option<&Reservation>) {
        if (self.cursor..self.end).contains(&at) && !self.is_done(at) {
            self.done_bits[at / 64] |= 1 << (at % 64);
            if let Some(record) = record {
                push_record_image(record, &mut self.images, &mut self.lines);
            }
        }
    }

    /// Images up to `budget` more slots of `slab`; true once all are done.
    pub(crate) fn copy_some(&mut self, budget: usize, slab: &[Option<Reservation>]) -> bool {
        let range = self.cursor..self.cursor.saturating_add(budget).min(self.end);
        self.cursor = range.end;
        for at in range {
            if let (false, Some(record)) = (self.is_done(at), &slab[at]) {
                push_record_image(record, &mut self.images, &mut self.lines);
            }
        }
        self.cursor == self.end
    }

    pub(crate) fn into_images(self) -> (Vec<ReservationImage>, Vec<LineImage>) {
        (self.images, self.lines)
    }
}

impl ShardState {
    /// Begins capturing the state as of `lsn` at `now_ms` into `image`
    /// (emptied first; its arrays grow if they lack room). The shard then
    /// calls `continue_capture` once per turn until it returns the image.
    pub(crate) fn begin_capture(&mut self, image: StateImage, lsn: u64, now_ms: u64) {
        let (shard, skus) = (self.shard(), self.sku_count());
        let (_, _, reservations, slot) = self.capture_parts();
        assert!(slot.is_none(), "one capture at a time");
        let mut image = StateImage { shard, lsn, now_ms, next_seq: reservations.next_seq(), ..image };
        image.key_bytes.clear();
        image.key_ends.clear();
        image.counts.clear();
        let (images, lines) = (std::mem::take(&mut image.reservations), std::mem::take(&mut image.lines));
        reservations.begin_capture(images, lines);
        *slot = Some(Capturing { image, counts: Pending::new(skus) });
    }

    /// Copies up to `budget` more SKUs and reservation slots; returns the
    /// image once everything is copied.
    pub(crate) fn continue_capture(&mut self, budget: usize) -> Option<StateImage> {
        let (index, counts, reservations, slot) = self.capture_parts();
        let capturing = slot.as_mut().expect("a capture is in progress");
        let image = &mut capturing.image;
        let range = capturing.counts.next_range(budget);
        {
            // Keys never change once added: copied from the live arena.
            let index = index.read();
            let (bytes, ends) = index.keys();
            let start = image.key_bytes.len();
            let end = range.end.checked_sub(1).map_or(start, |last| ends[last] as usize);
            image.key_bytes.extend_from_slice(&bytes[start..end]);
            image.key_ends.extend_from_slice(&ends[range.clone()]);
        }
        for at in range {
            image.counts.push(capturing.counts.take_saved(at).unwrap_or(counts[at]));
        }
        if let Some((images, lines)) = reservations.capture_some(budget) {
            (image.reservations, image.lines) = (images, lines);
        }
        if !reservations.is_capturing() && capturing.counts.is_done() {
            return slot.take().map(|capturing| capturing.image);
        }
        None
    }

    /// What an image of this state needs, with an eighth more for growth.
    pub(crate) fn image_room(&self) -> ImageRoom {
        let (index, counts, reservations) = self.parts();
        let key_bytes = index.read().keys().0.len();
        let grown = |len: usize| len + len / 8 + 1024;
        ImageRoom {
            skus: grown(counts.len()),
            key_bytes: grown(key_bytes),
            reservations: grown(reservations.len()),
            // Most carts are one line.
            lines: grown(reservations.len()),
        }
    }

    /// Copies the state, as of `lsn` at `now_ms`, into a new image.
    pub fn capture(&self, lsn: u64, now_ms: u64) -> StateImage {
        self.capture_into(StateImage::default(), lsn, now_ms)
    }

    /// Copies the state, as of `lsn` at `now_ms`, into `image` (emptied
    /// first; its arrays grow if they lack room).
    pub(crate) fn capture_into(&self, mut image: StateImage, lsn: u64, now_ms: u64) -> StateImage {
        let (index, counts, reservations) = self.parts();
        {
            let index = index.read();
            let (bytes, ends) = index.keys();
            image.key_bytes.clear();
            image.key_bytes.extend_from_slice(bytes);
            image.key_ends.clear();
            image.key_ends.extend_from_slice(ends);
        }
        image.counts.clear();
        image.counts.extend_from_slice(counts);
        let StateImage { reservations: images, lines, .. } = &mut image;
        images.clear();
        lines.clear();
        for record in reservations.iter() {
            push_record_image(record, images, lines);
        }
        StateImage { shard: self.shard(), lsn, now_ms, next_seq: reservations.next_seq(), ..image }
    }

    /// Rebuilds a shard from an archived image (read in place from a
    /// snapshot file). Refuses, with the reason, an image that breaks any of
    /// the state's invariants: a snapshot is checksummed, but restore never
    /// trusts it to the point of panicking.
    pub(crate) fn restore(image: &ArchivedStateImage) -> Result<ShardState, String> {
        let shard = image.shard.to_native();
        let key_ends: Vec<u32> = image.key_ends.iter().map(|end| end.to_native()).collect();
        let index = SkuIndex::from_keys(image.key_bytes.as_slice().to_vec(), key_ends)?;
        let counts: Vec<SkuCounts> = image
            .counts
            .iter()
            .map(|counts| SkuCounts {
                on_hand: counts.on_hand.to_native(),
                reserved: counts.reserved.to_native(),
                version: counts.version.to_native(),
            })
            .collect();
        if counts.len() != index.len() {
            return Err(format!("{} SKU keys but {} counts", index.len(), counts.len()));
        }
        if let Some(counts) = counts.iter().find(|c| c.reserved > c.on_hand || c.on_hand > ON_HAND_MAX) {
            return Err(format!("counts out of range: {counts:?}"));
        }
        let next_seq = image.next_seq.to_native();
        let records = image
            .reservations
            .iter()
            .map(|record| restore_reservation(record, &image.lines, counts.len()))
            .collect::<Result<Vec<_>, _>>()?;
        check_reservations(&records, &counts, shard, next_seq)?;
        let mut reservations = Reservations::default();
        reservations.set_next_seq(next_seq);
        for record in records {
            reservations.insert_with_seq(record);
        }
        Ok(ShardState::from_parts(ShardConfig { shard }, index, counts, reservations))
    }
}

/// Ids and sequence numbers are unique, timers match states, and every
/// SKU's `reserved` is exactly its held lines.
fn check_reservations(records: &[Reservation], counts: &[SkuCounts], shard: u16, next_seq: u64) -> Result<(), String> {
    let mut ids = std::collections::HashSet::with_capacity(records.len());
    let mut seqs = std::collections::HashSet::with_capacity(records.len());
    let mut held = vec![0u64; counts.len()];
    for record in records {
        if record.seq >= next_seq || !seqs.insert(record.seq) || !ids.insert(&record.id) {
            return Err(format!("reservation {} has a repeated id or sequence number", record.id));
        }
        let timer_ok = match record.state {
            ReservationState::Held => record.timer_due_ms == (record.home == shard).then_some(record.expires_at_ms),
            _ => record.timer_due_ms == Some(record.forget_at_ms),
        };
        let home_ok =
            usize::from(record.home) < crate::limits::SHARDS_MAX && record.participants & (1 << record.home) != 0;
        if !timer_ok
            || !home_ok
            || record.expires_at_ms >= record.forget_at_ms
            || record.participants & (1 << shard) == 0
        {
            return Err(format!("reservation {} is inconsistent", record.id));
        }
        if record.state == ReservationState::Held {
            for line in &record.lines {
                held[line.slot as usize] += u64::from(line.qty);
            }
        }
    }
    match counts.iter().zip(&held).position(|(counts, &held)| counts.reserved != held) {
        Some(slot) => {
            Err(format!("SKU slot {slot}: reserved {} but its holds add up to {}", counts[slot].reserved, held[slot]))
        }
        None => Ok(()),
    }
}

fn restore_reservation(
    record: &ArchivedReservationImage,
    lines: &[ArchivedLineImage],
    skus: usize,
) -> Result<Reservation, String> {
    let start = record.lines_start.to_native() as usize;
    let end = start + record.lines_len.to_native() as usize;
    let lines = lines.get(start..end).ok_or("a reservation's lines lie outside the line array")?;
    let lines: SmallVec<[Line; 1]> =
        lines.iter().map(|line| Line { slot: line.slot.to_native(), qty: line.qty.to_native() }).collect();
    if lines.len() > crate::limits::LINES_MAX
        || lines.iter().any(|line| line.slot as usize >= skus || !(1..=crate::limits::QTY_MAX).contains(&line.qty))
    {
        return Err("a reservation's lines name a SKU slot that does not exist, or a quantity out of range".into());
    }
    let id = ReservationId::new(record.id.as_str())
        .map_err(|_| format!("invalid reservation id {:?}", record.id.as_str()))?;
    let timer_due_ms = record.timer_due_ms.to_native();
    Ok(Reservation {
        id,
        fingerprint: record.fingerprint.to_native(),
        lines,
        expires_at_ms: record.expires_at_ms.to_native(),
        forget_at_ms: record.forget_at_ms.to_native(),
        seq: record.seq.to_native(),
        timer_due_ms: (timer_due_ms != NO_TIMER).then_some(timer_due_ms),
        state: state_of(record.state)?,
        home: record.home.to_native(),
        participants: record.participants.to_native(),
    })
}

impl StateImage {
    /// The image with reservations in sequence order, so that two images of
    /// equal states compare equal however their slabs were laid out.
    pub fn canonical(mut self) -> StateImage {
        let lines = std::mem::take(&mut self.lines);
        self.reservations.sort_unstable_by_key(|record| record.seq);
        for record in &mut self.reservations {
            let start = record.lines_start as usize;
            let own = &lines[start..start + record.lines_len as usize];
            record.lines_start = self.lines.len() as u32;
            self.lines.extend_from_slice(own);
        }
        self
    }

    /// Serializes the image (the snapshot file's payload) into `out` as it
    /// goes. Fails when one array passes the archive format's 2 GiB
    /// relative-pointer range (a shard holding tens of millions of
    /// reservations; use more shards), or when `out` fails.
    pub(crate) fn write_to(&self, out: &mut dyn std::io::Write) -> Result<(), String> {
        let writer = rkyv::ser::writer::IoWriter::new(out);
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::BoxedError>(self, writer)
            .map(drop)
            .map_err(|error| format!("the shard's state does not fit one snapshot archive: {error}"))
    }
}

/// Reads a snapshot payload in place.
pub(crate) fn access(payload: &[u8]) -> Result<&ArchivedStateImage, String> {
    rkyv::access::<ArchivedStateImage, rkyv::rancor::BoxedError>(payload)
        .map_err(|error| format!("undecodable snapshot: {error}"))
}

#[cfg(test)]
mod robustness {
    use super::*;
    use crate::command::{CartLine, Command, ReservePart};
    use crate::ids::Sku;
    use proptest::prelude::*;

    /// The payload `write_to` streams, in memory.
    fn to_bytes(image: &StateImage) -> rkyv::util::AlignedVec<16> {
        let mut streamed = Vec::new();
        image.write_to(&mut streamed).unwrap();
        let mut bytes = rkyv::util::AlignedVec::<16>::new();
        bytes.extend_from_slice(&streamed);
        bytes
    }

    fn real_image() -> rkyv::util::AlignedVec<16> {
        to_bytes(&state_with(2).capture(2, 0))
    }

    #[test]
    fn a_captured_state_restores_to_the_same_image() {
        let bytes = real_image();
        let restored = ShardState::restore(access(&bytes).unwrap()).unwrap();
        assert_eq!(to_bytes(&restored.capture(2, 0)).as_slice(), bytes.as_slice());
    }

    /// A state with `count` SKUs and a two-line reservation on each pair.
    fn state_with(count: usize) -> ShardState {
        let mut state = ShardState::new(ShardConfig { shard: 0 });
        let mut batch = state.batch();
        let skus: Vec<Sku> = (0..count).map(|i| Sku::new(&format!("sku-{i}")).unwrap()).collect();
        for sku in &skus {
            batch.apply(&Command::SetStock { sku: sku.clone(), on_hand: 9, expected_version: None }, 0).unwrap();
        }
        for (i, pair) in skus.chunks(2).enumerate() {
            let part = ReservePart {
                id: ReservationId::new(&format!("r-{i}")).unwrap(),
                fingerprint: 1,
                lines: pair.iter().map(|sku| CartLine { sku: sku.clone(), qty: 1 }).collect(),
                expires_at_ms: 10,
                forget_at_ms: 20,
                home: 0,
                participants: 1,
            };
            batch.apply(&Command::Reserve(part), 0).unwrap();
        }
        drop(batch);
        state
    }

    #[test]
    fn capturing_into_prepared_too_small_or_used_images_equals_a_fresh_capture() {
        let state = state_with(40);
        let fresh = state.capture(7, 3);
        let room = state.image_room();
        assert!(room.reservations >= 20 && room.skus >= 40 && room.lines >= 20, "{room:?}");
        let prepared = StateImage::with_room(room);
        assert!(prepared.reservations.is_empty() && prepared.reservations.capacity() >= room.reservations);
        assert_eq!(state.capture_into(prepared, 7, 3), fresh);
        let too_small = StateImage::with_room(ImageRoom { skus: 1, key_bytes: 1, reservations: 1, lines: 1 });
        assert_eq!(state.capture_into(too_small, 7, 3), fresh);
        let used = state_with(60).capture(9, 9);
        assert_eq!(state.capture_into(used, 7, 3), fresh);
    }

    #[test]
    fn an_image_with_a_sku_twice_an_invalid_sku_or_a_broken_key_arena_is_refused() {
        let refusal = |damage: &dyn Fn(&mut StateImage)| {
            let mut image = state_with(2).capture(2, 0);
            damage(&mut image);
            let bytes = to_bytes(&image);
            ShardState::restore(access(&bytes).unwrap()).err().expect("refused")
        };
        // The keys are "sku-0" and "sku-1", back to back.
        assert_eq!(refusal(&|image| image.key_bytes[9] = b'0'), "SKU \"sku-0\" appears twice");
        assert_eq!(refusal(&|image| image.key_bytes[9] = b' '), "invalid SKU key \"sku- \"");
        assert_eq!(refusal(&|image| image.key_ends[1] = 11), "the SKU key arena is inconsistent");
        assert_eq!(refusal(&|image| image.key_ends[1] = 9), "the SKU key arena is inconsistent");
    }

    /// One random step on a few SKUs and ids: stock changes, holds (reusing
    /// slots of forgotten ones), commits, releases, and time passing.
    fn random_step(state: &mut ShardState, (kind, n, qty): (u8, usize, u32), now_ms: &mut u64) {
        let sku = Sku::new(&format!("sku-{}", n % 5)).unwrap();
        let id = ReservationId::new(&format!("r-{n}")).unwrap();
        let mut batch = state.batch();
        let command = match kind {
            0 => Command::SetStock { sku, on_hand: 10 + u64::from(qty), expected_version: None },
            1 => Command::AdjustStock { sku, delta: i64::from(qty) - 2 },
            2 => Command::Reserve(ReservePart {
                id,
                fingerprint: u128::from(qty),
                lines: vec![CartLine { sku, qty }],
                expires_at_ms: *now_ms + 3_000,
                forget_at_ms: *now_ms + 7_000,
                home: 0,
                participants: 1,
            }),
            3 => Command::Commit { id },
            4 => Command::Release { id },
            _ => {
                *now_ms += 2_500;
                batch.tick(*now_ms, usize::MAX);
                return;
            }
        };
        // Refusals (no stock, unknown id, ...) are part of the game.
        let _ = batch.apply(&command, *now_ms);
    }

    proptest! {
        /// A capture spread over turns, with commands applied between its
        /// slices, gives exactly the image a capture at its start gives
        /// (up to the order of records): every change after the start is
        /// invisible to it.
        #[test]
        fn a_capture_spread_over_turns_equals_a_capture_at_its_start(
            before in prop::collection::vec((0u8..6, 0usize..12, 1u32..4), 0..120),
            during in prop::collection::vec((0u8..6, 0usize..12, 1u32..4), 0..120),
            budget in 1usize..6,
            into in 0u8..3,
        ) {
            let mut state = ShardState::new(ShardConfig { shard: 0 });
            let mut now_ms = 0;
            for &step in &before {
                random_step(&mut state, step, &mut now_ms);
            }
            let expected = state.capture(7, now_ms);
            // Into a fresh image, one a capture used before (its arrays
            // still full), or one prepared with room.
            let image = match into {
                0 => StateImage::default(),
                1 => state_with(60).capture(3, 1),
                _ => StateImage::with_room(state.image_room()),
            };
            state.begin_capture(image, 7, now_ms);
            let mut captured = None;
            for &step in &during {
                random_step(&mut state, step, &mut now_ms);
                if captured.is_none() {
                    captured = state.continue_capture(budget);
                }
            }
            let captured = captured.or_else(|| state.continue_capture(usize::MAX)).expect("an unbounded slice finishes");
            // Records changed early are imaged first: the same records, in
            // another order.
            prop_assert_eq!(captured.canonical(), expected.canonical());
            prop_assert!(!state.is_capturing());
        }

        /// A damaged image is refused, or restores to a state that passes
        /// the full invariant audit; it never panics.
        #[test]
        fn damaged_images_never_panic(at in 0usize..4_096, value in any::<u8>()) {
            let mut bytes = real_image();
            let at = at % bytes.len();
            bytes[at] = value;
            if let Ok(image) = access(&bytes) {
                if let Ok(mut state) = ShardState::restore(image) {
                    state.batch().query(&crate::command::Query::Audit).expect("a restored state passes its audit");
                }
            }
        }
    }
}
