//! stockd-server: the `stockd` binary's code: the HTTP API over the engine,
//! the command line, the SRE tools, the load generator and the demo. It is
//! the only crate that speaks HTTP and JSON; the engine knows neither.
//!
//! # Layout
//! - `cli`: command-line parsing and dispatch.
//! - `config`: `serve` settings from flags, environment and a TOML file.
//! - `serve`: bind, recover, serve, shut down gracefully.
//! - `listener`: connection cap and TLS.
//! - `http`: the API v1: routes, auth, bodies, errors, metrics, OpenAPI.
//! - `client`: a minimal HTTP/1.1 client (load generator and tests).
//! - `loadgen`: the flash-sale load generator.
//! - `wal_tools`: `stockd wal ...` and `stockd snapshot`.
//! - `progress`: the recovery progress bar.
//! - `demo`: the in-process flash sale.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod http;
pub mod listener;
pub mod loadgen;
pub mod progress;
pub mod serve;
pub mod wal_tools;
