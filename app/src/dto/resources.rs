//! The live resource tree of an environment on one of its clusters: what
//! Gantry applied there, each object's health and sync state, its children
//! (ReplicaSets, Pods) and recent events — filtered and paged on the
//! server, so an environment of thousands of objects ships one page.

use super::*;

/// How an object's health reads, in the words platform teams know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResourceHealth {
    Healthy,
    Progressing,
    Degraded,
    Unknown,
    /// Applied, and not on the cluster now.
    Missing,
}

impl ResourceHealth {
    pub const ALL: [ResourceHealth; 5] = [
        ResourceHealth::Healthy,
        ResourceHealth::Progressing,
        ResourceHealth::Degraded,
        ResourceHealth::Unknown,
        ResourceHealth::Missing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceHealth::Healthy => "healthy",
            ResourceHealth::Progressing => "progressing",
            ResourceHealth::Degraded => "degraded",
            ResourceHealth::Unknown => "unknown",
            ResourceHealth::Missing => "missing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == text)
    }
}

/// Whether the live object is what Gantry applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    InSync,
    /// A field Gantry applied has another value now.
    Drifted,
    Missing,
    /// Not applied by Gantry: a child its controller made.
    Owned,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::InSync => "in_sync",
            SyncState::Drifted => "drifted",
            SyncState::Missing => "missing",
            SyncState::Owned => "owned",
        }
    }
}

/// Which objects of the tree to show.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct ResourceQuery {
    /// One of the environment's clusters (default: its first).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Only this kind (`Deployment`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Only names containing this.
    #[serde(default)]
    pub q: Option<String>,
    /// Only objects of this health (`degraded`, …).
    #[serde(default)]
    pub health: Option<String>,
    /// 1-based.
    #[serde(default)]
    pub page: Option<u32>,
}

/// Objects per page of the tree.
pub const RESOURCES_PER_PAGE: usize = 50;

/// One page of an environment's tree on one cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ResourcePage {
    pub app: String,
    pub environment: String,
    pub cluster: String,
    /// Every cluster of the environment (to switch to).
    pub clusters: Vec<String>,
    pub namespace: String,
    /// The deployment whose objects these are.
    pub deployment_id: Option<i64>,
    /// Objects matching the filters, over every page.
    pub total: usize,
    pub page: u32,
    pub pages: u32,
    /// Every applied object's health, counted (before filtering).
    pub counts: Vec<HealthCount>,
    pub drifted: usize,
    /// The kinds applied, for the filter.
    pub kinds: Vec<String>,
    pub objects: Vec<ResourceNode>,
    /// Why the cluster could not be read, if it could not.
    pub unreachable: Option<String>,
    /// Whether the caller may read live objects (admins) and pod logs
    /// (developers of the app).
    pub can_inspect: bool,
    pub can_read_logs: bool,
}

/// How many applied objects have one health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct HealthCount {
    pub health: ResourceHealth,
    pub count: usize,
}

/// One object, with what its controllers made of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ResourceNode {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub health: ResourceHealth,
    /// Why, when not healthy (or what it says of itself).
    pub message: Option<String>,
    pub sync: SyncState,
    /// Owned objects, found through owner references.
    #[cfg_attr(feature = "ssr", schema(no_recursion))]
    pub children: Vec<ResourceNode>,
    /// The newest events about it, newest first.
    pub events: Vec<ResourceEvent>,
    /// A pod's containers (their logs can be read).
    pub containers: Vec<String>,
}

/// A Kubernetes event about an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ResourceEvent {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub kind: String,
    pub reason: String,
    pub message: String,
    pub count: i64,
    /// RFC 3339, as the cluster said.
    pub last_seen: Option<String>,
}

/// One applied object, for admins: live, as applied, and the difference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct ResourceRef {
    #[serde(default)]
    pub cluster: Option<String>,
    // Defaults, so that who may not ask is refused for who they are
    // before what they asked is judged.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ResourceDetail {
    pub cluster: String,
    pub namespace: String,
    /// The live object as YAML, Secret values redacted, managed fields out;
    /// `None` when it is missing.
    pub live: Option<String>,
    /// What Gantry applied, the same way.
    pub applied: Option<String>,
    /// A unified diff from applied to live, of the fields Gantry applied.
    pub diff: Option<String>,
    pub events: Vec<ResourceEvent>,
}

/// A pod's log, for the developers of its app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct PodLogQuery {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PodLog {
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub containers: Vec<String>,
    /// The last lines (at most 1,000, at most 1 MiB), as printed.
    pub text: String,
}
