//! The bytes on disk: segment headers, record frames, snapshot headers.
//! Little-endian throughout. The same layout is in `docs/wal-format.md`.
//!
//! Segment file `{first_lsn:020}.wal`:
//! ```text
//! offset size field
//!  0      8   magic  "STOCKWAL"
//!  8      4   format version (u32) = 2
//! 12      2   shard (u16)
//! 14      2   zero
//! 16      8   first LSN (u64): LSN of the first record in this segment
//! 24      4   CRC32C of bytes 0..24
//! 28      4   zero
//! 32      ... records, each starting at a multiple of 16
//! ```
//! Record frame (at a 16-aligned offset):
//! ```text
//!  0      4   payload length n (u32), 1..=RECORD_PAYLOAD_MAX
//!  4      4   CRC32C of bytes 0..4 followed by bytes 8..32+n
//!  8      8   LSN (u64): the previous record's + 1
//! 16      8   synced LSN (u64): every record up to it was durable when
//!             this one was framed
//! 24      8   zero
//! 32      n   payload (16-aligned: an rkyv archive readable in place)
//! 32+n    ..  zero padding to the next multiple of 16
//! ```
//! A segment file is allocated whole (preallocated, zero-filled, or an
//! older segment recycled); a frame whose length field is 0 (the writer's
//! end marker, or zeros) marks the end of its records, and an older
//! segment's frames after it have LSNs below the segment's first. The
//! synced LSN tells a torn tail from corruption: pages
//! of an unsynced write may reach the disk in any order, so valid frames
//! after a bad one prove corruption only if one of them was framed after
//! the bad record was already durable.
//!
//! Snapshot file `snapshot-{lsn:020}.snap`:
//! ```text
//!  0      8   magic "STOCKSNP"
//!  8      4   format version (u32) = 2
//! 12      2   shard (u16)
//! 14      2   zero
//! 16      8   LSN (u64): the snapshot holds every record up to and including it
//! 24      8   payload length (u64)
//! 32      4   CRC32C of the payload
//! 36      4   CRC32C of bytes 0..36
//! 40     24   zero
//! 64      ... payload (16-aligned rkyv archive)
//! ```
//! The version is the data directory's format (its manifest names it too):
//! it covers the engine's payloads and what they mean as well as these
//! frames. Version 2 changed only the command payloads
//! (`engine/src/codec.rs`), version 3 only what a SKU's version counts;
//! versions 1 and 2 were never released and are refused. From the first
//! release on, a reader dispatches on the field and keeps every released
//! version's decoder.

pub const FORMAT_VERSION: u32 = 3;
pub const SEGMENT_MAGIC: [u8; 8] = *b"STOCKWAL";
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"STOCKSNP";

pub const SEGMENT_HEADER_LEN: usize = 32;
const SEGMENT_CRC_AT: usize = 24;

pub const RECORD_HEADER_LEN: usize = 32;
/// Records and payloads start at multiples of this.
pub const RECORD_ALIGN: usize = 16;
/// Largest payload one record may carry (a 100-line cart is ~8 KiB).
pub const RECORD_PAYLOAD_MAX: usize = 1 << 20;

pub const SNAPSHOT_HEADER_LEN: usize = 64;
const SNAPSHOT_HEADER_CRC_AT: usize = 36;

/// Bytes a record with an `n`-byte payload occupies, padding included.
pub fn record_len(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len).next_multiple_of(RECORD_ALIGN)
}

pub fn segment_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.wal")
}

pub fn snapshot_file_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap")
}

/// The first LSN a segment file name stands for.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// The LSN a snapshot file name stands for.
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

pub fn encode_segment_header(shard: u16, first_lsn: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..14].copy_from_slice(&shard.to_le_bytes());
    header[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[..SEGMENT_CRC_AT]);
    header[SEGMENT_CRC_AT..SEGMENT_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    header
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard: u16,
    pub first_lsn: u64,
}

pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(format!("segment header truncated ({} bytes)", bytes.len()));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("not a stockd WAL segment (bad magic)".into());
    }
    let crc = u32_at(bytes, SEGMENT_CRC_AT);
    if crc != crc32c::crc32c(&bytes[..SEGMENT_CRC_AT]) {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(format!("segment format version {version}, this build reads {FORMAT_VERSION}"));
    }
    Ok(SegmentHeader { shard: u16::from_le_bytes([bytes[12], bytes[13]]), first_lsn: u64_at(bytes, 16) })
}

/// Fills the header of a record whose payload already sits at
/// `frame[32..32 + payload_len]`.
pub fn seal_record(frame: &mut [u8], lsn: u64, synced_lsn: u64) {
    let payload_len = frame.len() - RECORD_HEADER_LEN;
    assert!((1..=RECORD_PAYLOAD_MAX).contains(&payload_len), "payload of {payload_len} bytes");
    assert!(synced_lsn < lsn, "record {lsn} cannot be durable before it is written");
    frame[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    frame[8..16].copy_from_slice(&lsn.to_le_bytes());
    frame[16..24].copy_from_slice(&synced_lsn.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[0..4]), &frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// What is at a record position.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A valid record: its LSN, synced LSN, payload, and the offset of the next frame.
    Record { lsn: u64, synced_lsn: u64, payload: &'a [u8], next: usize },
    /// Zeros (or the end of the file): no more records here.
    End,
    /// Not a valid record; the reason.
    Invalid(&'static str),
}

/// The (LSN, synced LSN) fields of a record header, unchecked.
pub fn frame_lsns(header: &[u8]) -> (u64, u64) {
    (u64_at(header, 8), u64_at(header, 16))
}

/// Reads the frame at `at` (a multiple of 16) in `bytes`.
pub fn read_frame(bytes: &[u8], at: usize) -> Frame<'_> {
    debug_assert_eq!(at % RECORD_ALIGN, 0);
    if at + RECORD_HEADER_LEN > bytes.len() {
        return if bytes[at.min(bytes.len())..].iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Invalid("truncated header")
        };
    }
    let header = &bytes[at..at + RECORD_HEADER_LEN];
    let payload_len = u32_at(header, 0) as usize;
    if payload_len == 0 {
        return if header.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Invalid("zero length with a non-zero header")
        };
    }
    if payload_len > RECORD_PAYLOAD_MAX {
        return Frame::Invalid("length out of range");
    }
    let end = at + RECORD_HEADER_LEN + payload_len;
    if end > bytes.len() {
        return Frame::Invalid("record runs past the end of the file");
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), &bytes[at + 8..end]);
    if crc != u32_at(header, 4) {
        return Frame::Invalid("checksum mismatch");
    }
    let (lsn, synced_lsn) = frame_lsns(header);
    Frame::Record { lsn, synced_lsn, payload: &bytes[at + RECORD_HEADER_LEN..end], next: at + record_len(payload_len) }
}

/// The header of a snapshot whose payload is `payload_len` bytes with CRC32C
/// `payload_crc`.
pub fn encode_snapshot_header(shard: u16, lsn: u64, payload_len: u64, payload_crc: u32) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..14].copy_from_slice(&shard.to_le_bytes());
    header[16..24].copy_from_slice(&lsn.to_le_bytes());
    header[24..32].copy_from_slice(&payload_len.to_le_bytes());
    header[32..36].copy_from_slice(&payload_crc.to_le_bytes());
    let crc = crc32c::crc32c(&header[..SNAPSHOT_HEADER_CRC_AT]);
    header[SNAPSHOT_HEADER_CRC_AT..SNAPSHOT_HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    header
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub shard: u16,
    pub lsn: u64,
}

