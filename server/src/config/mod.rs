//! Gantry's configuration: built-in defaults, then a TOML file, then
//! environment variables, then command-line flags — each layer overrides the
//! one before. Every value remembers which layer set it, so errors and the
//! Settings page can say where a value came from.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::Rejected;
use serde::Deserialize;

pub mod duration;

/// The file read when neither `--config` nor `GANTRY_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "gantry.toml";
pub const DEFAULT_BIND: &str = "127.0.0.1:3000";
pub const DEFAULT_DATA_DIR: &str = ".gantry";
/// The host's name, the default name of a replica (a pod's name in a
/// cluster).
fn default_replica_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| replica_name(name).is_ok())
        .unwrap_or_else(|| "gantry".to_string())
}

/// A replica's name: 1–63 letters, digits, `.`, `_` or `-` (it is shown
/// and compared, never used as a path).
fn replica_name(text: &str) -> Result<String, Rejected> {
    let fine = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(text.to_string())
    } else {
        Err(Rejected::from(
            "expected a replica name: 1 to 63 letters, digits, '.', '_' or '-'".to_string(),
        ))
    }
}

pub const DEFAULT_MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

/// The environment variables Gantry reads. Any other `GANTRY_*` variable is
/// an error: a typo must not silently fall back to a default.
pub const ENV_VARS: &[&str] = &[
    "GANTRY_CONFIG",
    "GANTRY_BIND",
    "GANTRY_PUBLIC_URL",
    "GANTRY_DATA",
    "DATABASE_URL",
    "GANTRY_LOG",
    "GANTRY_LOG_FORMAT",
    "GANTRY_MAX_BODY_BYTES",
    "GANTRY_PIPELINE_REPO",
    "GANTRY_PIPELINE_BRANCH",
    "GANTRY_POLL_INTERVAL",
    "GANTRY_RUNNER_MAX_PARALLEL",
    "GANTRY_RUNNER_LOG_LIMIT_BYTES",
    "GANTRY_RUNNER_LEASE",
    "GANTRY_RUNNER_REPLICA",
    "GANTRY_RUNNER_LOCAL_REPLICA",
    "GANTRY_RUNNER_SANDBOX",
    "GANTRY_RUNNER_USER",
    "GANTRY_RUNNER_UIDS",
    "GANTRY_RUNNER_BUILD_UIDS",
    "GANTRY_RUNNER_BLOCKED_NETWORKS",
    "GANTRY_RUNNER_READ_ONLY_PATHS",
    "GANTRY_RUNNER_HELPER",
    "GANTRY_HELM_PATH",
    "GANTRY_BUILDS_EXECUTOR",
    "GANTRY_BUILDS_LOCAL",
    "GANTRY_BUILDS_HELPER_IMAGE",
    "GANTRY_BUILDS_CALLBACK_URL",
    "GANTRY_BUILDS_UNREACHABLE_AFTER",
    "GANTRY_PREVIEW_DOMAIN",
    "GANTRY_TRUSTED_PROXIES",
    "GANTRY_ALLOWED_HOSTS",
    "GANTRY_GIT_MAX_PARALLEL",
    "GANTRY_GIT_EXPORT_MAX_BYTES",
    "GANTRY_GIT_EXPORT_MAX_ENTRIES",
    "GANTRY_GIT_EXPORT_MAX_DEPTH",
    "GANTRY_SECRET_KEY_FILE",
    "GANTRY_DRIFT_INTERVAL",
    "GANTRY_OIDC_ISSUER",
    "GANTRY_OIDC_CLIENT_ID",
    "GANTRY_OIDC_CLIENT_SECRET",
    "GANTRY_ROLES_CLAIM",
    "GANTRY_FORGE_LOGIN_CLAIM",
    "GANTRY_DEV_LOGIN",
    "GANTRY_SESSION_IDLE",
    "GANTRY_SESSION_MAX",
    "GANTRY_REAUTH_MAX_AGE",
    "GANTRY_SHARE_ANONYMOUS",
    "GANTRY_SHARE_TTL",
    // Read by the `gantry cluster` and `gantry cr` commands, not the server.
    "GANTRY_TOKEN",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid value {value:?} for {key} (from {origin}): {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        origin: Origin,
        reason: Rejected,
    },
    #[error("unknown environment variable {name}; Gantry reads {}", ENV_VARS.join(", "))]
    UnknownEnv { name: String },
    #[error("cannot resolve the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which layer set a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
    /// `gantry demo` chose it (its own pipeline repo, the dev login).
    Demo,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(name) => write!(f, "environment {name}"),
            Origin::Flag(name) => write!(f, "flag {name}"),
            Origin::Demo => f.write_str("gantry demo"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Where the data lives: a SQLite file (the embedded default) or PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseTarget {
    /// Parses a `DATABASE_URL`-style value: `sqlite:<path>`, `sqlite://<path>`
    /// or `postgres://…` / `postgresql://…`.
    pub fn parse(url: &str) -> Result<Self, Rejected> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(url.to_string()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(
                    "a sqlite URL needs a file path, e.g. sqlite:///var/lib/gantry/gantry.db"
                        .into(),
                );
            }
            return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
        }
        Err("expected a URL starting with postgres://, postgresql:// or sqlite:".into())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseTarget::Sqlite(_) => "sqlite",
            DatabaseTarget::Postgres(_) => "postgres",
        }
    }
}

