//! The environment stack of each app.

use super::*;

/// One environment of an application's stack, as the stack view shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EnvironmentSummary {
    pub app: String,
    pub name: String,
    /// The stack entry it comes from (`preview`, `staging`, …): the home
    /// matrix's column. Previews are named after their branch instead.
    #[serde(default)]
    pub stack_entry: String,
    pub branch: Option<String>,
    pub state: EnvironmentState,
    /// The app commit that runs there (none before the first deploy).
    pub commit_sha: Option<String>,
    /// The pipeline-repo commit it was deployed with.
    pub pipeline_sha: Option<String>,
    pub url: Option<String>,
    pub updated_at: UnixMillis,
    /// First line of the commit's message, and its author.
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    /// Why the environment is in its state (a failure, a teardown, ...).
    pub state_detail: Option<String>,
    /// What differs between the clusters and the last deployment (none =
    /// in sync or not checked).
    pub drift: Option<String>,
    /// Set while a rollback (or a pin in Git) keeps the environment on a
    /// release: new commits are built but not deployed.
    pub pin: Option<PinInfo>,
}

/// One app's page: its stack, its open change requests (with preview,
/// tests and approvals) and its recent runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AppOverview {
    pub app: String,
    pub source_url: String,
    pub environments: Vec<EnvironmentSummary>,
    /// The environments deployed to clusters: each has a resource tree.
    #[serde(default)]
    pub resource_trees: Vec<String>,
    /// Its lane, every preview listed.
    pub lane: Option<AppLane>,
    pub change_requests: Vec<ChangeRequestDetail>,
    /// Newest first.
    pub runs: Vec<RunSummary>,
    /// Its recent runs' durations and deploys per day, for the charts.
    #[serde(default)]
    pub charts: Option<AppCharts>,
    /// Its stack as a promotion graph: where each artifact is live,
    /// verified, soaking, held or rejected.
    #[serde(default)]
    pub promotion: Option<super::PromotionGraph>,
}

/// What an app's page charts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AppCharts {
    /// Its newest finished runs (succeeded or failed), oldest first.
    pub durations: Vec<RunDuration>,
    /// The first instant (UTC midnight) of each day charted, oldest first.
    pub days: Vec<UnixMillis>,
    /// Deploys started each of those days, one series per stack entry
    /// (every preview counts under its entry).
    pub deploys: Vec<DeploySeries>,
}

/// How long one run took, from its first step to its end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunDuration {
    pub id: i64,
    pub at: UnixMillis,
    pub millis: i64,
    pub state: RunState,
}

/// Deploys per day of one stack entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploySeries {
    pub entry: String,
    /// One count per day of [`AppCharts::days`].
    pub counts: Vec<u32>,
}

/// Runs an app's duration chart shows, at most.
pub const CHARTED_RUNS: i64 = 60;

/// Days an app's deploys chart covers.
pub const CHARTED_DAYS: i64 = 14;
