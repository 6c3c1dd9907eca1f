//! `stockd serve` configuration: a flag (or its `STOCKD_*` environment
//! variable) wins over the TOML file (`--config`), which wins over the
//! default. The defaults run out of the box: 127.0.0.1:8080, `./data`,
//! fsync always, no TLS, and no tokens (allowed on loopback only).

use crate::http::auth::Role;
use crate::http::HttpLimits;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use stockd_engine::limits::{QUEUE_LEN_MAX_DEFAULT, RETENTION_MS_DEFAULT, TTL_MS_DEFAULT};
use stockd_engine::store::SNAPSHOT_EVERY_BYTES_DEFAULT;

/// Bounds of settings that are not request limits: past them a start would
/// fail late (a segment the disk cannot preallocate is a storage failure,
/// which refuses every start until a reboot) or allocate without need (a
/// queue's slots are allocated up front).
const SEGMENT_BYTES_MAX: u64 = 1 << 30;
const SNAPSHOT_EVERY_BYTES_MIN: u64 = 64 << 10;
const QUEUE_LEN_MAX: u64 = 1 << 20;
const CONNECTIONS_MAX: u64 = 1 << 20;
use stockd_engine::{EngineConfig, FsyncPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// fdatasync before every answer (group-committed). The default.
    Always,
    /// Never fsync: a crash loses acknowledged work. CPU benchmarks only.
    Never,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags win over it).
    #[arg(long, env = "STOCKD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on; `127.0.0.1:0` picks a free port (the log says which).
    #[arg(long, env = "STOCKD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where the WAL and snapshots live.
    #[arg(long, env = "STOCKD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Shards, fixed for the life of a data directory (default: the
    /// directory's own count; for a new one half the cores, at least 1).
    #[arg(long, env = "STOCKD_SHARDS")]
    pub shards: Option<usize>,
    #[arg(long, env = "STOCKD_FSYNC", value_enum)]
    pub fsync: Option<Fsync>,
    /// Serve a non-loopback address without tokens (refused otherwise);
    /// `--insecure-no-auth=false` turns off a `true` in the file.
    #[arg(long, env = "STOCKD_INSECURE_NO_AUTH", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_no_auth: Option<bool>,
    /// A bearer token as `role:token` (roles: admin, checkout, read); repeat, or
    /// comma-separate in STOCKD_TOKENS. Given here, they replace the file's
    /// tokens (so a rotated token is not still accepted from the file).
    #[arg(long = "token", env = "STOCKD_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub tokens: Vec<String>,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, env = "STOCKD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "STOCKD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Most concurrent connections.
    #[arg(long, env = "STOCKD_CONNECTIONS_MAX")]
    pub connections_max: Option<usize>,
    /// Answer 503 `request_timeout` after this long.
    #[arg(long, env = "STOCKD_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Largest request body (413 past it); `/v1/batch` has its own.
    #[arg(long, env = "STOCKD_BODY_BYTES_MAX")]
    pub body_bytes_max: Option<usize>,
    #[arg(long, env = "STOCKD_BATCH_BODY_BYTES_MAX")]
    pub batch_body_bytes_max: Option<usize>,
    #[arg(long, env = "STOCKD_BATCH_OPS_MAX")]
    pub batch_ops_max: Option<usize>,
    /// Hold length when a reservation names none.
    #[arg(long, env = "STOCKD_TTL_MS_DEFAULT")]
    pub ttl_ms_default: Option<u64>,
    /// How long finished reservations are remembered (retries dedupe).
    #[arg(long, env = "STOCKD_RETENTION_MS")]
    pub retention_ms: Option<u64>,
    /// Depth of each shard's queue (503 `busy` past it).
    #[arg(long, env = "STOCKD_QUEUE_LEN_MAX")]
    pub queue_len_max: Option<usize>,
    #[arg(long, env = "STOCKD_SEGMENT_BYTES_MAX")]
    pub segment_bytes_max: Option<u64>,
    /// Snapshot each shard after this many bytes of WAL.
    #[arg(long, env = "STOCKD_SNAPSHOT_EVERY_BYTES")]
    pub snapshot_every_bytes: Option<u64>,
    /// Zero-fill each shard's next segment ahead of need (true: faster
    /// fsyncs; false: less disk I/O, see README).
    #[arg(long, env = "STOCKD_SPARE_SEGMENTS")]
    pub spare_segments: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    shards: Option<usize>,
    fsync: Option<Fsync>,
    insecure_no_auth: Option<bool>,
    #[serde(default)]
    tokens: Vec<FileToken>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    connections_max: Option<usize>,
    request_timeout_ms: Option<u64>,
    body_bytes_max: Option<usize>,
    batch_body_bytes_max: Option<usize>,
    batch_ops_max: Option<usize>,
    ttl_ms_default: Option<u64>,
    retention_ms: Option<u64>,
    queue_len_max: Option<usize>,
    segment_bytes_max: Option<u64>,
    snapshot_every_bytes: Option<u64>,
    spare_segments: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    token: String,
    role: Role,
}

