//! Reading one shard's log back: every record in LSN order, with the rules
//! recovery depends on.
//!
//! - Segments must chain: each begins at the LSN after the previous one's
//!   last record, and records inside run consecutively.
//! - An invalid frame at the tail of the *last* segment is a torn write when
//!   no valid frame after it was framed with the bad record already durable
//!   (its synced LSN is below the bad record's): the log ends before it and
//!   the writer cuts it away (`LogTail`).
//! - Otherwise an invalid frame is corruption (a record that had been
//!   durable is damaged, or a full segment is): `WalError::Corrupt` names
//!   the file and offset. So are zeros where a record should be when a
//!   later frame says that record had been durable (a lost write): zeros
//!   end the log only when nothing after them proves otherwise.
//! - The last segment may have an unreadable header if a crash hit while it
//!   was being created (before any record could be acknowledged): it is
//!   reported in `ScanOutcome::discarded` and removed by `discard`. Only a
//!   new file named with the LSN the log continues at can be such a segment
//!   (a reused one gets its header before its name), so it holds no valid
//!   frame at all; a blank file under another name is corruption.
//! - Bytes after a segment's records may be an older segment's (segments
//!   are recycled, see `writer`): every write ends with an end marker, and
//!   an older frame's LSN and synced LSN are below the segment's first LSN,
//!   so it neither continues a log nor proves a bad frame was durable.

use crate::format::{
    decode_segment_header, frame_lsns, parse_segment_file_name, read_frame, Frame, RECORD_ALIGN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::storage::Storage;
use crate::writer::{recycled_segment_name, recycled_segments, LogTail, RECYCLED_SEGMENTS_MAX};
use crate::WalError;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// One segment file of a shard's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub first_lsn: u64,
}

/// What a scan found besides the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Where the log ends: hand it to `LogWriter::open`.
    pub tail: LogTail,
    /// A torn record cut from the tail: (file, offset, why it is invalid).
    pub torn: Option<(PathBuf, u64, &'static str)>,
    /// A last segment whose creation never completed.
    pub discarded: Option<PathBuf>,
    /// Records visited (after `after_lsn`) and segments read.
    pub records: u64,
    pub segments: usize,
}

/// Segment files in `dir`, oldest first.
pub fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<SegmentFile>, WalError> {
    if !storage.exists(dir) {
        return Ok(Vec::new());
    }
    let names = storage.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut segments: Vec<SegmentFile> = names
        .iter()
        .filter_map(|name| Some(SegmentFile { path: dir.join(name), first_lsn: parse_segment_file_name(name)? }))
        .collect();
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok(segments)
}

/// Visits every record with an LSN above `after_lsn`, in order, and finds
/// where the log ends. `each(lsn, payload)` may refuse a payload (it could
/// not be decoded): that is corruption at that record. It may also stop the
/// scan (`Break`: the caller wants nothing after this record), and then
/// nothing after that record is read, damaged or not (`tail` is then where
/// the scan stopped, not where the log ends).
pub fn scan(
    storage: &dyn Storage,
    dir: &Path,
    shard: u16,
    after_lsn: u64,
    mut each: impl FnMut(u64, &[u8]) -> Result<ControlFlow<()>, String>,
) -> Result<ScanOutcome, WalError> {
    let mut segments = list_segments(storage, dir)?;
    // Segments wholly at or below `after_lsn` are covered by the snapshot: a
    // crash during their removal may leave any subset of them, so they are
    // not read (nor chained). Keep the last one that starts at or before
    // `after_lsn + 1`.
    let first_needed = segments.iter().rposition(|segment| segment.first_lsn <= after_lsn + 1).unwrap_or(0);
    segments.drain(..first_needed);
    let mut outcome = ScanOutcome {
        tail: LogTail { next_lsn: after_lsn + 1, segment: None },
        torn: None,
        discarded: None,
        records: 0,
        segments: 0,
    };
    // The LSN the next record must carry, following the segments in order.
    let mut chain_next = 0;
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        let bytes = storage.read(&segment.path).map_err(|e| WalError::io("read", &segment.path, e))?;
        let corrupt = |offset: u64, reason: String| WalError::Corrupt { path: segment.path.clone(), offset, reason };
        // The LSN this segment must begin at to continue the log.
        let continues_at = if index == 0 { after_lsn + 1 } else { chain_next };
        let header = match decode_segment_header(&bytes) {
            Ok(header) => header,
            // Created but never given a header (the process died between
            // creating the file and syncing its header): no record was in
            // it. Only the segment the log would continue with can be one;
            // a blank file under an older name lost its records.
            Err(_) if last && segment.first_lsn == continues_at && !any_frame_after(&bytes, 0, |_, _| true) => {
                outcome.discarded = Some(segment.path.clone());
                break;
            }
            Err(reason) => return Err(corrupt(0, reason)),
        };
        if header.shard != shard || header.first_lsn != segment.first_lsn {
            let reason = format!(
                "header says shard {} from LSN {}, file name and place disagree",
                header.shard, header.first_lsn
            );
            return Err(corrupt(0, reason));
        }
        if index > 0 && header.first_lsn != chain_next {
            return Err(corrupt(
                0,
                format!("segment begins at LSN {}, the log continues at {chain_next}", header.first_lsn),
            ));
        }
        if index == 0 && header.first_lsn > after_lsn + 1 {
            let reason = format!(
                "records {}..{} are missing (the oldest segment begins later)",
                after_lsn + 1,
                header.first_lsn
            );
            return Err(corrupt(0, reason));
        }
        outcome.segments += 1;
        let mut next_lsn = header.first_lsn;
        let mut at = SEGMENT_HEADER_LEN;
        loop {
            match read_frame(&bytes, at) {
                Frame::Record { lsn, payload, next, .. } if lsn == next_lsn => {
                    if lsn > after_lsn {
                        let flow = each(lsn, payload).map_err(|reason| corrupt(at as u64, reason))?;
                        outcome.records += 1;
                        if flow.is_break() {
                            outcome.tail =
                                LogTail { next_lsn: lsn + 1, segment: Some((segment.path.clone(), next as u64)) };
                            return Ok(outcome);
                        }
                    }
                    next_lsn += 1;
                    at = next;
                }
                // Zeros where record `next_lsn` would be: the end, unless a
                // later frame says that record had been durable (a lost
                // write or a zeroed block; a segment's old frames, from
                // before it was recycled, carry older LSNs).
                Frame::End if last && any_frame_after(&bytes, at + RECORD_ALIGN, |_, synced| synced >= next_lsn) => {
                    let reason = format!("zeros where record {next_lsn} was, which had been durable");
                    return Err(corrupt(at as u64, reason));
                }
                // In a full segment, the end must be where the next begins:
                // the damage is here, not in the next file.
                Frame::End if !last && segments[index + 1].first_lsn > next_lsn => {
                    let reason = format!(
                        "zeros where record {next_lsn} was (the next segment begins at LSN {})",
                        segments[index + 1].first_lsn
                    );
                    return Err(corrupt(at as u64, reason));
                }
                Frame::End => break,
                frame => {
                    let reason = match frame {
                        Frame::Invalid(reason) => reason,
                        _ => "LSN out of sequence",
                    };
                    let durable_after = |_, synced_lsn| synced_lsn >= next_lsn;
                    if !last || any_frame_after(&bytes, at + RECORD_ALIGN, durable_after) {
                        return Err(corrupt(
                            at as u64,
                            format!("{reason} (record {next_lsn}, which had been durable)"),
                        ));
                    }
                    outcome.torn = Some((segment.path.clone(), at as u64, reason));
                    break;
                }
            }
        }
        chain_next = next_lsn;
        outcome.tail = LogTail { next_lsn, segment: Some((segment.path.clone(), at as u64)) };
    }
    if outcome.tail.segment.is_some() && chain_next <= after_lsn {
        let path = outcome.tail.segment.as_ref().map(|(path, _)| path.clone()).expect("checked");
        let reason = format!("the log ends at LSN {}, before the snapshot's LSN {after_lsn}", chain_next - 1);
        return Err(WalError::Corrupt { path, offset: 0, reason });
    }
    Ok(outcome)
}

