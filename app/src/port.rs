//! The port between the dashboard and Gantry's domain.
//!
//! Server functions live in this crate so the WASM bundle can call them, but
//! the code that answers them (database, git, clusters) lives in `server`,
//! which depends on this crate. Rather than invert that dependency, `app`
//! declares what it needs as the [`DashboardPort`] trait; `server` implements
//! it and provides it to every server function as Leptos context. The REST
//! API calls the same methods, so both surfaces share one set of
//! permission checks: every method takes the [`Caller`] and decides.

use std::sync::Arc;

use async_trait::async_trait;

use crate::dto::{
    AppOverview, ApprovalInbox, Attention, AuditEntry, AuditFilter, ChangeRequestDetail,
    ChangeRequestSummary, ChannelSummary, ClusterRegistration, ClusterSummary, CommitReleases,
    ConfigStatus, EnvironmentSummary, LaneQuery, LanesPage, Me, NewChangeRequest, NewFeedback,
    ObjectDiff, PendingApproval, PromoteRequest, Promotion, ReleaseComparison, ReleaseFilter,
    ReleaseSummary, Review, RollbackAccepted, RollbackRequest, RunDetail, RunQuery, RunsPage,
    Settings, ShareLink, SharedPreview, TesterFeedback,
};

/// The change feed's version as it was when a page's request arrived, read
/// before the page's data: the page shows at least that version. The server
/// puts it in the request's extensions; the layout writes it into the page
/// so that live updates know where the page starts (see `page_updates.js`).
#[derive(Clone, Debug)]
pub struct PageVersion(pub String);

/// A failure behind the port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Something broke; the text goes to the server log, never to the
    /// browser (the dashboard shows a generic message).
    #[error("{0}")]
    Failed(String),
    /// Something Gantry depends on (a cluster, a git host) did not answer;
    /// trying later may help. The text goes to the log, like `Failed`.
    #[error("{0}")]
    Unavailable(String),
    /// The request was refused for a reason the person can fix; the text
    /// is shown to them.
    #[error("{0}")]
    Refused(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked about does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing's state does not allow this now (already decided, frozen).
    #[error("{0}")]
    Conflict(String),
    /// It was there and is gone for good (an expired or revoked link).
    #[error("{0}")]
    Gone(String),
}

/// Who is asking: a signed-in person or an API token's owner.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: i64,
    pub me: Me,
    /// Authenticated by an API token (no CSRF token to check).
    pub via_token: bool,
    /// Where the request came from, for the audit log.
    pub source_ip: Option<String>,
}

impl Caller {
    /// Refuses unless the caller has at least `role` on `app`.
    pub fn require(&self, role: crate::dto::Role, app: Option<&str>) -> Result<(), PortError> {
        if self.me.can(role, app) {
            return Ok(());
        }
        let scope = app.map(|a| format!(" on app {a}")).unwrap_or_default();
        Err(PortError::Forbidden(format!(
            "this needs the {role} role{scope}; {} does not have it",
            self.me.name
        )))
    }

    /// Refuses a change sent with a session but without its CSRF token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PortError> {
        let matches = sent.len() == self.me.csrf.len()
            && sent
                .bytes()
                .zip(self.me.csrf.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if self.via_token || (matches && !sent.is_empty()) {
            Ok(())
        } else {
            Err(PortError::Forbidden(
                "missing or invalid CSRF token; reload the page".into(),
            ))
        }
    }
}

// Everything the dashboard reads or does, answered by the server: one
// trait per domain (`DashboardPort`, below, is all of them together).

/// Who is asking.
#[async_trait]
pub trait IdentityPort: Send + Sync {
    /// Who made the request (`None`: nobody signed in).
    async fn identify(&self, parts: http::request::Parts) -> Result<Option<Caller>, PortError>;
}

/// The environment stack: every environment, one app's page.
#[async_trait]
pub trait StackPort: Send + Sync {
    async fn environments(&self, caller: &Caller) -> Result<Vec<EnvironmentSummary>, PortError>;
    /// A page of lanes, one per app.
    async fn lanes_page(&self, caller: &Caller, query: LaneQuery) -> Result<LanesPage, PortError>;
    /// What needs someone now ("needs attention").
    async fn attention(&self, caller: &Caller) -> Result<Attention, PortError>;
    /// How many change requests and held runs wait for this caller's
    /// decision (the count beside Approvals).
    async fn waiting_for_me(&self, caller: &Caller) -> Result<u32, PortError>;
    /// One app's page (`None`: no such app).
    async fn app_overview(
        &self,
        caller: &Caller,
        app: String,
    ) -> Result<Option<AppOverview>, PortError>;
    /// A page of an environment's live resource tree on one cluster
    /// (viewers of the app).
    async fn resources(
        &self,
        caller: &Caller,
        app: String,
        env: String,
        query: crate::dto::ResourceQuery,
    ) -> Result<crate::dto::ResourcePage, PortError>;
    /// One applied object live, as applied and the difference (admins).
    async fn resource(
        &self,
        caller: &Caller,
        app: String,
        env: String,
        reference: crate::dto::ResourceRef,
    ) -> Result<crate::dto::ResourceDetail, PortError>;
    /// The end of a pod's log (developers of the app).
    async fn pod_log(
        &self,
        caller: &Caller,
        app: String,
        env: String,
        pod: String,
        query: crate::dto::PodLogQuery,
    ) -> Result<crate::dto::PodLog, PortError>;
}