/// Everything `serve` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub engine: EngineConfig,
    pub fsync: FsyncPolicy,
    pub segment_bytes_max: u64,
    pub snapshot_every_bytes: u64,
    pub spare_segments: bool,
    pub tokens: Vec<(String, Role)>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub connections_max: usize,
    pub limits: HttpLimits,
}

impl Config {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileConfig>(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let defaults = EngineConfig::default();
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data"));
        // Unset, the shard count is the data directory's (fixed for its
        // life), so a start after a change of cores or CPU quota still
        // opens it; the core-based default is for a new directory.
        let recorded_shards =
            || stockd_engine::store::recorded_shards(&stockd_wal::FsStorage, &data_dir).ok().flatten();
        let engine = EngineConfig {
            shards: args.shards.or(file.shards).or_else(recorded_shards).unwrap_or(defaults.shards),
            queue_len_max: args.queue_len_max.or(file.queue_len_max).unwrap_or(QUEUE_LEN_MAX_DEFAULT),
            ttl_ms_default: args.ttl_ms_default.or(file.ttl_ms_default).unwrap_or(TTL_MS_DEFAULT),
            retention_ms: args.retention_ms.or(file.retention_ms).unwrap_or(RETENTION_MS_DEFAULT),
            ..defaults
        };
        let http = HttpLimits::default();
        let limits = HttpLimits {
            body_bytes_max: args.body_bytes_max.or(file.body_bytes_max).unwrap_or(http.body_bytes_max),
            batch_body_bytes_max: args
                .batch_body_bytes_max
                .or(file.batch_body_bytes_max)
                .unwrap_or(http.batch_body_bytes_max),
            batch_ops_max: args.batch_ops_max.or(file.batch_ops_max).unwrap_or(http.batch_ops_max),
            request_timeout: args
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .map_or(http.request_timeout, Duration::from_millis),
        };
        let mut tokens: Vec<(String, Role)> = Vec::new();
        for text in &args.tokens {
            let (role, token) = text.split_once(':').context("a token is given as role:token")?;
            let role = Role::parse(role).with_context(|| format!("unknown role {role:?} (admin, checkout, read)"))?;
            tokens.push((token.to_owned(), role));
        }
        if args.tokens.is_empty() {
            tokens = file.tokens.into_iter().map(|entry| (entry.token, entry.role)).collect();
        }
        // A token must be presentable as `Authorization: Bearer <token>`.
        if let Some((_, role)) =
            tokens.iter().find(|(token, _)| token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            bail!(
                "a {} token is empty or has spaces or characters outside visible ASCII",
                format!("{role:?}").to_lowercase()
            );
        }
        let fsync = match args.fsync.or(file.fsync).unwrap_or(Fsync::Always) {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Never => FsyncPolicy::Never,
        };
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("TLS needs both --tls-cert and --tls-key"),
        };
        let config = Config {
            listen: args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            engine,
            fsync,
            segment_bytes_max: args
                .segment_bytes_max
                .or(file.segment_bytes_max)
                .unwrap_or(stockd_wal::SEGMENT_BYTES_DEFAULT),
            snapshot_every_bytes: args
                .snapshot_every_bytes
                .or(file.snapshot_every_bytes)
                .unwrap_or(SNAPSHOT_EVERY_BYTES_DEFAULT),
            spare_segments: args.spare_segments.or(file.spare_segments).unwrap_or(true),
            tokens,
            tls,
            connections_max: args.connections_max.or(file.connections_max).unwrap_or(1_024),
            limits,
        };
        config.check(args.insecure_no_auth.or(file.insecure_no_auth).unwrap_or(false))?;
        Ok(config)
    }

    fn check(&self, insecure_no_auth: bool) -> anyhow::Result<()> {
        if self.tokens.is_empty() && !self.listen.ip().is_loopback() && !insecure_no_auth {
            bail!(
                "refusing to serve {} without tokens: configure --token role:token (or STOCKD_TOKENS), \
                 or pass --insecure-no-auth if this address is private",
                self.listen
            );
        }
        let limits = &self.limits;
        let ttl_ms = (stockd_engine::limits::TTL_MS_MIN, stockd_engine::limits::TTL_MS_MAX);
        // (flag, value, least, most): every setting's range, checked alike.
        let ranges = [
            ("--shards", self.engine.shards as u64, 1, stockd_engine::limits::SHARDS_MAX as u64),
            ("--ttl-ms-default", self.engine.ttl_ms_default, ttl_ms.0, ttl_ms.1),
            ("--retention-ms", self.engine.retention_ms, 1, u64::MAX),
            ("--request-timeout-ms", limits.request_timeout.as_millis() as u64, 1, u64::MAX),
            ("--body-bytes-max", limits.body_bytes_max as u64, 1, u64::MAX),
            ("--batch-body-bytes-max", limits.batch_body_bytes_max as u64, 1, u64::MAX),
            ("--batch-ops-max", limits.batch_ops_max as u64, 1, stockd_engine::limits::BATCH_REQUESTS_MAX as u64),
            ("--segment-bytes-max", self.segment_bytes_max, stockd_wal::SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX),
            ("--snapshot-every-bytes", self.snapshot_every_bytes, SNAPSHOT_EVERY_BYTES_MIN, u64::MAX),
            ("--queue-len-max", self.engine.queue_len_max as u64, 1, QUEUE_LEN_MAX),
            ("--connections-max", self.connections_max as u64, 1, CONNECTIONS_MAX),
        ];
        match ranges.iter().find(|(_, value, least, most)| !(least..=most).contains(&value)) {
            Some((flag, _, least, u64::MAX)) => bail!("{flag} must be at least {least}"),
            Some((flag, _, least, most)) => bail!("{flag} must be {least}..={most}"),
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str) -> ServeArgs {
        ServeArgs { listen: Some(listen.parse().unwrap()), ..ServeArgs::default() }
    }

    /// With no shard count given, a data directory's own is used (a start
    /// after a change of cores opens it); a given one still wins.
    #[test]
    fn an_unset_shard_count_is_the_data_directory_s() {
        let dir = tempfile::tempdir().unwrap();
        // Not the default (which is at most the 64 shards allowed).
        let shards = EngineConfig::default().shards % 64 + 1;
        let store = stockd_engine::StoreConfig {
            spare_segments: false,
            segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN,
            ..stockd_engine::StoreConfig::new(dir.path())
        };
        let clock = std::sync::Arc::new(stockd_engine::SystemClock);
        let config = EngineConfig { shards, ..EngineConfig::default() };
        drop(stockd_engine::Engine::open(config, store, clock, &Default::default()).unwrap());
        let in_dir = ServeArgs { data_dir: Some(dir.path().to_owned()), ..args("127.0.0.1:0") };
        assert_eq!(Config::resolve(in_dir.clone()).unwrap().engine.shards, shards);
        assert_eq!(Config::resolve(ServeArgs { shards: Some(1), ..in_dir }).unwrap().engine.shards, 1);
        let new_dir = ServeArgs { data_dir: Some(dir.path().join("new")), ..args("127.0.0.1:0") };
        assert_eq!(Config::resolve(new_dir).unwrap().engine.shards, EngineConfig::default().shards);
    }

    #[test]
    fn a_public_address_without_tokens_is_refused_unless_overridden() {
        assert!(Config::resolve(args("127.0.0.1:0")).is_ok());
        let error = Config::resolve(args("0.0.0.0:8080")).unwrap_err().to_string();
        assert!(error.contains("refusing"), "{error}");
        assert!(Config::resolve(ServeArgs { insecure_no_auth: Some(true), ..args("0.0.0.0:8080") }).is_ok());
        assert!(Config::resolve(ServeArgs { tokens: vec!["admin:x".into()], ..args("0.0.0.0:8080") }).is_ok());
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        assert!(Config::resolve(args("127.0.0.1:0")).unwrap().spare_segments, "spares are on by default");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stockd.toml");
        let text = "shards = 3\ndata_dir = \"/from/file\"\nretention_ms = 5000\nspare_segments = false\n\
            [[tokens]]\ntoken = \"t\"\nrole = \"read\"\n";
        std::fs::write(&path, text).unwrap();
        let args = ServeArgs { config: Some(path), shards: Some(2), ..args("127.0.0.1:0") };
        let config = Config::resolve(args).unwrap();
        assert_eq!(config.engine.shards, 2, "the flag wins");
        assert_eq!(config.data_dir, PathBuf::from("/from/file"), "the file wins over the default");
        assert_eq!(config.engine.retention_ms, 5_000);
        assert!(!config.spare_segments, "the file turned spares off");
        assert_eq!(config.engine.ttl_ms_default, TTL_MS_DEFAULT, "the default fills the rest");
        assert_eq!(config.tokens, vec![("t".to_owned(), Role::Read)]);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        assert!(Config::resolve(ServeArgs { tokens: vec!["boss:x".into()], ..args("127.0.0.1:0") }).is_err());
        for token in ["admin:", "admin:with space", "read:tab\there"] {
            let error = Config::resolve(ServeArgs { tokens: vec![token.into()], ..args("0.0.0.0:8080") }).unwrap_err();
            assert!(error.to_string().contains("token is empty or has spaces"), "{token}: {error}");
        }
        assert!(Config::resolve(ServeArgs { shards: Some(0), ..args("127.0.0.1:0") }).is_err());
        assert!(Config::resolve(ServeArgs { tls_cert: Some("c.pem".into()), ..args("127.0.0.1:0") }).is_err());
        let zero_timeout = Config::resolve(ServeArgs { request_timeout_ms: Some(0), ..args("127.0.0.1:0") });
        assert!(zero_timeout.unwrap_err().to_string().contains("--request-timeout-ms"));
        assert!(Config::resolve(ServeArgs { batch_ops_max: Some(0), ..args("127.0.0.1:0") }).is_err());
        assert!(Config::resolve(ServeArgs { body_bytes_max: Some(0), ..args("127.0.0.1:0") }).is_err());
        let out_of_range = [
            (
                "--segment-bytes-max must be 1048576..=1073741824",
                ServeArgs { segment_bytes_max: Some(SEGMENT_BYTES_MAX + 1), ..args("127.0.0.1:0") },
            ),
            (
                "--snapshot-every-bytes must be at least 65536",
                ServeArgs { snapshot_every_bytes: Some(0), ..args("127.0.0.1:0") },
            ),
            ("--queue-len-max must be 1..=1048576", ServeArgs { queue_len_max: Some(0), ..args("127.0.0.1:0") }),
            (
                "--queue-len-max must be 1..=1048576",
                ServeArgs { queue_len_max: Some(4_000_000_000), ..args("127.0.0.1:0") },
            ),
            (
                "--connections-max must be 1..=1048576",
                ServeArgs { connections_max: Some(1 << 62), ..args("127.0.0.1:0") },
            ),
            ("--shards must be 1..=64", ServeArgs { shards: Some(65), ..args("127.0.0.1:0") }),
            (
                "--ttl-ms-default must be 1000..=86400000",
                ServeArgs { ttl_ms_default: Some(999), ..args("127.0.0.1:0") },
            ),
            ("--retention-ms must be at least 1", ServeArgs { retention_ms: Some(0), ..args("127.0.0.1:0") }),
            ("--batch-ops-max must be 1..=100000", ServeArgs { batch_ops_max: Some(100_001), ..args("127.0.0.1:0") }),
        ];
        for (expected, args) in out_of_range {
            let error = Config::resolve(args).unwrap_err().to_string();
            assert_eq!(error, expected);
        }
    }

    /// Tokens given by flag or variable replace the file's, so rotating one
    /// there does not leave the old one valid; `--insecure-no-auth=false`
    /// overrides the file's `true`.
    #[test]
    fn tokens_and_the_auth_override_from_flags_replace_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stockd.toml");
        std::fs::write(&path, "insecure_no_auth = true\n[[tokens]]\ntoken = \"old\"\nrole = \"admin\"\n").unwrap();
        let with_file = |args: ServeArgs| ServeArgs { config: Some(path.clone()), ..args };
        let rotated = Config::resolve(with_file(ServeArgs { tokens: vec!["admin:new".into()], ..args("127.0.0.1:0") }));
        assert_eq!(rotated.unwrap().tokens, vec![("new".to_owned(), Role::Admin)]);
        assert_eq!(
            Config::resolve(with_file(args("127.0.0.1:0"))).unwrap().tokens,
            vec![("old".to_owned(), Role::Admin)]
        );

        std::fs::write(&path, "insecure_no_auth = true\n").unwrap();
        assert!(Config::resolve(with_file(args("0.0.0.0:8080"))).is_ok(), "the file allows it");
        let refused = Config::resolve(with_file(ServeArgs { insecure_no_auth: Some(false), ..args("0.0.0.0:8080") }));
        assert!(refused.unwrap_err().to_string().contains("refusing"), "the flag turns it off");
    }
}
