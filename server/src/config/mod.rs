//! Gantry's configuration: built-in defaults, then a TOML file, then
//! environment variables, then command-line flags — each layer overrides the
//! one before. Every value remembers which layer set it, so errors and the
//! Settings page can say where a value came from.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// The file read when neither `--config` nor `GANTRY_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "gantry.toml";
pub const DEFAULT_BIND: &str = "127.0.0.1:3000";
pub const DEFAULT_DATA_DIR: &str = ".gantry";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

/// The environment variables Gantry reads. Any other `GANTRY_*` variable is
/// an error: a typo must not silently fall back to a default.
pub const ENV_VARS: &[&str] = &[
    "GANTRY_CONFIG",
    "GANTRY_BIND",
    "GANTRY_DATA",
    "DATABASE_URL",
    "GANTRY_LOG",
    "GANTRY_LOG_FORMAT",
    "GANTRY_MAX_BODY_BYTES",
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
        reason: String,
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
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(name) => write!(f, "environment {name}"),
            Origin::Flag(name) => write!(f, "flag {name}"),
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
    pub fn parse(url: &str) -> Result<Self, String> {
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
    pub data_dir: PathBuf,
    pub database: DatabaseTarget,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub max_body_bytes: u64,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Each setting, its value as shown to people, and the layer that set it.
    pub sources: Vec<(&'static str, String, Origin)>,
}

/// Values given on the command line (`None` when the flag is absent).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub bind: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    server: ServerSection,
    storage: StorageSection,
    log: LogSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServerSection {
    bind: Option<String>,
    max_body_bytes: Option<u64>,
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
        let file_origin = || Origin::File(file_path.clone().unwrap_or_default());
        // Paths in the file are relative to the file, not to where Gantry runs.
        let file_dir = file_path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();

        let mut sources = Vec::new();

        let bind_text = pick(
            "server.bind",
            (DEFAULT_BIND.to_string(), Origin::Default),
            [
                file.server.bind.clone().map(|v| (v, file_origin())),
                env_value("GANTRY_BIND").map(|v| (v, Origin::Env("GANTRY_BIND"))),
                flags.bind.map(|v| (v.to_string(), Origin::Flag("--bind"))),
            ],
            &mut sources,
        );
        let bind = parse_value("server.bind", &bind_text, &sources, |text| {
            SocketAddr::from_str(text)
                .map_err(|_| "expected an address like 127.0.0.1:3000".to_string())
        })?;

        let body_text = pick(
            "server.max_body_bytes",
            (DEFAULT_MAX_BODY_BYTES.to_string(), Origin::Default),
            [
                file.server
                    .max_body_bytes
                    .map(|v| (v.to_string(), file_origin())),
                env_value("GANTRY_MAX_BODY_BYTES")
                    .map(|v| (v, Origin::Env("GANTRY_MAX_BODY_BYTES"))),
                None,
            ],
            &mut sources,
        );
        let max_body_bytes =
            parse_value(
                "server.max_body_bytes",
                &body_text,
                &sources,
                |text| match text.parse::<u64>() {
                    Ok(0) | Err(_) => Err("expected a positive number of bytes".to_string()),
                    Ok(n) => Ok(n),
                },
            )?;

        let data_text = pick(
            "storage.data_dir",
            (DEFAULT_DATA_DIR.to_string(), Origin::Default),
            [
                file.storage
                    .data_dir
                    .clone()
                    .map(|v| (file_dir.join(v).display().to_string(), file_origin())),
                env_value("GANTRY_DATA").map(|v| (v, Origin::Env("GANTRY_DATA"))),
                flags
                    .data_dir
                    .clone()
                    .map(|v| (v.display().to_string(), Origin::Flag("--data-dir"))),
            ],
            &mut sources,
        );
        if data_text.trim().is_empty() {
            return Err(invalid(
                "storage.data_dir",
                &data_text,
                &sources,
                "must not be empty",
            ));
        }
        let data_dir = std::path::absolute(&data_text).map_err(|source| ConfigError::DataDir {
            path: data_text.clone().into(),
            source,
        })?;

        let database_url = pick(
            "storage.database_url",
            (String::new(), Origin::Default),
            [
                file.storage
                    .database_url
                    .clone()
                    .map(|v| (v, file_origin())),
                env_value("DATABASE_URL").map(|v| (v, Origin::Env("DATABASE_URL"))),
                flags
                    .database_url
                    .clone()
                    .map(|v| (v, Origin::Flag("--database-url"))),
            ],
            &mut sources,
        );
        let database = if database_url.is_empty() {
            DatabaseTarget::Sqlite(data_dir.join("gantry.db"))
        } else {
            parse_value(
                "storage.database_url",
                &database_url,
                &sources,
                DatabaseTarget::parse,
            )?
        };
        // Never show a password, wherever the URL came from.
        if let Some(entry) = sources
            .iter_mut()
            .find(|(key, _, _)| *key == "storage.database_url")
        {
            entry.1 = redact_url(&entry.1);
        }

        let log_filter = pick(
            "log.level",
            ("info".to_string(), Origin::Default),
            [
                file.log.level.clone().map(|v| (v, file_origin())),
                env_value("GANTRY_LOG").map(|v| (v, Origin::Env("GANTRY_LOG"))),
                flags.log.clone().map(|v| (v, Origin::Flag("--log"))),
            ],
            &mut sources,
        );
        parse_value("log.level", &log_filter, &sources, |text| {
            tracing_subscriber::EnvFilter::try_new(text)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;

        let format_text = pick(
            "log.format",
            (LogFormat::Text.to_string(), Origin::Default),
            [
                file.log.format.map(|v| (v.to_string(), file_origin())),
                env_value("GANTRY_LOG_FORMAT").map(|v| (v, Origin::Env("GANTRY_LOG_FORMAT"))),
                flags
                    .log_format
                    .map(|v| (v.to_string(), Origin::Flag("--log-format"))),
            ],
            &mut sources,
        );
        let log_format = parse_value("log.format", &format_text, &sources, LogFormat::from_str)?;

        Ok(Config {
            bind,
            data_dir,
            database,
            log_filter,
            log_format,
            max_body_bytes,
            file: file_path,
            sources,
        })
    }

    /// The layer that set `key`.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.sources
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, origin)| origin)
    }
}

/// Takes the last layer that has a value and records where it came from.
fn pick(
    key: &'static str,
    default: (String, Origin),
    layers: [Option<(String, Origin)>; 3],
    sources: &mut Vec<(&'static str, String, Origin)>,
) -> String {
    let (value, origin) = layers.into_iter().flatten().last().unwrap_or(default);
    sources.push((key, value.clone(), origin));
    value
}

fn parse_value<T>(
    key: &'static str,
    text: &str,
    sources: &[(&'static str, String, Origin)],
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(text).map_err(|reason| invalid(key, text, sources, &reason))
}

fn invalid(
    key: &'static str,
    text: &str,
    sources: &[(&'static str, String, Origin)],
    reason: &str,
) -> ConfigError {
    let origin = sources
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, origin)| origin.clone())
        .unwrap_or(Origin::Default);
    let value = if key == "storage.database_url" {
        redact_url(text)
    } else {
        text.to_string()
    };
    ConfigError::Invalid {
        key,
        value,
        origin,
        reason: reason.to_string(),
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
