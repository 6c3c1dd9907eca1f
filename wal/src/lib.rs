//! stockd-wal: the segmented, checksummed, group-committed write-ahead log.
//! It knows bytes, not inventory: it never imports the engine.
//!
//! Not built yet (tracked in the WAL issue). The engine's shard loop already
//! has the shape the log needs: commands are applied by value, each batch is
//! followed by one durability point before publish and replies, and queries
//! are marked so they are never logged.
#![forbid(unsafe_code)]
