//! Data shared by the server and the dashboard: what the REST API returns and
//! what server functions hand to components. Compiled for both targets, so no
//! server-only types here; OpenAPI schemas are derived only under `ssr`.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Every timestamp Gantry stores or
/// returns uses this unit, so the two databases and the browser agree.
pub type UnixMillis = i64;

macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name used in the database, the API and CSS classes.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stable name; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

state_enum! {
    /// Where an environment of the stack stands.
    EnvironmentState {
        Pending => "pending",
        Deploying => "deploying",
        Live => "live",
        Failed => "failed",
        PartiallyFailed => "partially_failed",
        Destroying => "destroying",
        Destroyed => "destroyed",
    }
}

state_enum! {
    /// The life of one pipeline run.
    RunState {
        Queued => "queued",
        WaitingForApproval => "waiting_for_approval",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Superseded => "superseded",
    }
}

state_enum! {
    /// One step of a run.
    StepState {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Skipped => "skipped",
    }
}

state_enum! {
    /// A deployment of one commit to one environment (and each of its targets).
    DeploymentState {
        Deploying => "deploying",
        Succeeded => "succeeded",
        Failed => "failed",
        PartiallyFailed => "partially_failed",
    }
}

state_enum! {
    /// A request to merge a source branch into a target branch.
    ChangeRequestState {
        Open => "open",
        Approved => "approved",
        Conflict => "conflict",
        Merged => "merged",
        Rejected => "rejected",
        Closed => "closed",
    }
}

state_enum! {
    /// A production release in the ledger.
    ReleaseState {
        Deploying => "deploying",
        Live => "live",
        Stable => "stable",
        Failed => "failed",
        RolledBack => "rolled_back",
        Superseded => "superseded",
    }
}

state_enum! {
    /// The last connectivity check of a registered cluster.
    ClusterState {
        Unknown => "unknown",
        Reachable => "reachable",
        Unreachable => "unreachable",
    }
}

state_enum! {
    /// What a person may do, from least to most. A role includes the ones
    /// below it.
    Role {
        Viewer => "viewer",
        Tester => "tester",
        Developer => "developer",
        Admin => "admin",
    }
}

impl Role {
    /// Where it stands in `viewer < tester < developer < admin`.
    pub fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Tester => 1,
            Role::Developer => 2,
            Role::Admin => 3,
        }
    }
}

/// A role, for every app or for one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Grant {
    pub role: Role,
    /// `None`: every app.
    pub app: Option<String>,
}

/// Who is signed in, as the dashboard needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Me {
    pub name: String,
    pub grants: Vec<Grant>,
    /// Sent back with every change (forms carry it as `csrf`).
    pub csrf: String,
    /// When this person last authenticated with the identity provider.
    pub auth_time: Option<UnixMillis>,
}

impl Me {
    /// True when a grant gives at least `role` on `app` (or everywhere).
    pub fn can(&self, role: Role, app: Option<&str>) -> bool {
        self.grants.iter().any(|grant| {
            grant.role.rank() >= role.rank() && (grant.app.is_none() || grant.app.as_deref() == app)
        })
    }

    /// True when some grant gives at least `role` somewhere.
    pub fn can_anywhere(&self, role: Role) -> bool {
        self.grants
            .iter()
            .any(|grant| grant.role.rank() >= role.rank())
    }
}

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
    pub change_requests: Vec<ChangeRequestDetail>,
    /// Newest first.
    pub runs: Vec<RunSummary>,
}

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
}

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
}

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
}

/// A registered Kubernetes cluster. Credentials are never part of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ClusterSummary {
    pub name: String,
    pub server_url: Option<String>,
    pub state: ClusterState,
    pub server_version: Option<String>,
    pub last_checked_at: Option<UnixMillis>,
    pub last_error: Option<String>,
}

/// What an admin sends to register a cluster: a kubeconfig (choosing a
/// context), or a server URL with a bearer token (and CA), or in-cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ClusterRegistration {
    pub name: String,
    /// A kubeconfig file's content (YAML).
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// The context to use (default: the kubeconfig's current context).
    #[serde(default)]
    pub context: Option<String>,
    /// The API server URL, with `token` (and `ca` unless it is public).
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    /// PEM CA bundle of the API server.
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    /// Use the service account Gantry itself runs under.
    #[serde(default)]
    pub in_cluster: bool,
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

/// One line of the append-only audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: UnixMillis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub source_ip: Option<String>,
}

/// Which audit entries to list; every field narrows, none means all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct AuditFilter {
    /// Exactly this person.
    #[serde(default)]
    pub actor: Option<String>,
    /// An action (`run.approve`) or a family (`change_request`).
    #[serde(default)]
    pub action: Option<String>,
    /// Text the target contains (an app, a cluster, a request number).
    #[serde(default)]
    pub target: Option<String>,
    /// From this time (ms since the epoch), inclusive.
    #[serde(default)]
    pub since: Option<UnixMillis>,
    /// Before this time (ms since the epoch).
    #[serde(default)]
    pub until: Option<UnixMillis>,
    /// At most this many (default 200, at most 1000).
    #[serde(default)]
    pub limit: Option<i64>,
}

impl AuditFilter {
    /// Empty strings (an untouched form field) mean "any".
    pub fn normalized(mut self) -> AuditFilter {
        for field in [&mut self.actor, &mut self.action, &mut self.target] {
            if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            }
        }
        self
    }
}

/// A notification channel as the dashboard shows it: never its URL or
/// secrets, always how its recent deliveries fared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChannelSummary {
    pub name: String,
    /// dingtalk, slack, wecom, webhook or email.
    pub kind: String,
    /// What it hears, in words (`run_failed, released on shop`).
    pub hears: String,
    /// Events with their own wording.
    pub templated: Vec<String>,
    /// Deliveries given up after every retry, among the recent ones.
    pub failed_deliveries: i64,
    /// The most recent deliveries, newest first.
    pub deliveries: Vec<DeliverySummary>,
}

/// One message to one channel and how it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeliverySummary {
    pub id: i64,
    pub event: String,
    pub subject: String,
    /// pending, retrying, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: UnixMillis,
    pub delivered_at: Option<UnixMillis>,
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
}

/// Which layer of the configuration set one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SettingSource {
    pub key: String,
    pub value: String,
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_through_parse() {
        for state in RunState::ALL {
            assert_eq!(RunState::parse(state.as_str()), Some(*state));
        }
        assert_eq!(RunState::parse("Running"), None);
    }
}

state_enum! {
    /// What put an entry in the ledger.
    ReleaseKind {
        Release => "release",
        Rollback => "rollback",
    }
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