/// Checks a whole snapshot file and returns its header and payload.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(SnapshotHeader, &[u8]), String> {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err(format!("snapshot truncated ({} bytes)", bytes.len()));
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err("not a stockd snapshot (bad magic)".into());
    }
    if u32_at(bytes, SNAPSHOT_HEADER_CRC_AT) != crc32c::crc32c(&bytes[..SNAPSHOT_HEADER_CRC_AT]) {
        return Err("snapshot header checksum mismatch".into());
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(format!("snapshot format version {version}, this build reads {FORMAT_VERSION}"));
    }
    let payload_len = usize::try_from(u64_at(bytes, 24)).map_err(|_| "payload length out of range".to_string())?;
    let payload = bytes.get(SNAPSHOT_HEADER_LEN..SNAPSHOT_HEADER_LEN.saturating_add(payload_len));
    let payload = payload.ok_or_else(|| format!("snapshot truncated: payload of {payload_len} bytes announced"))?;
    if u32_at(bytes, 32) != crc32c::crc32c(payload) {
        return Err("snapshot payload checksum mismatch".into());
    }
    Ok((SnapshotHeader { shard: u16::from_le_bytes([bytes[12], bytes[13]]), lsn: u64_at(bytes, 16) }, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; RECORD_HEADER_LEN];
        bytes.extend_from_slice(payload);
        seal_record(&mut bytes, lsn, lsn - 1);
        bytes.resize(record_len(payload.len()), 0);
        bytes
    }

    #[test]
    fn a_sealed_record_reads_back() {
        let mut bytes = frame(7, b"payload");
        bytes.extend_from_slice(&[0u8; 32]);
        assert_eq!(read_frame(&bytes, 0), Frame::Record { lsn: 7, synced_lsn: 6, payload: b"payload", next: 48 });
        assert_eq!(read_frame(&bytes, 48), Frame::End);
    }

    #[test]
    fn every_flipped_byte_of_a_record_is_detected() {
        let clean = frame(3, b"some payload bytes");
        let covered = RECORD_HEADER_LEN + 18;
        for at in 0..covered {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x40;
            assert!(matches!(read_frame(&bytes, 0), Frame::Invalid(_)), "flip at {at} went unnoticed");
        }
    }

    #[test]
    fn a_truncated_record_is_invalid_and_zeros_are_the_end() {
        let clean = frame(3, b"some payload bytes");
        for len in 1..RECORD_HEADER_LEN + 18 {
            assert!(matches!(read_frame(&clean[..len], 0), Frame::Invalid(_)), "cut at {len}");
        }
        assert_eq!(read_frame(&[0u8; 64], 16), Frame::End);
        assert_eq!(read_frame(&[], 0), Frame::End);
    }

    #[test]
    fn headers_round_trip_and_refuse_damage() {
        let header = encode_segment_header(3, 42);
        assert_eq!(decode_segment_header(&header), Ok(SegmentHeader { shard: 3, first_lsn: 42 }));
        let mut damaged = header;
        damaged[17] ^= 1;
        assert!(decode_segment_header(&damaged).is_err());

        let payload = b"snapshot bytes";
        let mut file = encode_snapshot_header(1, 9, payload.len() as u64, crc32c::crc32c(payload)).to_vec();
        file.extend_from_slice(payload);
        assert_eq!(decode_snapshot(&file), Ok((SnapshotHeader { shard: 1, lsn: 9 }, &payload[..])));
        let last = file.len() - 1;
        file[last] ^= 1;
        assert!(decode_snapshot(&file).is_err());
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(12)), Some(12));
        assert_eq!(parse_snapshot_file_name(&snapshot_file_name(5)), Some(5));
        assert_eq!(parse_segment_file_name("12.wal"), None);
        assert_eq!(parse_snapshot_file_name("snapshot-x.snap"), None);
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes at all: reading frames never panics, and a frame it
        /// calls valid stays inside the input.
        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2_048), at in 0usize..2_048) {
            let at = at.min(bytes.len()) / RECORD_ALIGN * RECORD_ALIGN;
            if let Frame::Record { payload, next, .. } = read_frame(&bytes, at) {
                prop_assert!(at + RECORD_HEADER_LEN + payload.len() <= bytes.len() && next > at);
            }
            let _ = decode_segment_header(&bytes);
            let _ = decode_snapshot(&bytes);
        }
    }
}
