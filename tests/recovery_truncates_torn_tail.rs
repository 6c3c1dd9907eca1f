//! A record torn at any byte: the last record of the log, cut (file
//! truncated) or zeroed (the preallocated case) at every byte offset inside
//! it, recovers to exactly the state before that record, reports the torn
//! tail, and the log accepts new records after it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use stockd_engine::snapshot::StateImage;
use stockd_engine::{
    CartLine, Engine, EngineConfig, ManualClock, Request, ReservationId, ReserveRequest, Sku, StoreConfig,
};
use stockd_wal::format::{read_frame, Frame, SEGMENT_HEADER_LEN};

fn open(dir: &Path) -> (Engine, stockd_engine::RecoveryReport) {
    let store = StoreConfig { segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN, ..StoreConfig::new(dir) };
    let config = EngineConfig { shards: 1, ..EngineConfig::default() };
    Engine::open(config, store, Arc::new(ManualClock::new(1_000_000)), &Default::default()).expect("recovers")
}

fn reserve(id: &str) -> Request {
    let lines = vec![
        CartLine { sku: Sku::new("sku-1").unwrap(), qty: 2 },
        CartLine { sku: Sku::new("sku-2").unwrap(), qty: 1 },
    ];
    Request::Reserve(ReserveRequest { id: ReservationId::new(id).unwrap(), lines, ttl_ms: None })
}

fn state(engine: &Engine) -> StateImage {
    let image = futures::executor::block_on(engine.capture_states()).unwrap().remove(0);
    StateImage { now_ms: 0, ..image.canonical() }
}

fn segment(dir: &Path) -> PathBuf {
    let shard = dir.join("shard-00");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&shard)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

/// (start, end) of the last record in a segment.
fn last_record(bytes: &[u8]) -> (usize, usize) {
    let mut at = SEGMENT_HEADER_LEN;
    let mut last = None;
    while let Frame::Record { next, payload, .. } = read_frame(bytes, at) {
        last = Some((at, at + 32 + payload.len()));
        at = next;
    }
    last.expect("the log has records")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("shard-00")).unwrap();
    std::fs::copy(from.join("stockd.manifest"), to.join("stockd.manifest")).unwrap();
    for entry in std::fs::read_dir(from.join("shard-00")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join("shard-00").join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn the_last_record_torn_at_every_byte_recovers_to_the_record_before() {
    let dir = tempfile::tempdir().unwrap();
    let (before, with_last) = {
        let (engine, _) = open(dir.path());
        for sku in ["sku-1", "sku-2"] {
            engine
                .submit_blocking(Request::SetStock { sku: Sku::new(sku).unwrap(), on_hand: 10, expected_version: None })
                .unwrap();
        }
        engine.submit_blocking(reserve("first")).unwrap();
        let before = state(&engine);
        engine.submit_blocking(reserve("last")).unwrap();
        let with_last = state(&engine);
        assert_ne!(with_last, before);
        (before, with_last)
    };
    let bytes = std::fs::read(segment(dir.path())).unwrap();
    let (start, end) = last_record(&bytes);
    let mut torn_reports = 0;
    for cut in start..end {
        for zeroed in [false, true] {
            let scratch = tempfile::tempdir().unwrap();
            copy_dir(dir.path(), scratch.path());
            let file = std::fs::OpenOptions::new().write(true).open(segment(scratch.path())).unwrap();
            if zeroed {
                use std::os::unix::fs::FileExt;
                file.write_all_at(&vec![0u8; end - cut], cut as u64).unwrap();
            } else {
                file.set_len(cut as u64).unwrap();
            }
            drop(file);
            let (engine, report) = open(scratch.path());
            // Zeroing bytes that were zero already (the end of an archive
            // often is) leaves the record whole.
            let intact = zeroed && bytes[cut..end].iter().all(|&byte| byte == 0);
            let expected = if intact { &with_last } else { &before };
            assert_eq!(&state(&engine), expected, "cut at byte {cut} (zeroed: {zeroed})");
            let torn = report.shards[0].torn_tail.as_ref();
            // A record cut before any byte of it is written is simply absent.
            if cut > start && !intact {
                assert_eq!(
                    torn.map(|torn| torn.1),
                    Some(start as u64),
                    "cut at byte {cut}: the torn record is reported"
                );
                torn_reports += 1;
            }
            // The log goes on after the cut, and the new record survives a restart.
            engine.submit_blocking(reserve("after")).unwrap();
            let after = state(&engine);
            drop(engine);
            assert_eq!(state(&open(scratch.path()).0), after, "cut at byte {cut}: the record after the cut is kept");
        }
    }
    assert!(torn_reports > 100, "every byte of the record was tried");
}