/// Whether a valid frame at a 16-aligned offset from `from` on has an LSN
/// and synced LSN that `wanted` accepts. The LSN fields are tested before
/// the checksum, so most offsets cost no checksum (a clean start scans the
/// rest of the last segment this way).
fn any_frame_after(bytes: &[u8], from: usize, wanted: impl Fn(u64, u64) -> bool) -> bool {
    let start = from.max(SEGMENT_HEADER_LEN).next_multiple_of(RECORD_ALIGN);
    let end = bytes.len().saturating_sub(RECORD_HEADER_LEN - 1);
    (start..end).step_by(RECORD_ALIGN).any(|at| {
        let (lsn, synced_lsn) = frame_lsns(&bytes[at..at + RECORD_HEADER_LEN]);
        wanted(lsn, synced_lsn)
            && matches!(read_frame(bytes, at), Frame::Record { lsn, synced_lsn, .. } if wanted(lsn, synced_lsn))
    })
}

/// Removes a segment whose creation never completed (see `ScanOutcome::discarded`).
pub fn discard(storage: &dyn Storage, path: &Path) -> Result<(), WalError> {
    storage.remove(path).map_err(|e| WalError::io("remove", path, e))?;
    let dir = path.parent().expect("segments live in a directory");
    storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))
}

/// Deletes the segments whose every record is at or below `covered_lsn`
/// (never the last segment, which the writer is using), and files a crash
/// left half removed. With `recycle_bytes`, covered segments of that length
/// are renamed for reuse instead, up to `RECYCLED_SEGMENTS_MAX` in the
/// directory (the log's writer takes them as its next segments). Returns
/// how many segments went.
pub fn remove_covered_segments(
    storage: &dyn Storage,
    dir: &Path,
    covered_lsn: u64,
    recycle_bytes: Option<u64>,
) -> Result<usize, WalError> {
    let segments = list_segments(storage, dir)?;
    // A segment's last record is the one before the next segment's first.
    let covered: Vec<&SegmentFile> =
        segments.windows(2).filter(|pair| pair[1].first_lsn - 1 <= covered_lsn).map(|pair| &pair[0]).collect();
    let mut recycle_room = match recycle_bytes {
        Some(_) => RECYCLED_SEGMENTS_MAX.saturating_sub(recycled_segments(storage, dir)?.len()),
        None => 0,
    };
    let mut doomed = Vec::new();
    let mut renamed = false;
    for segment in &covered {
        let len = storage.len(&segment.path).map_err(|e| WalError::io("stat", &segment.path, e))?;
        if recycle_room > 0 && Some(len) == recycle_bytes {
            let to = dir.join(recycled_segment_name(segment.first_lsn));
            storage.rename(&segment.path, &to).map_err(|e| WalError::io("rename", &segment.path, e))?;
            recycle_room -= 1;
            renamed = true;
        } else {
            doomed.push(file_name(&segment.path));
        }
    }
    let names = storage.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    doomed.extend(crate::reclaim::leftovers(&names).cloned());
    if !doomed.is_empty() {
        crate::reclaim::remove_gradually(storage, dir, &doomed)?;
    }
    if renamed || !doomed.is_empty() {
        storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
    }
    Ok(covered.len())
}

