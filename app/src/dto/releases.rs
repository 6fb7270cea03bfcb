//! The release ledger: entries, changelogs, pins, rollbacks, promotions
//! and the comparison of two releases.

use super::*;

/// An entry of the release ledger: one deployment of a fixed environment
/// (staging, production), from the moment it started deploying.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ReleaseSummary {
    pub id: i64,
    pub app: String,
    pub environment: String,
    pub environment_id: i64,
    /// The app commit SHA: a version is a commit.
    pub version: String,
    pub state: ReleaseState,
    pub kind: ReleaseKind,
    /// For rollbacks: `rollback of <from> to <to>`.
    pub label: Option<String>,
    /// What the environment served before.
    pub previous_version: Option<String>,
    pub pipeline_sha: String,
    pub image: Option<String>,
    /// Why (rollbacks).
    pub reason: Option<String>,
    /// The entry a rollback replaced, and the one it went back to.
    pub rollback_of: Option<i64>,
    pub rollback_to: Option<i64>,
    /// The run that deployed it (none for rollbacks' re-applies).
    pub run_id: Option<i64>,
    pub deployment_id: i64,
    /// Who released it: the merger, approver or admin; else the author.
    pub created_by: Option<String>,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    pub stable_at: Option<UnixMillis>,
    /// `gantry` after the soak, or the admin who vouched for it.
    pub stable_by: Option<String>,
    /// Commits since the previous version, newest first.
    pub changelog: Vec<ChangelogCommit>,
    pub targets: Vec<TargetOutcome>,
    /// The decisions that let it through (on its run or change request).
    pub approvals: Vec<ApprovalRecord>,
    /// For one live release read on its own: how far it is through its
    /// soak before it counts as stable.
    #[serde(default)]
    pub soak: Option<SoakProgress>,
    /// For one release read on its own: commits it took live that no
    /// approval covered — its run was held for them and an admin's
    /// override released it.
    #[serde(default)]
    pub uncovered: Option<UncoveredCommits>,
    /// What it deployed: the artifact, where it was verified and for how
    /// long, whether it was rejected.
    #[serde(default)]
    pub artifact: Option<super::ArtifactStatus>,
}

/// How far a live release is through its soak: healthy (every target
/// live) since when, out of how long its stack entry's `stable_after` asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SoakProgress {
    /// `None`: not healthy now (the soak starts again when it is).
    pub healthy_since: Option<UnixMillis>,
    pub soak_millis: i64,
}

/// A commit of a release's changelog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChangelogCommit {
    pub sha: String,
    /// First line of the message.
    pub summary: String,
    pub author: String,
    pub author_email: String,
    pub time: UnixMillis,
    /// The commit on the forge, when the app sets `commit_url`.
    pub url: Option<String>,
}

/// How one target (a cluster, or `local`) took a deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TargetOutcome {
    pub target: String,
    pub state: DeploymentState,
    pub detail: Option<String>,
    pub finished_at: Option<UnixMillis>,
}

/// Which part of the ledger to read: newest first, `limit` entries
/// (default 50, at most 200) with ids below `before`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct ReleaseFilter {
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub before: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Why an environment does not deploy new commits: a rollback (or a pin
/// committed to the pipeline repo) keeps it on a release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PinInfo {
    pub release_id: Option<i64>,
    /// The app commit the environment stays on.
    pub version: String,
    pub pinned_by: String,
    pub reason: String,
    pub pinned_at: UnixMillis,
    /// The pipeline-repo commit holding the pin (none: not in Git, see
    /// `git_error`).
    pub pin_commit: Option<String>,
    pub git_error: Option<String>,
}

/// An admin's request to roll an environment back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RollbackRequest {
    /// Default: `production`.
    #[serde(default)]
    pub environment: Option<String>,
    /// The release to go back to (default: the newest stable one before
    /// the current).
    #[serde(default)]
    pub to: Option<i64>,
    /// Mandatory: kept in the ledger, the pin and the audit log.
    pub reason: String,
    /// The release rolled back from is faulty: its artifact is rejected,
    /// and never promoted again without an admin's override.
    #[serde(default)]
    pub faulty: bool,
}

/// A rollback that was accepted: its run re-applies the release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RollbackAccepted {
    pub run_id: i64,
    pub environment: String,
    pub from_release: Option<i64>,
    pub to_release: i64,
    pub version: String,
    /// The pipeline-repo commit that pinned the environment.
    pub pin_commit: Option<String>,
    /// Why the pin is not in the pipeline repo (it holds anyway).
    pub git_error: Option<String>,
}

/// An admin's promotion: unpin, and send the branch head through the flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PromoteRequest {
    pub environment: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Promotion {
    pub environment: String,
    /// There was a pin, and it is gone.
    pub unpinned: bool,
    /// The run deploying the branch head, if one was needed.
    pub run_id: Option<i64>,
    pub detail: String,
}

/// A file two versions differ in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChangedFile {
    pub path: String,
    /// added, modified, deleted, renamed, …
    pub status: String,
}

/// What lies between two releases: commits, their authors, changed files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ReleaseComparison {
    pub app: String,
    pub from: i64,
    pub to: i64,
    pub from_version: String,
    pub to_version: String,
    /// In `to` but not in `from`, newest first.
    pub commits: Vec<ChangelogCommit>,
    pub authors: Vec<String>,
    pub files: Vec<ChangedFile>,
}

/// The first deployment that carried a commit to one environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CommitLanding {
    pub environment: String,
    pub deployment_id: i64,
    /// Its ledger entry (none for previews).
    pub release_id: Option<i64>,
    /// The version deployed (the commit or a descendant).
    pub version: String,
    pub at: Option<UnixMillis>,
}

/// Where a commit went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CommitReleases {
    pub app: String,
    pub sha: String,
    pub summary: String,
    pub author: String,
    pub landings: Vec<CommitLanding>,
}
