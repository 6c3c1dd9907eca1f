//! Arbitrary bytes as the tail of a WAL segment (after a valid header):
//! scanning never panics, every record it returns carries a payload that
//! decodes or is reported as corruption, and a scan either succeeds or
//! names a file and offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use stockd_wal::format::{encode_segment_header, segment_file_name};
use stockd_wal::{MemStorage, Storage};

fuzz_target!(|data: &[u8]| {
    let storage = MemStorage::new();
    let dir = Path::new("/data/shard-00");
    storage.create_dir_all(dir).expect("memory");
    let file = storage.create(&dir.join(segment_file_name(1))).expect("memory");
    file.write_at(0, &encode_segment_header(0, 1)).expect("memory");
    file.write_at(32, data).expect("memory");
    let _ = stockd_wal::scan(storage.as_ref(), dir, 0, 0, |_, payload| {
        stockd_engine::tools::decode_payload(payload).map(|_| std::ops::ControlFlow::Continue(()))
    });
});