fn file_name(path: &Path) -> String {
    path.file_name().and_then(|name| name.to_str()).expect("listed names are UTF-8").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_segment_header, segment_file_name, RECORD_HEADER_LEN};
    use crate::mem_storage::MemStorage;
    use crate::writer::{LogOptions, LogWriter, SpareSegment, SEGMENT_BYTES_MIN, SPARE_SEGMENT_NAME};
    use std::ops::RangeInclusive;
    use std::sync::Arc;

    const SHARD: u16 = 2;

    /// A memory disk with `/data` durably created (as `Engine::open` does).
    fn storage() -> Arc<MemStorage> {
        let storage = MemStorage::new();
        storage.create_dir_all(Path::new("/data")).unwrap();
        storage.sync_dir(Path::new("/")).unwrap();
        storage
    }

    fn options() -> LogOptions {
        LogOptions { shard: SHARD, segment_bytes_max: SEGMENT_BYTES_MIN, spare_segments: true }
    }

    fn payload(lsn: u64) -> Vec<u8> {
        // Sizes vary so records straddle rotation points differently.
        let len = 1 + (lsn * 37 % 2_000) as usize;
        (0..len).map(|i| (lsn as usize + i) as u8).collect()
    }

    fn write_records(writer: &mut LogWriter, lsns: std::ops::RangeInclusive<u64>, sync: bool) {
        for lsn in lsns {
            assert_eq!(writer.append(|buffer| buffer.extend_from_slice(&payload(lsn))), lsn);
            if lsn % 50 == 0 {
                let point = writer.write().unwrap();
                if sync {
                    point.sync().unwrap();
                }
            }
        }
        let point = writer.write().unwrap();
        if sync {
            point.sync().unwrap();
        }
    }

    fn read_all(storage: &dyn Storage, dir: &Path, after: u64) -> (Vec<u64>, ScanOutcome) {
        let mut lsns = Vec::new();
        let outcome = scan(storage, dir, SHARD, after, |lsn, bytes| {
            assert_eq!(bytes, payload(lsn), "payload of record {lsn}");
            lsns.push(lsn);
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        (lsns, outcome)
    }

    #[test]
    fn records_round_trip_across_rotations_and_reopen() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=2_000, true);
        drop(writer);
        let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
        assert_eq!(lsns, (1..=2_000).collect::<Vec<_>>());
        assert!(outcome.segments > 1, "2,000 records of ~1 KiB rotate 1 MiB segments");
        assert_eq!(outcome.torn, None);
        let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail).unwrap();
        write_records(&mut writer, 2_001..=2_100, true);
        let (lsns, _) = read_all(storage.as_ref(), dir, 1_500);
        assert_eq!(lsns, (1_501..=2_100).collect::<Vec<_>>());
    }

    /// A rotation renames the spare into place, and the log reads back
    /// through it; a spare nobody took is not a segment to readers, and the
    /// next `prepare` hands it out again.
    #[test]
    fn rotations_take_the_spare_and_the_log_reads_back_through_it() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let spare_path = dir.join(SPARE_SEGMENT_NAME);
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        assert!(!storage.exists(&spare_path), "a new log's first segment is made from a spare");
        assert!(writer.needs_spare());
        writer.set_spare(SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).unwrap());
        assert!(!writer.needs_spare() && storage.exists(&spare_path));
        write_records(&mut writer, 1..=1_200, true);
        assert!(writer.needs_spare(), "1,200 records of ~1 KiB rotate a 1 MiB segment");
        assert!(!storage.exists(&spare_path), "the rotation renamed the spare");
        write_records(&mut writer, 1_201..=3_000, true);
        let segments_before_crash = writer.counters().segments_created;
        assert!(segments_before_crash >= 3, "one spare, then created segments");
        write_records(&mut writer, 3_001..=3_100, false);
        storage.crash();

        SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).unwrap();
        let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
        // A rotation syncs the full segment, so a few unsynced records may survive.
        let contiguous = lsns.iter().copied().eq(1..=lsns.len() as u64);
        assert!(contiguous && (3_000..3_100).contains(&lsns.len()), "{} records back", lsns.len());
        assert!(outcome.segments as u64 >= segments_before_crash);

        // The leftover spare is taken by the next run.
        let spare = SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).unwrap();
        let last = outcome.tail.next_lsn + 1_900;
        let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail.clone()).unwrap();
        writer.set_spare(spare);
        write_records(&mut writer, outcome.tail.next_lsn..=last, true);
        assert!(writer.needs_spare() && !storage.exists(&spare_path));
        let (lsns, _) = read_all(storage.as_ref(), dir, 0);
        assert!(lsns.iter().copied().eq(1..=last), "{} records back", lsns.len());
    }

    /// `spare_segments: false`: no spare is ever made or asked for, and
    /// rotations create their segments.
    #[test]
    fn without_spares_rotations_create_segments_and_the_log_reads_back() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let options = LogOptions { spare_segments: false, ..options() };
        let mut writer = LogWriter::open(storage.clone(), dir, options, LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=3_000, true);
        assert!(writer.counters().segments_created >= 3, "1 KiB records rotate 1 MiB segments");
        assert!(!writer.needs_spare());
        assert!(!storage.exists(&dir.join(SPARE_SEGMENT_NAME)));
        let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
        assert!(lsns.iter().copied().eq(1..=3_000), "{} records back", lsns.len());
        assert_eq!(outcome.torn, None);
        // The spare and recycled segments a run with spares on left are
        // removed at open; covered segments are removed, not recycled.
        SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).unwrap();
        storage.create(&dir.join(recycled_segment_name(1))).unwrap();
        drop(writer);
        let mut writer = LogWriter::open(storage.clone(), dir, options, outcome.tail).unwrap();
        assert!(!storage.exists(&dir.join(SPARE_SEGMENT_NAME)));
        assert!(recycled_segments(storage.as_ref(), dir).unwrap().is_empty());
        write_records(&mut writer, 3_001..=3_100, true);
        assert!(remove_covered_segments(storage.as_ref(), dir, 3_100, None).unwrap() > 0);
        assert!(recycled_segments(storage.as_ref(), dir).unwrap().is_empty());
    }

    /// Writes `lsns` in batches of 50, synced, giving the writer a spare
    /// whenever it has none (as the engine's snapshot thread does).
    fn write_with_spares(storage: &MemStorage, dir: &Path, writer: &mut LogWriter, lsns: RangeInclusive<u64>) {
        for lsn in lsns {
            writer.append(|buffer| buffer.extend_from_slice(&payload(lsn)));
            if lsn % 50 == 0 {
                writer.write().unwrap().sync().unwrap();
            }
            if writer.needs_spare() {
                writer.set_spare(SpareSegment::prepare(storage, dir, SEGMENT_BYTES_MIN).unwrap());
            }
        }
        writer.write().unwrap().sync().unwrap();
    }

    /// Whether a segment file holds bytes of an older segment after its
    /// records and their end marker (it was a recycled file; a zero-filled
    /// or fallocated one reads as zeros there).
    fn holds_older_bytes(bytes: &[u8]) -> bool {
        let mut at = SEGMENT_HEADER_LEN;
        while let Frame::Record { next, .. } = read_frame(bytes, at) {
            at = next;
        }
        bytes[(at + RECORD_HEADER_LEN).min(bytes.len())..].iter().any(|&byte| byte != 0)
    }

    /// Covered segments are set aside (up to the limit) and become the next
    /// segments; the log reads back through them, and the older records
    /// after each segment's own neither end nor break it.
    #[test]
    fn covered_segments_are_recycled_and_the_log_reads_back_through_them() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_with_spares(&storage, dir, &mut writer, 1..=8_000);
        let segments = list_segments(storage.as_ref(), dir).unwrap();
        assert!(segments.len() > RECYCLED_SEGMENTS_MAX + 2, "{} segments", segments.len());
        let covered = segments[RECYCLED_SEGMENTS_MAX + 1].first_lsn - 1;
        let removed = remove_covered_segments(storage.as_ref(), dir, covered, Some(SEGMENT_BYTES_MIN)).unwrap();
        assert_eq!(removed, RECYCLED_SEGMENTS_MAX + 1);
        assert_eq!(recycled_segments(storage.as_ref(), dir).unwrap().len(), RECYCLED_SEGMENTS_MAX, "one removed");
        assert_eq!(list_segments(storage.as_ref(), dir).unwrap().len(), segments.len() - removed);
        assert!(SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).unwrap().is_some(), "the one held");

        // The writer's next segments are the recycled files (before the
        // spare it holds); the newest, partly written, still holds older
        // records after its own.
        let mut lsn = 8_000;
        while writer.counters().segments_recycled < RECYCLED_SEGMENTS_MAX as u64 {
            write_with_spares(&storage, dir, &mut writer, lsn + 1..=lsn + 50);
            lsn += 50;
        }
        assert!(recycled_segments(storage.as_ref(), dir).unwrap().is_empty(), "all taken");
        assert!(storage.exists(&dir.join(SPARE_SEGMENT_NAME)), "the spare kept for later");
        let newest = list_segments(storage.as_ref(), dir).unwrap().pop().unwrap();
        let bytes = storage.read(&newest.path).unwrap();
        let older_records = any_frame_after(&bytes, 0, |lsn, _| lsn < newest.first_lsn);
        assert!(older_records, "older records remain after the newest segment's own");
        write_with_spares(&storage, dir, &mut writer, lsn + 1..=13_000);
        assert_eq!(writer.counters().segments_recycled, RECYCLED_SEGMENTS_MAX as u64);

        let (lsns, outcome) = read_all(storage.as_ref(), dir, covered);
        assert!(lsns.iter().copied().eq(covered + 1..=13_000), "{} records back", lsns.len());
        assert_eq!((outcome.torn, outcome.discarded), (None, None));
        drop(writer);
        let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail).unwrap();
        write_with_spares(&storage, dir, &mut writer, 13_001..=14_000);
        assert_eq!(read_all(storage.as_ref(), dir, covered).0.last(), Some(&14_000));

        // Damage a record in a segment that was recycled and is not the last.
        let segments = list_segments(storage.as_ref(), dir).unwrap();
        let (middle, bytes) = segments[..segments.len() - 1]
            .iter()
            .map(|segment| (segment, storage.read(&segment.path).unwrap()))
            .find(|(_, bytes)| holds_older_bytes(bytes))
            .expect("a recycled segment before the last");
        let at = offset_of(&bytes, middle.first_lsn + 3);
        storage.open(&middle.path).unwrap().write_at(at as u64 + 40, &[0xee]).unwrap();
        let error = scan(storage.as_ref(), dir, SHARD, covered, |_, _| Ok(ControlFlow::Continue(()))).unwrap_err();
        assert!(
            matches!(&error, WalError::Corrupt { path, offset, .. } if *path == middle.path && *offset == at as u64)
        );
    }

    /// A power cut in a recycled last segment: unsynced records may land
    /// in part, between older records; recovery keeps exactly the synced
    /// prefix and more, contiguous, and the log goes on from there.
    #[test]
    fn a_torn_tail_among_older_records_recovers_the_durable_prefix() {
        for seed in 0..20u64 {
            let storage = storage();
            let dir = Path::new("/data/shard-02");
            let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
            write_with_spares(&storage, dir, &mut writer, 1..=6_000);
            let covered = list_segments(storage.as_ref(), dir).unwrap().last().unwrap().first_lsn - 1;
            remove_covered_segments(storage.as_ref(), dir, covered, Some(SEGMENT_BYTES_MIN)).unwrap();
            write_with_spares(&storage, dir, &mut writer, 6_001..=8_000);
            let last = list_segments(storage.as_ref(), dir).unwrap().pop().unwrap();
            assert!(holds_older_bytes(&storage.read(&last.path).unwrap()), "a recycled file");
            for lsn in 8_001..=8_040 {
                writer.append(|buffer| buffer.extend_from_slice(&payload(lsn)));
            }
            writer.write().unwrap();
            let mut state = seed;
            storage.crash_with(
                |_| false,
                |_, page| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(page as u64 | 1);
                    state >> 63 == 0
                },
            );
            let (lsns, outcome) = read_all(storage.as_ref(), dir, covered);
            assert!(lsns.iter().copied().eq(covered + 1..=lsns.len() as u64 + covered), "seed {seed}: contiguous");
            assert!((8_000..=8_040).contains(lsns.last().unwrap()), "seed {seed}: {:?}", lsns.last());
            let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail.clone()).unwrap();
            let next = outcome.tail.next_lsn;
            write_with_spares(&storage, dir, &mut writer, next..=next + 100);
            assert_eq!(read_all(storage.as_ref(), dir, covered).0.last(), Some(&(next + 100)), "seed {seed}");
        }
    }

    /// Fills the writer's segment with synced records up to the one whose
    /// write rotates, which is appended but not written. Returns its LSN.
    fn fill_segment(writer: &mut LogWriter, tail: &LogTail) -> u64 {
        let mut fill = tail.segment.as_ref().unwrap().1 as usize;
        let mut lsn = tail.next_lsn;
        loop {
            let len = crate::format::record_len(payload(lsn).len());
            writer.append(|buffer| buffer.extend_from_slice(&payload(lsn)));
            if fill + len > SEGMENT_BYTES_MIN as usize {
                return lsn;
            }
            fill += len;
            writer.write().unwrap().sync().unwrap();
            lsn += 1;
        }
    }

    /// A rotation whose directory sync failed (or that a kill -9 cut short
    /// before it) leaves a segment whose name is not durable, and the next
    /// start continues in it: the start makes the name durable before it
    /// writes records it will acknowledge there.
    #[test]
    fn a_continued_segment_is_made_durable_in_its_directory_before_new_records() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let options = LogOptions { spare_segments: false, ..options() };
        let mut writer = LogWriter::open(storage.clone(), dir, options, LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=10, true);
        drop(writer);
        let (_, outcome) = read_all(storage.as_ref(), dir, 0);
        let mut writer = LogWriter::open(storage.clone(), dir, options, outcome.tail.clone()).unwrap();
        let lsn = fill_segment(&mut writer, &outcome.tail);
        storage.fail_dir_sync_once();
        assert!(writer.write().is_err(), "the rotation's directory sync fails");
        drop(writer);
        // The process stopped; the page cache still holds the new name.
        let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
        assert_eq!((lsns.last(), outcome.segments), (Some(&(lsn - 1)), 2), "the new segment is the tail");
        let mut writer = LogWriter::open(storage.clone(), dir, options, outcome.tail).unwrap();
        write_records(&mut writer, lsn..=lsn + 20, true);
        drop(writer);
        storage.crash();
        assert_eq!(read_all(storage.as_ref(), dir, 0).0.last(), Some(&(lsn + 20)), "every synced record survives");
    }

    /// A log of 4,000 records whose covered segments were recycled, and
    /// where its records begin.
    fn log_with_recycled_segments(storage: &Arc<MemStorage>, dir: &Path) -> u64 {
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_with_spares(storage, dir, &mut writer, 1..=4_000);
        drop(writer);
        let covered = list_segments(storage.as_ref(), dir).unwrap().last().unwrap().first_lsn - 1;
        remove_covered_segments(storage.as_ref(), dir, covered, Some(SEGMENT_BYTES_MIN)).unwrap();
        covered
    }

    /// A rotation takes a recycled segment before the spare: it syncs the
    /// file's earlier rename (1), gives it its header (2) before its name
    /// (3). A power cut with any of those syncs failing, the rename kept or
    /// lost, loses no synced record and leaves a log that goes on, read
    /// from its snapshot or from its oldest segment.
    #[test]
    fn a_crash_while_a_recycled_segment_becomes_the_next_loses_nothing() {
        for (failing_sync, rename_survives) in [(1, true), (2, true), (3, false), (3, true)] {
            let case = format!("sync {failing_sync} of the rotation fails, rename survives: {rename_survives}");
            let storage = storage();
            let dir = Path::new("/data/shard-02");
            let covered = log_with_recycled_segments(&storage, dir);
            let (_, outcome) = read_all(storage.as_ref(), dir, covered);
            let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail.clone()).unwrap();
            assert!(!writer.needs_spare(), "{case}: recycled segments wait");
            let lsn = fill_segment(&mut writer, &outcome.tail);
            // The rotation's first sync is the full segment's.
            storage.fail_sync_after(failing_sync + 1);
            assert!(writer.write().is_err(), "{case}");
            drop(writer);
            storage.crash_with(|_| rename_survives, |_, _| false);
            let (lsns, outcome) = read_all(storage.as_ref(), dir, covered);
            assert_eq!(lsns.last(), Some(&(lsn - 1)), "{case}");
            assert_eq!((outcome.torn.clone(), outcome.discarded.clone()), (None, None), "{case}");
            let oldest = list_segments(storage.as_ref(), dir).unwrap()[0].first_lsn;
            assert_eq!(read_all(storage.as_ref(), dir, oldest - 1).0.last(), Some(&(lsn - 1)), "{case}");
            let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail).unwrap();
            write_with_spares(&storage, dir, &mut writer, lsn..=lsn + 2_000);
            assert_eq!(read_all(storage.as_ref(), dir, covered).0.last(), Some(&(lsn + 2_000)), "{case}");
        }
    }

    /// The snapshot thread renamed a covered segment for reuse and had not
    /// synced the directory yet when the writer took it: a power cut then
    /// must not leave the old segment name on a file with the new header
    /// (readers from the oldest segment, `wal inspect`, would refuse it).
    #[test]
    fn a_recycled_segment_renamed_but_not_yet_synced_never_keeps_its_old_name() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_with_spares(&storage, dir, &mut writer, 1..=4_000);
        drop(writer);
        let (_, outcome) = read_all(storage.as_ref(), dir, 0);
        let oldest = list_segments(storage.as_ref(), dir).unwrap().remove(0);
        storage.rename(&oldest.path, &dir.join(recycled_segment_name(oldest.first_lsn))).unwrap();
        let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail.clone()).unwrap();
        let lsn = fill_segment(&mut writer, &outcome.tail);
        storage.fail_sync_after(4); // the rotation's last: the new name's
        assert!(writer.write().is_err());
        drop(writer);
        storage.crash_with(|_| false, |_, _| false);
        assert!(!storage.exists(&oldest.path), "the rename away from it was made durable");
        let first = list_segments(storage.as_ref(), dir).unwrap()[0].first_lsn;
        let (lsns, outcome) = read_all(storage.as_ref(), dir, first - 1);
        assert_eq!((lsns.last(), outcome.torn), (Some(&(lsn - 1)), None));
    }

    /// With recycled segments waiting, no spare is made and a rotation takes
    /// the oldest of the log's segment length; others are removed at open.
    #[test]
    fn rotations_take_recycled_segments_before_the_spare() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        storage.create_dir_all(dir).unwrap();
        let spare = SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).unwrap().unwrap();
        let old = vec![0x5a; SEGMENT_BYTES_MIN as usize];
        for (first_lsn, len) in [(1, old.len() / 2), (7, old.len()), (9, old.len())] {
            storage.create(&dir.join(recycled_segment_name(first_lsn))).unwrap().write_at(0, &old[..len]).unwrap();
        }
        assert!(SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).unwrap().is_some(), "the spare");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        assert_eq!(recycled_segments(storage.as_ref(), dir).unwrap(), [recycled_segment_name(9)]);
        writer.set_spare(Some(spare));
        let first = storage.read(&dir.join(segment_file_name(1))).unwrap();
        assert_eq!(&first[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN..], &old[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN..]);
        write_records(&mut writer, 1..=1_200, true);
        assert!(recycled_segments(storage.as_ref(), dir).unwrap().is_empty(), "the rotation took the other");
        assert!(storage.exists(&dir.join(SPARE_SEGMENT_NAME)), "and kept the spare");
        assert_eq!(writer.counters().segments_recycled, 2);
        assert!(SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).unwrap().is_some());
        // One recycled after the writer was handed its spare: taken first too.
        storage.create(&dir.join(recycled_segment_name(11))).unwrap().write_at(0, &old).unwrap();
        write_records(&mut writer, 1_201..=2_400, true);
        assert!(recycled_segments(storage.as_ref(), dir).unwrap().is_empty());
        assert!(storage.exists(&dir.join(SPARE_SEGMENT_NAME)), "the spare still kept");
        assert_eq!(writer.counters().segments_recycled, 3);
        let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
        assert!(lsns.iter().copied().eq(1..=2_400));
        assert_eq!(outcome.torn, None);
    }

    #[test]
    fn a_spare_that_fails_to_be_made_is_an_error_and_leaves_no_file() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        storage.create_dir_all(dir).unwrap();
        storage.fail_sync_after(1);
        assert!(SpareSegment::prepare(storage.as_ref(), dir, SEGMENT_BYTES_MIN).is_err());
        assert!(!storage.exists(&dir.join(SPARE_SEGMENT_NAME)));
    }

    #[test]
    fn a_crash_keeps_exactly_the_synced_records() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=1_234, true);
        write_records(&mut writer, 1_235..=1_300, false);
        storage.crash();
        let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
        assert_eq!(lsns.last(), Some(&1_234));
        assert_eq!(outcome.tail.next_lsn, 1_235);
    }

    #[test]
    fn a_failed_sync_poisons_the_writer_and_is_never_retried() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=10, true);
        storage.fail_sync_after(1);
        writer.append(|buffer| buffer.extend_from_slice(&payload(11)));
        let point = writer.write().unwrap();
        assert!(point.sync().is_err());
        // A failed write poisons too, and a poisoned writer refuses everything.
        storage.fail_write_after(1);
        writer.append(|buffer| buffer.extend_from_slice(&payload(12)));
        assert!(writer.write().is_err());
        assert!(matches!(writer.write(), Err(WalError::Poisoned)));
        storage.crash();
        let (lsns, _) = read_all(storage.as_ref(), dir, 0);
        assert_eq!(lsns, (1..=10).collect::<Vec<_>>(), "the durable prefix, nothing more");
    }

    /// Pages of an unsynced write may reach the disk in any order: a bad
    /// frame followed by valid frames that were never durable is still a
    /// torn tail, not corruption.
    #[test]
    fn unsynced_frames_after_a_torn_one_are_a_torn_tail() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=10, true);
        // Records 11..=20 are written in one unsynced batch.
        for lsn in 11..=20 {
            writer.append(|buffer| buffer.extend_from_slice(&payload(lsn)));
        }
        writer.write().unwrap();
        drop(writer);
        // Damage record 11's header only: 12..=20 stay valid but unsynced.
        let segment = list_segments(storage.as_ref(), dir).unwrap().pop().unwrap();
        let bytes = storage.read(&segment.path).unwrap();
        let at = offset_of(&bytes, 11);
        storage.open(&segment.path).unwrap().write_at(at as u64 + 4, &[0xff]).unwrap();
        let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
        assert_eq!(lsns, (1..=10).collect::<Vec<_>>());
        assert_eq!(outcome.torn.as_ref().map(|torn| torn.1), Some(at as u64));
        // Damaging a durable record (5) while later durable ones follow is corruption.
        let at = offset_of(&bytes, 5);
        storage.open(&segment.path).unwrap().write_at(at as u64 + 40, &[0xff]).unwrap();
        let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail).unwrap();
        write_records(&mut writer, 11..=12, true);
        let error = scan(storage.as_ref(), dir, SHARD, 0, |_, _| Ok(ControlFlow::Continue(()))).unwrap_err();
        assert!(matches!(error, WalError::Corrupt { offset, .. } if offset == at as u64), "{error}");
    }

    /// A lost write in the last segment (a record read back as zeros) is
    /// corruption when a later frame says that record had been durable;
    /// zeros that nothing after them proves durable end the log.
    #[test]
    fn zeros_where_a_durable_record_was_are_corruption() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        // Two synced batches: 31..=40 are framed with 1..=30 durable.
        write_records(&mut writer, 1..=30, true);
        write_records(&mut writer, 31..=40, true);
        drop(writer);
        let segment = list_segments(storage.as_ref(), dir).unwrap().pop().unwrap();
        let bytes = storage.read(&segment.path).unwrap();
        let file = storage.open(&segment.path).unwrap();
        // No frame after record 35 says it was durable: the log ends there.
        file.write_at(offset_of(&bytes, 35) as u64, &[0; RECORD_HEADER_LEN]).unwrap();
        let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
        assert_eq!(lsns, (1..=34).collect::<Vec<_>>());
        assert!(outcome.torn.is_none());
        // Records 31..=40 say record 20 was durable.
        let at = offset_of(&bytes, 20);
        file.write_at(at as u64, &[0; RECORD_HEADER_LEN]).unwrap();
        let error = scan(storage.as_ref(), dir, SHARD, 0, |_, _| Ok(ControlFlow::Continue(()))).unwrap_err();
        assert!(matches!(&error, WalError::Corrupt { offset, .. } if *offset == at as u64), "{error}");
        assert!(error.to_string().contains("zeros where record 20 was"), "{error}");
    }

    /// Zeros where a record was in a full (not the last) segment are named
    /// in that segment, at their offset, not blamed on the next file.
    #[test]
    fn zeros_in_a_full_segment_are_named_where_they_are() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=2_000, true);
        drop(writer);
        let full = list_segments(storage.as_ref(), dir).unwrap().remove(0);
        let bytes = storage.read(&full.path).unwrap();
        let at = offset_of(&bytes, 20);
        storage.open(&full.path).unwrap().write_at(at as u64, &[0; RECORD_HEADER_LEN]).unwrap();
        let error = scan(storage.as_ref(), dir, SHARD, 0, |_, _| Ok(ControlFlow::Continue(()))).unwrap_err();
        assert!(
            matches!(&error, WalError::Corrupt { path, offset, .. } if *path == full.path && *offset == at as u64),
            "{error}"
        );
        assert!(error.to_string().contains("zeros where record 20 was"), "{error}");
    }

    /// A blank last segment is an unfinished creation only under the name
    /// the log continues at: under an older name it held records, lost.
    #[test]
    fn a_blank_segment_under_an_older_name_is_corruption() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=5, true);
        drop(writer);
        let segment = list_segments(storage.as_ref(), dir).unwrap().pop().unwrap();
        let len = storage.len(&segment.path).unwrap() as usize;
        storage.open(&segment.path).unwrap().write_at(0, &vec![0; len]).unwrap();
        // After a snapshot at LSN 3 the log continues at 4; the blank file is named 1.
        let error = scan(storage.as_ref(), dir, SHARD, 3, |_, _| Ok(ControlFlow::Continue(()))).unwrap_err();
        assert!(matches!(error, WalError::Corrupt { offset: 0, .. }), "{error}");
    }

    fn offset_of(bytes: &[u8], wanted: u64) -> usize {
        let mut at = SEGMENT_HEADER_LEN;
        loop {
            match read_frame(bytes, at) {
                Frame::Record { lsn, .. } if lsn == wanted => return at,
                Frame::Record { next, .. } => at = next,
                other => panic!("record {wanted} not found: {other:?}"),
            }
        }
    }

    #[test]
    fn covered_segments_are_removed_but_never_the_last() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=3_000, true);
        let before = list_segments(storage.as_ref(), dir).unwrap();
        assert!(before.len() >= 3);
        let covered = before[2].first_lsn - 1;
        assert_eq!(remove_covered_segments(storage.as_ref(), dir, covered, None).unwrap(), 2);
        let (lsns, _) = read_all(storage.as_ref(), dir, covered);
        assert_eq!(lsns.first(), Some(&(covered + 1)));
        assert_eq!(remove_covered_segments(storage.as_ref(), dir, u64::MAX, None).unwrap(), before.len() - 3);
        assert_eq!(list_segments(storage.as_ref(), dir).unwrap().len(), 1);
    }

    /// Killed after creating a segment file but before its header was
    /// durable (the file is all zeros, or garbage): no record was ever in
    /// it, so recovery drops it, even when it is the first segment.
    #[test]
    fn a_segment_whose_creation_never_completed_is_discarded() {
        for first in [true, false] {
            let storage = storage();
            let dir = Path::new("/data/shard-02");
            let next = if first {
                storage.create_dir_all(dir).unwrap();
                storage.sync_dir(Path::new("/data")).unwrap();
                1
            } else {
                let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
                write_records(&mut writer, 1..=5, true);
                6
            };
            let orphan = storage.create(&dir.join(segment_file_name(next))).unwrap();
            orphan.set_len_allocated(1 << 20).unwrap();
            storage.crash_with(|_| true, |_, _| true);
            let (lsns, outcome) = read_all(storage.as_ref(), dir, 0);
            assert_eq!(lsns.len() as u64, next - 1);
            assert!(outcome.discarded.is_some(), "first segment: {first}");
            discard(storage.as_ref(), outcome.discarded.as_ref().unwrap()).unwrap();
            let mut writer = LogWriter::open(storage.clone(), dir, options(), outcome.tail).unwrap();
            write_records(&mut writer, next..=next + 2, true);
            assert_eq!(read_all(storage.as_ref(), dir, 0).0.len() as u64, next + 2);
        }
        // A damaged header with records after it is corruption, not a discard.
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=5, true);
        let segment = list_segments(storage.as_ref(), dir).unwrap().pop().unwrap();
        let mut header = encode_segment_header(2, 1);
        header[20] ^= 1;
        storage.open(&segment.path).unwrap().write_at(0, &header).unwrap();
        assert!(matches!(
            scan(storage.as_ref(), dir, SHARD, 0, |_, _| Ok(ControlFlow::Continue(()))),
            Err(WalError::Corrupt { offset: 0, .. })
        ));
    }

    /// A crash while covered segments are being removed may leave any of
    /// them: recovery after the snapshot neither reads nor chains them.
    #[test]
    fn leftovers_of_an_interrupted_segment_removal_are_ignored() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=5_000, true);
        let segments = list_segments(storage.as_ref(), dir).unwrap();
        assert!(segments.len() >= 4);
        // Segment 2 is gone, 1 and 3 remain: as after a crash mid-removal.
        storage.remove(&segments[1].path).unwrap();
        let covered = segments[3].first_lsn - 1;
        let (lsns, _) = read_all(storage.as_ref(), dir, covered);
        assert_eq!(lsns.first(), Some(&(covered + 1)));
        assert_eq!(lsns.last(), Some(&5_000));
    }

    /// The writer (rotating) and the syncer fsync through one gate: once one
    /// of them failed, the other fails too, whatever the disk says next.
    #[test]
    fn a_failed_sync_fails_every_later_sync_of_the_log() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        write_records(&mut writer, 1..=3, true);
        writer.append(|buffer| buffer.extend_from_slice(&payload(4)));
        let point = writer.write().unwrap();
        storage.fail_sync_once();
        assert!(point.sync().is_err());
        assert!(point.sync().is_err(), "not retried, though the disk would now say yes");
        writer.append(|buffer| buffer.extend_from_slice(&payload(5)));
        assert!(matches!(writer.write(), Err(WalError::Poisoned)));
        storage.crash();
        assert_eq!(read_all(storage.as_ref(), dir, 0).0, vec![1, 2, 3]);
    }

    /// A directory sync of the snapshot thread (through `gated_storage`)
    /// that failed fails the log's next sync, though the disk would say yes
    /// to it (Linux reports the error to one fsync only), and the refusal
    /// names that first failure.
    #[test]
    fn a_failed_directory_sync_beside_the_log_fails_the_log() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        let beside = writer.gated_storage();
        write_records(&mut writer, 1..=3, true);
        // A batch written, its sync not yet run, when the snapshot thread's
        // directory sync fails.
        writer.append(|buffer| buffer.extend_from_slice(&payload(4)));
        let point = writer.write().unwrap();
        storage.fail_dir_sync_once();
        assert!(beside.sync_dir(dir).is_err());
        let error = point.sync().expect_err("acknowledged after a failed directory sync");
        assert!(error.to_string().contains("injected directory sync failure"), "names the first failure: {error}");
        assert!(matches!(writer.write(), Err(WalError::Poisoned)));
        assert!(beside.sync_dir(dir).is_err(), "never retried");
        storage.crash();
        assert_eq!(read_all(storage.as_ref(), dir, 0).0, vec![1, 2, 3]);
    }

    /// Once the log failed, the threads beside it cannot make a directory
    /// change durable either (a snapshot must not delete covered segments).
    #[test]
    fn a_failed_log_refuses_directory_syncs_beside_it() {
        let storage = storage();
        let dir = Path::new("/data/shard-02");
        let mut writer = LogWriter::open(storage.clone(), dir, options(), LogTail::empty()).unwrap();
        let beside = writer.gated_storage();
        assert!(beside.sync_dir(dir).is_ok());
        writer.append(|buffer| buffer.extend_from_slice(&payload(1)));
        let point = writer.write().unwrap();
        storage.fail_sync_once();
        assert!(point.sync().is_err());
        assert!(beside.sync_dir(dir).is_err());
        assert!(storage.sync_dir(dir).is_ok(), "the disk itself would say yes");
    }
}
