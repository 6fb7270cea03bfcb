//! The Settings page: where each setting comes from, and the pipeline
//! repo's configuration status.

use super::*;

/// One problem found in the pipeline repo: where it is and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ConfigIssue {
    /// Path inside the pipeline repo, e.g. `apps/shop/app.yaml`.
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// The field at fault, e.g. `stack[1].branch` (empty when unknown).
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, " {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The state of the pipeline repo: the last commit read and its problems.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ConfigStatus {
    /// The configured pipeline repo (password hidden), if any.
    pub pipeline_repo: Option<String>,
    pub pipeline_branch: String,
    /// The last pipeline-repo commit read.
    pub pipeline_sha: Option<String>,
    /// `applied`, `partial` (some apps refused) or `rejected`.
    pub state: Option<String>,
    pub issues: Vec<ConfigIssue>,
    pub checked_at: Option<UnixMillis>,
}

/// The effective server settings, as an admin reads them. Never secrets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Settings {
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database_backend: String,
    pub data_dir: String,
    pub bind: String,
    /// Where each setting came from, e.g. `bind = flag --bind`.
    pub sources: Vec<SettingSource>,
    /// How steps and local apps are isolated, in a sentence.
    #[serde(default)]
    pub sandbox: String,
    /// Set when isolation is weakened or missing: a warning banner.
    #[serde(default)]
    pub sandbox_warning: Option<String>,
    /// Set when limits are rlimits, not cgroups: what is weaker.
    #[serde(default)]
    pub limits_warning: Option<String>,
    /// What no sandbox's network reaches (the built-in list, this host's
    /// own addresses, `runner.blocked_networks`).
    #[serde(default)]
    pub blocked_networks: Vec<String>,
    /// This replica's name (in runs it claims and leases it holds).
    #[serde(default)]
    pub replica: String,
    /// Which replica runs each background loop that runs on one replica at
    /// a time (on SQLite: this one, all of them).
    #[serde(default)]
    pub singletons: Vec<SingletonHolder>,
}

/// One elected background loop and the replica that holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SingletonHolder {
    /// `scan`, `plan`, `expiry`, `drift`, `stability`, `delivery`.
    pub name: String,
    pub holder: String,
    /// Held by the replica that answered.
    pub here: bool,
    pub since: Option<UnixMillis>,
    /// When the lease runs out unless renewed.
    pub until: Option<UnixMillis>,
}

/// Which layer of the configuration set one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SettingSource {
    pub key: String,
    pub value: String,
    pub source: String,
}

/// A registered secret: its name and scope, never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SecretEntry {
    pub name: String,
    /// The one app it is for (`None`: every app may use it).
    pub app: Option<String>,
}
