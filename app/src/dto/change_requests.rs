//! Change requests, their reviews and the approval inbox.

use super::*;

/// A change request (a native one, or a forge merge/pull request).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChangeRequestSummary {
    pub id: i64,
    pub app: String,
    pub title: String,
    pub source_branch: String,
    pub target_branch: String,
    pub author: String,
    pub state: ChangeRequestState,
    /// Why it is in its state: the conflicting files, the freeze, ...
    pub state_detail: Option<String>,
    /// The source commit under review.
    pub head_sha: Option<String>,
    pub created_at: UnixMillis,
}

/// What the "open a change request" form offers to pick from: the apps
/// the caller may open requests on, and the branches of the app chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RequestChoices {
    pub apps: Vec<String>,
    pub branches: Vec<String>,
}

/// Apps and branches the form offers, at most.
pub const CHOICES_MAX: usize = 500;

/// One approval, rejection or override.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ApprovalRecord {
    pub who: String,
    /// `approved`, `rejected`, `override` or `feedback`.
    pub decision: String,
    pub comment: Option<String>,
    /// The commit the decision was about (approvals of an older head of a
    /// change request no longer count).
    pub commit_sha: Option<String>,
    /// When the approver last signed in (fresh sign-in policies).
    pub auth_time: Option<UnixMillis>,
    pub at: UnixMillis,
}

/// Everything the change request page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChangeRequestDetail {
    pub summary: ChangeRequestSummary,
    pub description: String,
    /// `native`, or the forge it comes from.
    pub origin: String,
    /// The environment the target branch deploys to.
    pub target_environment: Option<String>,
    /// Where the source branch runs (its preview, or staging for a
    /// promotion).
    pub preview: Option<EnvironmentSummary>,
    /// The newest run of the source head, and its test results.
    pub run: Option<RunSummary>,
    pub reports: Vec<TestReportSummary>,
    pub required_approvals: i64,
    pub approver_roles: Vec<String>,
    /// Approvals of the current head, by distinct people.
    pub approvals_of_head: i64,
    pub decisions: Vec<ApprovalRecord>,
    /// Its share links, newest first: for developers of the app only.
    #[serde(default)]
    pub share_links: Vec<ShareLink>,
    /// The target environment's freeze, when one is in force.
    pub freeze: Option<String>,
    pub merge_sha: Option<String>,
    pub merged_by: Option<String>,
    /// What testers said, oldest first.
    #[serde(default)]
    pub feedback: Vec<TesterFeedback>,
    /// The fork a forge request comes from: untrusted (its own preview
    /// `pr-<number>`, builds allowed by an admin, no secrets).
    #[serde(default)]
    pub fork_of: Option<String>,
    /// The request's own commits: what its head adds to the target's head
    /// (what an approval of it covers), newest first.
    #[serde(default)]
    pub commits: Vec<ChangelogCommit>,
    /// Commits already on the target that no approval covers: Gantry does
    /// not merge into them (approve the target's held run first, or an
    /// admin overrides).
    #[serde(default)]
    pub uncovered_on_target: Option<UncoveredCommits>,
}

/// What a change request changes, file by file, from where it left its
/// target to its head. The lines (and their counts) are for developers and
/// up; others get the names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChangeRequestFiles {
    pub files: Vec<FileDiff>,
    /// More files changed than are listed.
    pub more_files: bool,
    /// The lines were left out: they are for developers and up.
    pub lines_withheld: bool,
    /// The files cannot be shown now (the mirror lacks a commit, or the
    /// branch shares no history with its target); nothing is listed.
    #[serde(default)]
    pub unavailable: bool,
}

/// One file a change request changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct FileDiff {
    pub path: String,
    /// added, modified, deleted, renamed, …
    pub status: String,
    /// Lines added and removed (`None`: not read — withheld, or past the
    /// size limits).
    pub additions: Option<u32>,
    pub deletions: Option<u32>,
    pub binary: bool,
    /// The unified diff, a line each, its first character the kind: `@` a
    /// hunk header, `+` added, `-` removed, ` ` unchanged. Empty for a
    /// binary file, or for a caller below developer.
    pub lines: Vec<String>,
    /// Lines were left out (a size limit).
    pub truncated: bool,
}

/// What waits for a decision: change requests (with their preview, tests
/// and approvals) and runs held for approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ApprovalInbox {
    pub change_requests: Vec<ChangeRequestDetail>,
    pub runs: Vec<PendingApproval>,
}

/// A decision on a change request or a held run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    Approve,
    Reject,
    /// Admins: go ahead regardless of the count, the author rule and a
    /// freeze; the reason is mandatory.
    Override,
    /// The author (or an admin) withdraws a change request.
    Close,
    /// Testers (and up) leave feedback on a change request's preview; it
    /// does not count as an approval.
    Feedback,
}

impl ReviewAction {
    pub fn parse(text: &str) -> Option<ReviewAction> {
        match text {
            "approve" => Some(ReviewAction::Approve),
            "reject" => Some(ReviewAction::Reject),
            "override" => Some(ReviewAction::Override),
            "close" => Some(ReviewAction::Close),
            "feedback" => Some(ReviewAction::Feedback),
            _ => None,
        }
    }
}

/// A decision with its comment (the reason, for an override).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Review {
    pub action: ReviewAction,
    #[serde(default)]
    pub comment: Option<String>,
}

/// A developer's proposal to merge `source_branch` into `target_branch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewChangeRequest {
    pub app: String,
    pub source_branch: String,
    /// Default: the staging branch (`latest`); `latest` itself is promoted
    /// into the production branch.
    #[serde(default)]
    pub target_branch: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}
