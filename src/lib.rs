//! The `stockd` workspace root package. It holds no code of its own: it owns
//! the integration tests in `tests/` and the criterion benchmarks in
//! `benches/`, which exercise the member crates (`stockd-engine`,
//! `stockd-wal`, `stockd-server`) from the outside.
#![forbid(unsafe_code)]