/// The resolved configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    /// The address people reach Gantry at; environment URLs of the local
    /// target are `<env>--<app>.<host>` of it.
    pub public_url: url::Url,
    pub data_dir: PathBuf,
    pub database: DatabaseTarget,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub max_body_bytes: u64,
    /// The pipeline repo (any git URL or a local path); none = no apps yet.
    pub pipeline_repo: Option<String>,
    pub pipeline_branch: String,
    /// How often the pipeline repo and app repos are fetched.
    pub poll_interval: std::time::Duration,
    pub runner_max_parallel: usize,
    pub runner_log_limit_bytes: u64,
    /// `runner.lease`: a replica owns a run while it renews the run's lease
    /// (every third of this); a run whose lease expired is taken over.
    pub runner_lease: std::time::Duration,
    /// `runner.replica`: this replica's name (default: the host's name), in
    /// run attempts, loop holders and `runner.local_replica`.
    pub replica: String,
    /// `runner.local_replica`: with several replicas, the one that runs
    /// the environments of the `local` target (their processes live on
    /// its machine); none = any replica (one replica, or SQLite).
    pub local_replica: Option<String>,
    /// `runner.sandbox`: steps and local apps run sandboxed (`bwrap`, the
    /// default) or, by an admin's explicit choice, not at all (`none`).
    pub sandbox: bool,
    /// Who sandboxed processes run as when Gantry runs as root and no uid
    /// of `runner_uids` is free.
    pub runner_user: (u32, u32),
    /// `runner.uids`: the range each sandbox's own uid is leased from.
    pub runner_uids: (u32, u32),
    /// `runner.build_uids`: blocks of 65536 uids, one per image build at a
    /// time, for the users of its namespace.
    pub runner_build_uids: (u32, u32),
    /// More host paths sandboxes see read-only (toolchains outside /usr).
    pub runner_read_only_paths: Vec<PathBuf>,
    /// `runner.blocked_networks`: networks sandboxes may not reach, beyond
    /// the built-in list (link-local, cloud metadata, the host's own
    /// addresses), as `address/prefix`.
    pub runner_blocked_networks: Vec<String>,
    /// The `gantry-sandbox` helper (default: next to the gantry binary).
    pub sandbox_helper: PathBuf,
    /// The `helm` that renders charts (default: `helm` on the PATH).
    pub helm_path: PathBuf,
    /// The image of build pods' `fetch` and `collect` containers: Gantry's
    /// own (its entrypoint `gantry`, which has `build-helper`).
    pub builds_helper_image: String,
    /// Where build pods reach this replica (their workspace's way in and
    /// out): the public URL unless set — with several replicas, each
    /// replica's own address.
    pub builds_callback_url: url::Url,
    /// `builds.executor`: where steps run when neither their pipeline nor
    /// the pipeline repo's admin file says — `local` (None) or a build
    /// cluster and namespace (`kubernetes:<cluster>[/<namespace>]`).
    pub builds_executor: Option<BuildCluster>,
    /// `builds.local`: local steps and the local target are allowed (the
    /// default) or refused (`refuse`: a Gantry in a cluster, whose pod
    /// has no sandbox to give them).
    pub builds_local: bool,
    /// `builds.unreachable_after`: how long a build cluster may not answer
    /// about a running step's pod before the step fails (default 60 s).
    pub builds_unreachable_after: std::time::Duration,
    /// Environments of the local target are served on
    /// `<env>--<app>.<preview_domain>`: a host of their own, never the
    /// dashboard's (default: the public URL's host, e.g. `*.localhost`).
    pub preview_domain: String,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies).
    pub trusted_proxies: Vec<IpNet>,
    /// `server.allowed_hosts`: names the dashboard answers to besides the
    /// public URL's host, `localhost` and IP addresses (a DNS-rebinding
    /// page comes under a name of its own, and is refused).
    pub allowed_hosts: Vec<String>,
    pub git_max_parallel: usize,
    /// `git.export_max_bytes`, `_entries`, `_depth`: what one checkout of
    /// a commit (a developer's tree) may write.
    pub git_export_limits: crate::git::ExportLimits,
    /// The key that encrypts secrets at rest.
    pub secret_key_file: PathBuf,
    /// How often live cluster state is compared with the last deployment.
    pub drift_interval: std::time::Duration,
    /// OpenID Connect single sign-on (none: only API tokens and, if
    /// enabled, the dev login).
    pub oidc: Option<OidcSettings>,
    /// The claim whose values map to roles.
    pub roles_claim: String,
    /// The ID-token claim that carries the person's forge account (when the
    /// identity provider is the forge, or shares its accounts): how forge
    /// authors, mergers and pushers become Gantry identities. None: no
    /// forge account is anyone's, and forge merges and pushes count for
    /// nothing.
    pub forge_login_claim: Option<String>,
    /// The demo's sign-in without a password (loopback binds only).
    pub dev_login: bool,
    /// A session ends after this long without a request...
    pub session_idle: std::time::Duration,
    /// ...and after this long in any case.
    pub session_max: std::time::Duration,
    /// How recent a sign-in must be to approve for an environment that
    /// demands a fresh one.
    pub reauth_max_age: std::time::Duration,
    /// Preview share links open without an account (otherwise: any
    /// signed-in person).
    pub share_anonymous: bool,
    /// How long a new share link works.
    pub share_ttl: std::time::Duration,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Each setting, its value as shown to people, and the layer that set it.
    pub sources: Vec<(&'static str, String, Origin)>,
}