/// Runs, their logs and diffs, and the runs held for approval.
#[async_trait]
pub trait RunsPort: Send + Sync {
    /// A page of runs, newest first, of the apps the caller may see.
    async fn runs(&self, caller: &Caller, query: RunQuery) -> Result<RunsPage, PortError>;
    async fn pending_approvals(&self, caller: &Caller) -> Result<Vec<PendingApproval>, PortError>;
    async fn run_detail(&self, caller: &Caller, id: i64) -> Result<Option<RunDetail>, PortError>;
    /// The stored log of one step of a run, in order.
    async fn step_log(
        &self,
        caller: &Caller,
        run_id: i64,
        step_id: i64,
    ) -> Result<Option<String>, PortError>;
    /// Approve, reject or override a run held for approval; says what
    /// happened ("released", "waiting: 1 of 2", "rejected").
    async fn review_run(
        &self,
        caller: &Caller,
        id: i64,
        review: Review,
    ) -> Result<String, PortError>;
    /// What a run would change on its clusters (`None`: no such run).
    async fn run_diff(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<Option<Vec<ObjectDiff>>, PortError>;
    /// Stops a run for an admin of its app; says what happened.
    async fn cancel_run(&self, caller: &Caller, id: i64) -> Result<String, PortError>;
    /// Admins: `promote`, `pause` or `abort` the run's canary.
    async fn rollout_run(
        &self,
        caller: &Caller,
        id: i64,
        action: String,
    ) -> Result<String, PortError>;
    /// Plans a finished run's commit again; the new run's id.
    async fn rerun(&self, caller: &Caller, id: i64) -> Result<i64, PortError>;
}

/// Change requests: listing, opening, reviewing, their diffs, the inbox.
#[async_trait]
pub trait ChangeRequestsPort: Send + Sync {
    async fn change_requests(
        &self,
        caller: &Caller,
    ) -> Result<Vec<ChangeRequestSummary>, PortError>;
    /// The change request page (`None`: no such request).
    async fn change_request(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<Option<ChangeRequestDetail>, PortError>;
    /// What an open request changes, file by file.
    async fn change_request_files(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<crate::dto::ChangeRequestFiles, PortError>;
    /// Active change requests and held runs the caller can see.
    async fn approval_inbox(&self, caller: &Caller) -> Result<ApprovalInbox, PortError>;
    async fn open_change_request(
        &self,
        caller: &Caller,
        request: NewChangeRequest,
    ) -> Result<ChangeRequestSummary, PortError>;
    /// The apps the caller may open requests on and the branches of `app`.
    async fn request_choices(
        &self,
        caller: &Caller,
        app: String,
    ) -> Result<crate::dto::RequestChoices, PortError>;
    /// Approve, reject, override or close a change request.
    async fn review_change_request(
        &self,
        caller: &Caller,
        id: i64,
        review: Review,
    ) -> Result<ChangeRequestSummary, PortError>;
    /// What merging a change request would change on its target's clusters
    /// (`None`: no such request, or a target never deployed).
    async fn change_request_diff(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<Option<Vec<ObjectDiff>>, PortError>;
}

/// The release ledger: entries, rollback, promotion, stability, comparisons.
#[async_trait]
pub trait ReleasesPort: Send + Sync {
    /// One page of the release ledger.
    async fn releases(
        &self,
        caller: &Caller,
        filter: ReleaseFilter,
    ) -> Result<Vec<ReleaseSummary>, PortError>;
    /// One ledger entry (`None`: no such release).
    async fn release(&self, caller: &Caller, id: i64) -> Result<Option<ReleaseSummary>, PortError>;
    /// Admins: roll an environment of `app` back, and pin it.
    async fn rollback(
        &self,
        caller: &Caller,
        app: String,
        request: RollbackRequest,
    ) -> Result<RollbackAccepted, PortError>;
    /// Admins: unpin an environment and deploy its branch head.
    async fn promote(
        &self,
        caller: &Caller,
        app: String,
        request: PromoteRequest,
    ) -> Result<Promotion, PortError>;
    /// Admins: a live release is stable now, before its soak ends.
    async fn mark_release_stable(
        &self,
        caller: &Caller,
        id: i64,
        reason: Option<String>,
    ) -> Result<ReleaseSummary, PortError>;
    /// Commits, authors and files between two releases of `app`.
    async fn compare_releases(
        &self,
        caller: &Caller,
        app: String,
        from: i64,
        to: i64,
    ) -> Result<ReleaseComparison, PortError>;
    /// Which deployment first carried commit `sha` to each environment.
    async fn commit_releases(
        &self,
        caller: &Caller,
        app: String,
        sha: String,
    ) -> Result<CommitReleases, PortError>;
    /// Delivery metrics from the ledger (dora.dev's definitions), per app
    /// the caller may see.
    async fn delivery_metrics(
        &self,
        caller: &Caller,
        query: crate::dto::DeliveryQuery,
    ) -> Result<Vec<crate::dto::DeliveryMetrics>, PortError>;
}

/// Registered clusters.
#[async_trait]
pub trait ClustersPort: Send + Sync {
    async fn clusters(&self, caller: &Caller) -> Result<Vec<ClusterSummary>, PortError>;
    async fn register_cluster(
        &self,
        caller: &Caller,
        registration: ClusterRegistration,
    ) -> Result<ClusterSummary, PortError>;
    async fn check_cluster(
        &self,
        caller: &Caller,
        name: String,
    ) -> Result<ClusterSummary, PortError>;
}

/// Share links for testers and the feedback left through them.
#[async_trait]
pub trait SharingPort: Send + Sync {
    /// Developers: a signed, expiring link to the request's tester page.
    async fn share_change_request(&self, caller: &Caller, id: i64) -> Result<ShareLink, PortError>;
    /// Developers: end a share link before it expires.
    async fn revoke_share_link(&self, caller: &Caller, id: i64) -> Result<(), PortError>;
    /// Developers: give a live link another full lifetime (same address).
    async fn extend_share_link(&self, caller: &Caller, id: i64) -> Result<ShareLink, PortError>;
    /// The tester page behind a share link; `visitor` is `None` for someone
    /// without an account (allowed only where the admin says so).
    async fn shared_preview(
        &self,
        visitor: Option<&Caller>,
        token: String,
    ) -> Result<SharedPreview, PortError>;
    /// Feedback left through a share link.
    async fn leave_shared_feedback(
        &self,
        visitor: Option<&Caller>,
        token: String,
        feedback: NewFeedback,
    ) -> Result<TesterFeedback, PortError>;
}

/// What admins read and check — channels, the audit log, settings, the
/// configuration, secrets — and everyone's own API tokens.
#[async_trait]
pub trait AdminPort: Send + Sync {
    /// Admins: notification channels and their recent deliveries.
    async fn channels(&self, caller: &Caller) -> Result<Vec<ChannelSummary>, PortError>;
    /// Admins: queue a test message through channel `name`.
    async fn test_channel(&self, caller: &Caller, name: String) -> Result<(), PortError>;
    async fn audit_log(
        &self,
        caller: &Caller,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEntry>, PortError>;
    async fn settings(&self, caller: &Caller) -> Result<Settings, PortError>;
    async fn config_status(&self, caller: &Caller) -> Result<ConfigStatus, PortError>;
    /// Admins: register (or replace) a notification channel.
    async fn register_channel(
        &self,
        caller: &Caller,
        form: crate::dto::ChannelForm,
    ) -> Result<(), PortError>;
    /// Admins: remove a channel (its delivery log goes with it).
    async fn remove_channel(&self, caller: &Caller, name: String) -> Result<(), PortError>;
    /// Global admins: every secret's name and scope, never a value.
    async fn secrets(&self, caller: &Caller) -> Result<Vec<crate::dto::SecretEntry>, PortError>;
    /// Global admins: create or replace a secret (for one app, or all).
    async fn set_secret(
        &self,
        caller: &Caller,
        name: String,
        value: String,
        app: Option<String>,
    ) -> Result<(), PortError>;
    async fn delete_secret(
        &self,
        caller: &Caller,
        name: String,
        app: Option<String>,
    ) -> Result<(), PortError>;
    /// The caller's API tokens (a global admin's: everyone's).
    async fn api_tokens(&self, caller: &Caller) -> Result<Vec<crate::dto::ApiToken>, PortError>;
    /// A token acting as the caller, with at most their power.
    async fn create_api_token(
        &self,
        caller: &Caller,
        request: crate::dto::ApiTokenRequest,
    ) -> Result<crate::dto::CreatedApiToken, PortError>;
    async fn revoke_api_token(&self, caller: &Caller, id: i64) -> Result<(), PortError>;
}

/// Everything the dashboard reads or does, answered by the server: every
/// domain's trait above, implemented by whatever implements them all (the
/// server's `App`).
pub trait DashboardPort:
    IdentityPort
    + StackPort
    + RunsPort
    + ChangeRequestsPort
    + ReleasesPort
    + ClustersPort
    + SharingPort
    + AdminPort
    + 'static
{
}

impl<
    T: IdentityPort
        + StackPort
        + RunsPort
        + ChangeRequestsPort
        + ReleasesPort
        + ClustersPort
        + SharingPort
        + AdminPort
        + 'static,
> DashboardPort for T
{
}

/// The handle provided as context: `provide_context(Port(...))`.
#[derive(Clone)]
pub struct Port(pub Arc<dyn DashboardPort>);
