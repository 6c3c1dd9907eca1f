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

use crate::command::ReservationState;
use crate::ids::ReservationId;
use crate::read_view::{SkuCounts, SkuIndex};
use crate::reservations::{Line, Reservation, Reservations};
use crate::state::{ShardConfig, ShardState};
use rkyv::{Archive, Serialize};
use smallvec::SmallVec;

/// No pending timer (a held part away from home).
const NO_TIMER: u64 = u64::MAX;

#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize)]
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

impl ShardState {
    /// Copies the state, as of `lsn` at `now_ms`, into an image.
    pub fn capture(&self, lsn: u64, now_ms: u64) -> StateImage {
        let (index, counts, reservations) = self.parts();
        let (key_bytes, key_ends) = {
            let index = index.read();
            let (bytes, ends) = index.keys();
            (bytes.to_vec(), ends.to_vec())
        };
        let count = reservations.len();
        let mut lines = Vec::with_capacity(count);
        let mut images = Vec::with_capacity(count);
        images.extend(reservations.iter().map(|record| {
            let lines_start = lines.len() as u32;
            lines.extend(record.lines.iter().map(|line| LineImage { slot: line.slot, qty: line.qty }));
            ReservationImage {
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
            }
        }));
        StateImage {
            shard: self.shard(),
            lsn,
            now_ms,
            next_seq: reservations.next_seq(),
            key_bytes,
            key_ends,
            counts: counts.to_vec(),
            reservations: images,
            lines,
        }
    }

    /// Rebuilds a shard from an archived image (read in place from a
    /// snapshot file). Refuses an image that breaks the state's invariants.
    pub(crate) fn restore(image: &ArchivedStateImage) -> Result<ShardState, String> {
        let shard = image.shard.to_native();
        let key_ends: Vec<u32> = image.key_ends.iter().map(|end| end.to_native()).collect();
        let key_bytes = image.key_bytes.as_slice().to_vec();
        if key_ends.windows(2).any(|pair| pair[0] > pair[1])
            || key_ends.last().is_some_and(|&end| end as usize != key_bytes.len())
        {
            return Err("the SKU key arena is inconsistent".into());
        }
        let counts: Vec<SkuCounts> = image
            .counts
            .iter()
            .map(|counts| SkuCounts {
                on_hand: counts.on_hand.to_native(),
                reserved: counts.reserved.to_native(),
                version: counts.version.to_native(),
            })
            .collect();
        if counts.len() != key_ends.len() {
            return Err(format!("{} SKU keys but {} counts", key_ends.len(), counts.len()));
        }
        let mut reservations = Reservations::default();
        reservations.set_next_seq(image.next_seq.to_native());
        for record in image.reservations.iter() {
            reservations.insert_with_seq(restore_reservation(record, &image.lines, counts.len())?);
        }
        let index = SkuIndex::from_keys(key_bytes, key_ends);
        Ok(ShardState::from_parts(ShardConfig { shard }, index, counts, reservations))
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
    if lines.iter().any(|line| line.slot as usize >= skus) {
        return Err("a reservation names a SKU slot that does not exist".into());
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

    /// Serializes the image (the snapshot file's payload). Fails when one
    /// array passes the archive format's 2 GiB relative-pointer range (a
    /// shard holding tens of millions of reservations; use more shards).
    pub(crate) fn to_bytes(&self) -> Result<rkyv::util::AlignedVec<16>, String> {
        let mut bytes = rkyv::util::AlignedVec::<16>::new();
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::BoxedError>(self, &mut bytes)
            .map_err(|error| format!("the shard's state does not fit one snapshot archive: {error}"))?;
        Ok(bytes)
    }
}

/// Reads a snapshot payload in place.
pub(crate) fn access(payload: &[u8]) -> Result<&ArchivedStateImage, String> {
    rkyv::access::<ArchivedStateImage, rkyv::rancor::BoxedError>(payload)
        .map_err(|error| format!("undecodable snapshot: {error}"))
}