/// The identity provider Gantry signs people in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
}

/// Values given on the command line (`None` when the flag is absent).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub bind: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub pipeline_repo: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    pub dev_login: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    server: ServerSection,
    storage: StorageSection,
    log: LogSection,
    pipeline: PipelineSection,
    runner: RunnerSection,
    git: GitSection,
    secrets: SecretsSection,
    drift: DriftSection,
    auth: AuthSection,
    deploy: DeploySection,
    builds: BuildsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BuildsSection {
    helper_image: Option<String>,
    callback_url: Option<String>,
    executor: Option<String>,
    local: Option<String>,
    unreachable_after: Option<String>,
}

/// A build cluster and namespace (`builds.executor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildCluster {
    pub cluster: String,
    pub namespace: String,
}

/// `local`, or `kubernetes:<cluster>[/<namespace>]`.
fn parse_executor(text: &str) -> Result<Option<BuildCluster>, Rejected> {
    let text = text.trim();
    if text == "local" {
        return Ok(None);
    }
    let Some(place) = text.strip_prefix("kubernetes:") else {
        return Err("expected `local` or `kubernetes:<cluster>[/<namespace>]`".into());
    };
    let (cluster, namespace) = place.split_once('/').unwrap_or((place, "gantry-builds"));
    let label = |name: &str| {
        !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !label(cluster) || !label(namespace) {
        return Err(format!("{text:?}: the cluster and namespace are lowercase names").into());
    }
    Ok(Some(BuildCluster {
        cluster: cluster.to_string(),
        namespace: namespace.to_string(),
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DeploySection {
    helm_path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PipelineSection {
    repo: Option<String>,
    branch: Option<String>,
    poll_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RunnerSection {
    max_parallel: Option<u64>,
    log_limit_bytes: Option<u64>,
    lease: Option<String>,
    replica: Option<String>,
    local_replica: Option<String>,
    sandbox: Option<String>,
    user: Option<String>,
    uids: Option<String>,
    build_uids: Option<String>,
    read_only_paths: Option<Vec<String>>,
    blocked_networks: Option<Vec<String>>,
    helper: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GitSection {
    max_parallel: Option<u64>,
    export_max_bytes: Option<u64>,
    export_max_entries: Option<u64>,
    export_max_depth: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SecretsSection {
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DriftSection {
    interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AuthSection {
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<String>,
    roles_claim: Option<String>,
    forge_login_claim: Option<String>,
    dev_login: Option<bool>,
    session_idle: Option<String>,
    session_max: Option<String>,
    reauth_max_age: Option<String>,
    share_anonymous: Option<bool>,
    share_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServerSection {
    bind: Option<String>,
    public_url: Option<String>,
    max_body_bytes: Option<u64>,
    preview_domain: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StorageSection {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LogSection {
    level: Option<String>,
    format: Option<LogFormat>,
}

impl Config {
    /// Resolves the configuration from the process environment and `flags`.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::resolve(flags, &env)
    }

    /// Resolves the configuration from explicit layers (tests use this).
    pub fn resolve(flags: &Flags, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let env_value = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, v)| v.clone())
        };
        for (name, _) in env {
            if name.starts_with("GANTRY_") && !ENV_VARS.contains(&name.as_str()) {
                return Err(ConfigError::UnknownEnv { name: name.clone() });
            }
        }

        let (file_path, file) = match (&flags.config, env_value("GANTRY_CONFIG")) {
            (Some(path), _) => (Some(path.clone()), Some(read_file(path)?)),
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let file = read_file(&path)?;
                (Some(path), Some(file))
            }
            (None, None) if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                let file = read_file(&path)?;
                (Some(path), Some(file))
            }
            (None, None) => (None, None),
        };
        let file = file.unwrap_or_default();
        // Paths in the file are relative to the file, not to where Gantry runs.
        let file_dir = file_path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();

        let mut layers = Layers {
            env,
            file_origin: file_path.clone(),
            sources: Vec::new(),
        };
        let file_path_value = |path: &Option<PathBuf>| {
            path.as_ref()
                .map(|p| file_dir.join(p).display().to_string())
        };

        let bind = layers.resolve(
            "server.bind",
            DEFAULT_BIND,
            file.server.bind.clone(),
            Some("GANTRY_BIND"),
            flags.bind.map(|v| (v.to_string(), "--bind")),
            |text| {
                SocketAddr::from_str(text)
                    .map_err(|_| "expected an address like 127.0.0.1:3000".to_string())
            },
        )?;
        let default_public = format!("http://localhost:{}/", bind.port());
        let public_url = layers.resolve(
            "server.public_url",
            &default_public,
            file.server.public_url.clone(),
            Some("GANTRY_PUBLIC_URL"),
            flags.public_url.clone().map(|v| (v, "--public-url")),
            parse_public_url,
        )?;
        let max_body_bytes = layers.resolve(
            "server.max_body_bytes",
            &DEFAULT_MAX_BODY_BYTES.to_string(),
            file.server.max_body_bytes.map(|v| v.to_string()),
            Some("GANTRY_MAX_BODY_BYTES"),
            None,
            positive,
        )?;
        let data_text = layers.resolve(
            "storage.data_dir",
            DEFAULT_DATA_DIR,
            file_path_value(&file.storage.data_dir),
            Some("GANTRY_DATA"),
            flags
                .data_dir
                .clone()
                .map(|v| (v.display().to_string(), "--data-dir")),
            |text| {
                if text.trim().is_empty() {
                    Err("must not be empty".to_string())
                } else {
                    Ok(text.to_string())
                }
            },
        )?;
        let data_dir = std::path::absolute(&data_text).map_err(|source| ConfigError::DataDir {
            path: data_text.clone().into(),
            source,
        })?;
        let database_url = layers.resolve(
            "storage.database_url",
            "",
            file.storage.database_url.clone(),
            Some("DATABASE_URL"),
            flags.database_url.clone().map(|v| (v, "--database-url")),
            |text| {
                if text.is_empty() {
                    Ok(None)
                } else {
                    DatabaseTarget::parse(text).map(Some)
                }
            },
        )?;
        let database =
            database_url.unwrap_or_else(|| DatabaseTarget::Sqlite(data_dir.join("gantry.db")));
        let log_filter = layers.resolve(
            "log.level",
            "info",
            file.log.level.clone(),
            Some("GANTRY_LOG"),
            flags.log.clone().map(|v| (v, "--log")),
            |text| {
                tracing_subscriber::EnvFilter::try_new(text)
                    .map(|_| text.to_string())
                    .map_err(|e| e.to_string())
            },
        )?;
        let log_format = layers.resolve(
            "log.format",
            "text",
            file.log.format.map(|v| v.to_string()),
            Some("GANTRY_LOG_FORMAT"),
            flags.log_format.map(|v| (v.to_string(), "--log-format")),
            LogFormat::from_str,
        )?;
        let pipeline_repo = layers.resolve(
            "pipeline.repo",
            "",
            file.pipeline
                .repo
                .clone()
                .map(|repo| relative_to(&file_dir, repo)),
            Some("GANTRY_PIPELINE_REPO"),
            flags.pipeline_repo.clone().map(|v| (v, "--pipeline-repo")),
            |text| Ok::<_, String>((!text.trim().is_empty()).then(|| text.trim().to_string())),
        )?;
        let pipeline_branch = layers.resolve(
            "pipeline.branch",
            "master",
            file.pipeline.branch.clone(),
            Some("GANTRY_PIPELINE_BRANCH"),
            None,
            |text| crate::git::check_branch_name(text).map(|()| text.to_string()),
        )?;
        let poll_interval = layers.resolve(
            "pipeline.poll_interval",
            "30s",
            file.pipeline.poll_interval.clone(),
            Some("GANTRY_POLL_INTERVAL"),
            None,
            |text| crate::config::duration::HumanDuration::parse(text).map(|d| d.0),
        )?;
        let runner_max_parallel = layers.resolve(
            "runner.max_parallel",
            "2",
            file.runner.max_parallel.map(|v| v.to_string()),
            Some("GANTRY_RUNNER_MAX_PARALLEL"),
            None,
            small_count,
        )?;
        let runner_log_limit_bytes = layers.resolve(
            "runner.log_limit_bytes",
            &(10 * 1024 * 1024).to_string(),
            file.runner.log_limit_bytes.map(|v| v.to_string()),
            Some("GANTRY_RUNNER_LOG_LIMIT_BYTES"),
            None,
            positive,
        )?;
        let runner_lease = layers.resolve(
            "runner.lease",
            "30s",
            file.runner.lease.clone(),
            Some("GANTRY_RUNNER_LEASE"),
            None,
            |text| {
                let lease = crate::config::duration::HumanDuration::parse(text)?.0;
                if lease < std::time::Duration::from_secs(3) {
                    return Err(Rejected::from(
                        "expected at least 3s: the lease is renewed every third of it".to_string(),
                    ));
                }
                Ok(lease)
            },
        )?;
        let replica = layers.resolve(
            "runner.replica",
            &default_replica_name(),
            file.runner.replica.clone(),
            Some("GANTRY_RUNNER_REPLICA"),
            None,
            replica_name,
        )?;
        let local_replica = layers.resolve(
            "runner.local_replica",
            "",
            file.runner.local_replica.clone(),
            Some("GANTRY_RUNNER_LOCAL_REPLICA"),
            None,
            |text| match text {
                "" => Ok(None),
                name => replica_name(name).map(Some),
            },
        )?;
        let sandbox = layers.resolve(
            "runner.sandbox",
            "bwrap",
            file.runner.sandbox.clone(),
            Some("GANTRY_RUNNER_SANDBOX"),
            None,
            |text| match text {
                "bwrap" => Ok(true),
                "none" => Ok(false),
                _ => Err("expected `bwrap` (steps and local apps run sandboxed) or `none` (they run as Gantry's own user, with its access)".to_string()),
            },
        )?;
        let runner_user = layers.resolve(
            "runner.user",
            "65534:65534",
            file.runner.user.clone(),
            Some("GANTRY_RUNNER_USER"),
            None,
            parse_user,
        )?;
        let runner_uids = layers.resolve(
            "runner.uids",
            "1500000000-1500065535",
            file.runner.uids.clone(),
            Some("GANTRY_RUNNER_UIDS"),
            None,
            |text| {
                let parsed = text.split_once('-').and_then(|(first, last)| {
                    Some((first.trim().parse::<u32>().ok()?, last.trim().parse::<u32>().ok()?))
                });
                match parsed {
                    Some((first, last)) if first > 0 && first <= last && last < u32::MAX => Ok((first, last)),
                    _ => Err("expected a range of uids `first-last` (e.g. 1500000000-1500065535), not including 0".to_string()),
                }
            },
        )?;
        let runner_build_uids = layers.resolve(
            "runner.build_uids",
            "1600000000-1602097151",
            file.runner.build_uids.clone(),
            Some("GANTRY_RUNNER_BUILD_UIDS"),
            None,
            |text| {
                let parsed = text.split_once('-').and_then(|(first, last)| {
                    Some((first.trim().parse::<u32>().ok()?, last.trim().parse::<u32>().ok()?))
                });
                let overlaps = |(first, last): (u32, u32), (a, b): (u32, u32)| first <= b && a <= last;
                match parsed {
                    Some(range) if overlaps(range, runner_uids) => Err(format!(
                        "it overlaps runner.uids ({}-{}): a build's users must be no sandbox's",
                        runner_uids.0, runner_uids.1
                    )),
                    Some(range) if overlaps(range, (runner_user.0, runner_user.0)) => Err(format!(
                        "it holds runner.user's uid {}",
                        runner_user.0
                    )),
                    Some((first, last))
                        if first > 0
                            && last < u32::MAX
                            && last.checked_sub(first).is_some_and(|span| span >= 65535) =>
                    {
                        Ok((first, last))
                    }
                    _ => Err("expected a range of uids `first-last` holding at least one block of 65536 (e.g. 1600000000-1602097151, 32 blocks), not including 0".to_string()),
                }
            },
        )?;
        let runner_blocked_networks = layers.resolve(
            "runner.blocked_networks",
            "",
            file.runner
                .blocked_networks
                .as_ref()
                .map(|list| list.join(",")),
            Some("GANTRY_RUNNER_BLOCKED_NETWORKS"),
            None,
            |text| {
                list(text)
                    .map(|net| IpNet::parse(net).map(|n| format!("{}/{}", n.address, n.prefix)))
                    .collect::<Result<Vec<_>, _>>()
            },
        )?;
        let runner_read_only_paths = layers.resolve(
            "runner.read_only_paths",
            "",
            file.runner
                .read_only_paths
                .as_ref()
                .map(|paths| paths.join(",")),
            Some("GANTRY_RUNNER_READ_ONLY_PATHS"),
            None,
            |text| {
                list(text)
                    .map(|path| {
                        let path = PathBuf::from(path);
                        if path.is_absolute() {
                            Ok(path)
                        } else {
                            Err(format!("{} is not an absolute path", path.display()))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            },
        )?;
        let default_helper = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("gantry-sandbox")))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/gantry-sandbox"));
        let helm_path = layers.resolve(
            "deploy.helm_path",
            "helm",
            file_path_value(&file.deploy.helm_path),
            Some("GANTRY_HELM_PATH"),
            None,
            |text| Ok::<_, String>(PathBuf::from(text)),
        )?;
        let builds_helper_image = layers.resolve(
            "builds.helper_image",
            &format!("gantry:{}", env!("CARGO_PKG_VERSION")),
            file.builds.helper_image.clone(),
            Some("GANTRY_BUILDS_HELPER_IMAGE"),
            None,
            |text| {
                let text = text.trim();
                if text.is_empty() || text.contains(char::is_whitespace) {
                    Err(format!("{text:?} is not an image reference"))
                } else {
                    Ok(text.to_string())
                }
            },
        )?;
        let builds_callback_url = layers.resolve(
            "builds.callback_url",
            public_url.as_str(),
            file.builds.callback_url.clone(),
            Some("GANTRY_BUILDS_CALLBACK_URL"),
            None,
            parse_public_url,
        )?;
        let builds_executor = layers.resolve(
            "builds.executor",
            "local",
            file.builds.executor.clone(),
            Some("GANTRY_BUILDS_EXECUTOR"),
            None,
            parse_executor,
        )?;
        let builds_local = layers.resolve(
            "builds.local",
            "allow",
            file.builds.local.clone(),
            Some("GANTRY_BUILDS_LOCAL"),
            None,
            |text| match text {
                "allow" => Ok(true),
                "refuse" => Ok(false),
                _ => Err(
                    "expected `allow` or `refuse` (local steps and the local target)".to_string(),
                ),
            },
        )?;
        let builds_unreachable_after = layers.resolve(
            "builds.unreachable_after",
            "60s",
            file.builds.unreachable_after.clone(),
            Some("GANTRY_BUILDS_UNREACHABLE_AFTER"),
            None,
            |text| {
                let after = crate::config::duration::HumanDuration::parse(text)?.0;
                if after < std::time::Duration::from_secs(1) {
                    return Err(Rejected::from("expected at least 1s".to_string()));
                }
                Ok(after)
            },
        )?;
        let sandbox_helper = layers.resolve(
            "runner.helper",
            &default_helper.display().to_string(),
            file_path_value(&file.runner.helper),
            Some("GANTRY_RUNNER_HELPER"),
            None,
            |text| Ok::<_, String>(PathBuf::from(text)),
        )?;
        // Hosts under an IP address do not exist: previews of a Gantry
        // reached by IP go under `localhost` (which browsers resolve).
        let default_preview = match public_url.host() {
            Some(url::Host::Domain(name)) => name.to_string(),
            _ => "localhost".to_string(),
        };
        let preview_domain = layers.resolve(
            "server.preview_domain",
            &default_preview,
            file.server.preview_domain.clone(),
            Some("GANTRY_PREVIEW_DOMAIN"),
            None,
            |text| {
                let text = text.trim().trim_start_matches("*.").to_ascii_lowercase();
                let valid = !text.is_empty()
                    && text.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if valid {
                    Ok(text)
                } else {
                    Err("expected a domain name like preview.example-usercontent.com".to_string())
                }
            },
        )?;
        let trusted_proxies = layers.resolve(
            "server.trusted_proxies",
            "",
            file.server
                .trusted_proxies
                .as_ref()
                .map(|list| list.join(",")),
            Some("GANTRY_TRUSTED_PROXIES"),
            None,
            |text| list(text).map(IpNet::parse).collect::<Result<Vec<_>, _>>(),
        )?;
        let allowed_hosts = layers.resolve(
            "server.allowed_hosts",
            "",
            file.server
                .allowed_hosts
                .as_ref()
                .map(|list| list.join(",")),
            Some("GANTRY_ALLOWED_HOSTS"),
            None,
            |text| {
                list(text)
                    .map(|host| {
                        let host = host.trim().to_ascii_lowercase();
                        if host.is_empty() || host.contains(['/', ' ', '@']) {
                            Err(format!("{host:?} is not a host name"))
                        } else {
                            Ok(host)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            },
        )?;
        let git_max_parallel = layers.resolve(
            "git.max_parallel",
            "4",
            file.git.max_parallel.map(|v| v.to_string()),
            Some("GANTRY_GIT_MAX_PARALLEL"),
            None,
            small_count,
        )?;
        let defaults = crate::git::ExportLimits::default();
        let git_export_limits = crate::git::ExportLimits {
            max_bytes: layers.resolve(
                "git.export_max_bytes",
                &defaults.max_bytes.to_string(),
                file.git.export_max_bytes.map(|v| v.to_string()),
                Some("GANTRY_GIT_EXPORT_MAX_BYTES"),
                None,
                positive,
            )?,
            max_entries: layers.resolve(
                "git.export_max_entries",
                &defaults.max_entries.to_string(),
                file.git.export_max_entries.map(|v| v.to_string()),
                Some("GANTRY_GIT_EXPORT_MAX_ENTRIES"),
                None,
                positive,
            )?,
            max_depth: layers.resolve(
                "git.export_max_depth",
                &defaults.max_depth.to_string(),
                file.git.export_max_depth.map(|v| v.to_string()),
                Some("GANTRY_GIT_EXPORT_MAX_DEPTH"),
                None,
                |text| positive(text).map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            )?,
        };
        let default_key = data_dir.join("secret.key").display().to_string();
        let secret_key_file = layers.resolve(
            "secrets.key_file",
            &default_key,
            file_path_value(&file.secrets.key_file),
            Some("GANTRY_SECRET_KEY_FILE"),
            None,
            |text| Ok::<_, String>(PathBuf::from(text)),
        )?;

        let drift_interval = layers.resolve(
            "drift.interval",
            "5m",
            file.drift.interval.clone(),
            Some("GANTRY_DRIFT_INTERVAL"),
            None,
            |text| crate::config::duration::HumanDuration::parse(text).map(|d| d.0),
        )?;

        let duration =
            |text: &str| crate::config::duration::HumanDuration::parse(text).map(|d| d.0);
        let optional = |text: &str| {
            Ok::<_, String>((!text.trim().is_empty()).then(|| text.trim().to_string()))
        };
        let issuer = layers.resolve(
            "auth.oidc_issuer",
            "",
            file.auth.oidc_issuer.clone(),
            Some("GANTRY_OIDC_ISSUER"),
            None,
            optional,
        )?;
        let client_id = layers.resolve(
            "auth.oidc_client_id",
            "",
            file.auth.oidc_client_id.clone(),
            Some("GANTRY_OIDC_CLIENT_ID"),
            None,
            optional,
        )?;
        let client_secret = layers.resolve(
            "auth.oidc_client_secret",
            "",
            file.auth.oidc_client_secret.clone(),
            Some("GANTRY_OIDC_CLIENT_SECRET"),
            None,
            optional,
        )?;
        let oidc = match (issuer, client_id, client_secret) {
            (Some(issuer), Some(client_id), Some(client_secret)) => {
                url::Url::parse(&issuer).map_err(|e| ConfigError::Invalid {
                    key: "auth.oidc_issuer",
                    value: issuer.clone(),
                    origin: layers.origin_of("auth.oidc_issuer"),
                    reason: format!("expected the issuer URL ({e})").into(),
                })?;
                Some(OidcSettings {
                    issuer,
                    client_id,
                    client_secret,
                })
            }
            (None, None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "auth.oidc_issuer",
                    value: String::new(),
                    origin: layers.origin_of("auth.oidc_issuer"),
                    reason: "single sign-on needs auth.oidc_issuer, auth.oidc_client_id and auth.oidc_client_secret together".into(),
                });
            }
        };
        let roles_claim = layers.resolve(
            "auth.roles_claim",
            "groups",
            file.auth.roles_claim.clone(),
            Some("GANTRY_ROLES_CLAIM"),
            None,
            |t| {
                if t.trim().is_empty() {
                    Err("must not be empty".to_string())
                } else {
                    Ok(t.trim().to_string())
                }
            },
        )?;
        let forge_login_claim = layers.resolve(
            "auth.forge_login_claim",
            "",
            file.auth.forge_login_claim.clone(),
            Some("GANTRY_FORGE_LOGIN_CLAIM"),
            None,
            |text| Ok::<_, String>(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
        )?;
        let dev_login = layers.resolve(
            "auth.dev_login",
            "false",
            file.auth.dev_login.map(|v| v.to_string()),
            Some("GANTRY_DEV_LOGIN"),
            flags.dev_login.then(|| ("true".to_string(), "--dev-login")),
            |t| match t {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err("expected true or false".to_string()),
            },
        )?;
        if dev_login && !bind.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "auth.dev_login",
                value: "true".into(),
                origin: layers.origin_of("auth.dev_login"),
                reason: format!(
                    "the dev login signs anyone in without a password, so it only works on a loopback bind; server.bind is {bind}"
                )
                .into(),
            });
        }
        let session_idle = layers.resolve(
            "auth.session_idle",
            "8h",
            file.auth.session_idle.clone(),
            Some("GANTRY_SESSION_IDLE"),
            None,
            duration,
        )?;
        let session_max = layers.resolve(
            "auth.session_max",
            "24h",
            file.auth.session_max.clone(),
            Some("GANTRY_SESSION_MAX"),
            None,
            duration,
        )?;
        let reauth_max_age = layers.resolve(
            "auth.reauth_max_age",
            "5m",
            file.auth.reauth_max_age.clone(),
            Some("GANTRY_REAUTH_MAX_AGE"),
            None,
            duration,
        )?;
        let share_anonymous = layers.resolve(
            "auth.share_anonymous",
            "false",
            file.auth.share_anonymous.map(|v| v.to_string()),
            Some("GANTRY_SHARE_ANONYMOUS"),
            None,
            |t| match t {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err("expected true or false".to_string()),
            },
        )?;
        let share_ttl = layers.resolve(
            "auth.share_ttl",
            "72h",
            file.auth.share_ttl.clone(),
            Some("GANTRY_SHARE_TTL"),
            None,
            duration,
        )?;
        // The client secret is never shown.
        for entry in layers.sources.iter_mut() {
            if entry.0 == "auth.oidc_client_secret" && !entry.1.is_empty() {
                entry.1 = "***".into();
            }
        }

        // Never show a password, wherever the URL came from (nor, for a
        // git URL, the user part, which is often a token).
        for entry in layers.sources.iter_mut() {
            if entry.0 == "storage.database_url" {
                entry.1 = redact_url(&entry.1);
            } else if entry.0 == "pipeline.repo" {
                entry.1 = crate::git::redact_source(&entry.1);
            }
        }

        Ok(Config {
            bind,
            public_url,
            data_dir,
            database,
            log_filter,
            log_format,
            max_body_bytes,
            pipeline_repo,
            pipeline_branch,
            poll_interval,
            runner_max_parallel,
            runner_log_limit_bytes,
            runner_lease,
            replica,
            local_replica,
            sandbox,
            runner_user,
            runner_uids,
            runner_build_uids,
            runner_read_only_paths,
            runner_blocked_networks,
            sandbox_helper,
            helm_path,
            builds_helper_image,
            builds_callback_url,
            builds_executor,
            builds_local,
            builds_unreachable_after,
            preview_domain,
            trusted_proxies,
            allowed_hosts,
            git_max_parallel,
            git_export_limits,
            secret_key_file,
            drift_interval,
            oidc,
            roles_claim,
            forge_login_claim,
            dev_login,
            session_idle,
            session_max,
            reauth_max_age,
            share_anonymous,
            share_ttl,
            file: file_path,
            sources: layers.sources,
        })
    }

    /// Records that `gantry demo` set `key` to `value` after the layers
    /// were read, so Settings shows what is in effect and why.
    pub fn set_by_demo(&mut self, key: &'static str, value: String) {
        self.sources.retain(|(k, _, _)| *k != key);
        self.sources.push((key, value, Origin::Demo));
    }

    /// The layer that set `key`.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.sources
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, origin)| origin)
    }
}

/// The layers above the defaults, and the record of which one set what.
struct Layers<'a> {
    env: &'a [(String, String)],
    file_origin: Option<PathBuf>,
    sources: Vec<(&'static str, String, Origin)>,
}

impl Layers<'_> {
    fn origin_of(&self, key: &str) -> Origin {
        self.sources
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, o)| o.clone())
            .unwrap_or(Origin::Default)
    }

    /// Takes the highest layer that has a value, records where it came from,
    /// and parses it; a parse error names the key, the value and its layer.
    fn resolve<T, E: Into<Rejected>>(
        &mut self,
        key: &'static str,
        default: &str,
        file: Option<String>,
        env: Option<&'static str>,
        flag: Option<(String, &'static str)>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError> {
        let from_env = env.and_then(|name| {
            self.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| (v.clone(), Origin::Env(name)))
        });
        let from_file = file.map(|v| {
            (
                v,
                Origin::File(self.file_origin.clone().unwrap_or_default()),
            )
        });
        let (value, origin) = flag
            .map(|(v, name)| (v, Origin::Flag(name)))
            .or(from_env)
            .or(from_file)
            .unwrap_or_else(|| (default.to_string(), Origin::Default));
        let parsed = parse(&value).map_err(|reason| {
            let reason = reason.into();
            let shown = if key == "storage.database_url" {
                redact_url(&value)
            } else {
                value.clone()
            };
            ConfigError::Invalid {
                key,
                value: shown,
                origin: origin.clone(),
                reason,
            }
        });
        self.sources.push((key, value, origin));
        parsed
    }
}

/// The items of a comma-separated list (how lists arrive from the
/// environment; the file's arrays are joined the same way).
fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// `uid:gid`, a bare uid (its gid is the same), or a user name.
fn parse_user(text: &str) -> Result<(u32, u32), Rejected> {
    let number = |part: &str| part.trim().parse::<u32>().ok();
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (number(uid), number(gid)),
        None => (number(text), number(text)),
    };
    if let (Some(uid), Some(gid)) = (uid, gid) {
        return if uid == 0 || gid == 0 {
            Err("sandboxed processes must not run as root".into())
        } else {
            Ok((uid, gid))
        };
    }
    match nix::unistd::User::from_name(text.trim()) {
        Ok(Some(user)) if user.uid.as_raw() != 0 => Ok((user.uid.as_raw(), user.gid.as_raw())),
        Ok(Some(_)) => Err("sandboxed processes must not run as root".into()),
        _ => Err("expected uid:gid (e.g. 65534:65534) or the name of a user".into()),
    }
}

/// An address or network (`10.0.0.0/8`, `::1`), for trusted proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub address: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(text: &str) -> Result<IpNet, Rejected> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: std::net::IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(IpNet { address, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        match (self.address, ip) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn positive(text: &str) -> Result<u64, Rejected> {
    match text.parse::<u64>() {
        Ok(0) | Err(_) => Err("expected a positive number".into()),
        Ok(n) => Ok(n),
    }
}

fn small_count(text: &str) -> Result<usize, Rejected> {
    match text.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err("expected a number from 1 to 256".into()),
    }
}

fn parse_public_url(text: &str) -> Result<url::Url, Rejected> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("expected a URL like http://localhost:3000/ ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    Ok(url)
}

/// A repo path in the file is relative to the file; URLs stay as they are.
fn relative_to(dir: &Path, repo: String) -> String {
    if repo.contains("://") || repo.starts_with('/') || (repo.contains('@') && repo.contains(':')) {
        repo
    } else {
        dir.join(repo).display().to_string()
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| {
        let line = error
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        let snippet = text.lines().nth(line - 1).unwrap_or_default().trim();
        let mut message = error.message().trim().to_string();
        if !snippet.is_empty() {
            message.push_str(&format!(" (at `{snippet}`)"));
        }
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        }
    })
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
