//! Runs and their steps, test reports, held runs and what a run would
//! change on its clusters.

use super::*;

/// One pipeline run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunSummary {
    pub id: i64,
    pub app: String,
    pub environment: String,
    pub branch: String,
    pub commit_sha: String,
    pub state: RunState,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StepSummary {
    pub id: i64,
    pub position: i64,
    pub name: String,
    pub state: StepState,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// Bytes of output the step printed (stored up to the log limit).
    pub log_bytes: i64,
    pub log_truncated: bool,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    /// `host` when an admin let the step onto the host's network.
    #[serde(default)]
    pub network: Option<String>,
}

/// A failed test case from a JUnit report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TestCaseFailure {
    pub suite: String,
    pub case: String,
    pub message: String,
}

/// The totals of one JUnit report, failures listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TestReportSummary {
    /// The step that produced it.
    pub step: String,
    /// The report file, relative to the checkout.
    pub name: String,
    pub passed: i64,
    pub failed: i64,
    pub skipped: i64,
    pub failures: Vec<TestCaseFailure>,
}

/// One start of a run. A run whose replica died, lost the database or
/// restarted is taken over and resumes as its next attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunAttempt {
    /// 1 for the first start.
    pub attempt: i64,
    /// The replica (runner id) that ran it.
    pub replica: String,
    /// The position of the first step it ran, and that step's name.
    pub from_step: i64,
    pub from_step_name: Option<String>,
    pub started_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// Why it ended without ending the run.
    pub interrupted: Option<String>,
}

/// Everything the run page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunDetail {
    pub run: RunSummary,
    pub pipeline_sha: String,
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    pub trigger: String,
    pub error: Option<String>,
    pub steps: Vec<StepSummary>,
    pub reports: Vec<TestReportSummary>,
    /// The fork the commit comes from: built without secrets, after an
    /// admin allowed it.
    #[serde(default)]
    pub from_fork: Option<String>,
    /// What weakens this run's isolation, for a banner (sandboxing turned
    /// off, a step on the host's network).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Its starts, first first (more than one after a take-over).
    #[serde(default)]
    pub attempts: Vec<RunAttempt>,
    /// For a run held for approval: the commits it would take live that no
    /// approval covers yet (approving the run covers them).
    #[serde(default)]
    pub uncovered: Option<UncoveredCommits>,
    /// Who pushed its commit, where a forge said and the account maps to a
    /// Gantry user (never from commit metadata).
    #[serde(default)]
    pub pushed_by: Option<String>,
}

/// The commits a deployment would take live that no approval covers
/// (user guide, docs/src/approvals.md, "What an approval covers"), newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UncoveredCommits {
    /// How many there are (at least this many when `more`).
    pub total: i64,
    pub more: bool,
    /// The first hundred of them.
    pub commits: Vec<ChangelogCommit>,
    /// Set when the commit does not descend from what the environment
    /// runs (this commit): deploying it would go back (a rewind), which
    /// waits for an approval whatever covers it.
    #[serde(default)]
    pub rewinds_from: Option<String>,
}

/// A run held until enough people approve it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PendingApproval {
    pub run_id: i64,
    pub app: String,
    pub environment: String,
    pub commit_sha: String,
    pub requested_at: UnixMillis,
    /// The commits approving it covers that nothing covers yet.
    #[serde(default)]
    pub uncovered: Option<UncoveredCommits>,
}

/// What a run would change on one object of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ObjectDiff {
    pub target: String,
    /// `kind/name` (and namespace).
    pub object: String,
    /// `create`, `update`, `unchanged` or `delete` (prune).
    pub change: String,
    /// Unified diff of the object's YAML (Secrets redacted).
    pub diff: String,
}
