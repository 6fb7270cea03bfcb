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
    /// Its lane, every preview listed.
    pub lane: Option<AppLane>,
    pub change_requests: Vec<ChangeRequestDetail>,
    /// Newest first.
    pub runs: Vec<RunSummary>,
}
