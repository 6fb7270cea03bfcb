//! Preview links for testers and the feedback they leave.

use super::*;

/// What a tester said about a change request's preview.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TesterFeedback {
    pub id: i64,
    /// Who: a signed-in person's name, or the name a share-link visitor gave
    /// (with `via_share_link`).
    pub author: String,
    pub via_share_link: bool,
    /// works, broken or note.
    pub verdict: String,
    pub comment: String,
    /// The head the tester looked at.
    pub commit_sha: Option<String>,
    pub created_at: UnixMillis,
}

/// A signed, expiring link to a change request's tester page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ShareLink {
    pub id: i64,
    pub change_request_id: i64,
    pub url: String,
    pub created_by: String,
    pub expires_at: UnixMillis,
    /// Whether it opens without an account (the admin's `auth.share_anonymous`).
    pub anonymous: bool,
    /// When it was revoked (listed links only).
    #[serde(default)]
    pub revoked_at: Option<UnixMillis>,
    /// The link as a QR code, one string of `1` (dark) and `0` per row,
    /// for a tester to open it on a phone.
    #[serde(default)]
    pub qr: Vec<String>,
}

/// The tester page behind a share link: what changed, how its tests went,
/// where the preview is, and what testers said. Nothing an anonymous visitor
/// should not see (no approvals, no diff, no e-mail addresses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SharedPreview {
    pub change_request_id: i64,
    pub app: String,
    pub title: String,
    pub description: String,
    pub source_branch: String,
    pub target_branch: String,
    pub state: ChangeRequestState,
    pub head_sha: Option<String>,
    /// The commits the request brings, newest first.
    pub commits: Vec<ChangelogCommit>,
    pub preview_url: Option<String>,
    pub preview_state: Option<EnvironmentState>,
    pub run: Option<RunSummary>,
    pub reports: Vec<TestReportSummary>,
    pub feedback: Vec<TesterFeedback>,
    pub expires_at: UnixMillis,
}

/// What a tester sends from the tester page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewFeedback {
    /// works, broken or note.
    pub verdict: String,
    pub comment: String,
    /// A share-link visitor without an account says who they are.
    #[serde(default)]
    pub name: Option<String>,
}
