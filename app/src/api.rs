//! Server functions: the dashboard's calls into the server, at stable
//! addresses (`POST /fn/<name>`). Each one fetches
//! the [`Port`](crate::port::Port) from context and asks it; the browser only
//! ever sees a generic message when something fails (the cause is logged).

use leptos::prelude::*;

use crate::dto::{
    AppOverview, ApprovalInbox, AuditEntry, AuditFilter, ChangeRequestDetail, ChangeRequestSummary,
    ChannelSummary, ClusterSummary, ConfigStatus, EnvironmentSummary, ObjectDiff, PendingApproval,
    ReleaseFilter, ReleaseSummary, RunDetail, Settings, ShareLink, SharedPreview, TesterFeedback,
};

#[cfg(feature = "ssr")]
type Port = std::sync::Arc<dyn crate::port::DashboardPort>;

/// The port and who is calling. Reads the request first, before any
/// `.await`, while the request's context is certainly current.
#[cfg(feature = "ssr")]
async fn caller() -> Result<(Port, crate::port::Caller), ServerFnError> {
    let parts = use_context::<http::request::Parts>();
    let port = use_context::<crate::port::Port>()
        .map(|port| port.0)
        .ok_or_else(|| ServerFnError::new("the dashboard port is not configured"))?;
    let parts = parts.ok_or_else(|| ServerFnError::new("no request"))?;
    match port.identify(parts).await.map_err(failed("who you are"))? {
        Some(caller) => Ok((port, caller)),
        None => Err(refusal(
            http::StatusCode::UNAUTHORIZED,
            "Sign in to see this.".into(),
        )),
    }
}

/// The port and who is calling, if anyone: share links may open without
/// an account.
#[cfg(feature = "ssr")]
async fn visitor() -> Result<(Port, Option<crate::port::Caller>), ServerFnError> {
    let parts = use_context::<http::request::Parts>();
    let port = use_context::<crate::port::Port>()
        .map(|port| port.0)
        .ok_or_else(|| ServerFnError::new("the dashboard port is not configured"))?;
    let parts = parts.ok_or_else(|| ServerFnError::new("no request"))?;
    let visitor = port.identify(parts).await.map_err(failed("who you are"))?;
    Ok((port, visitor))
}

/// The status of the page (or server-function answer) being made.
#[cfg(feature = "ssr")]
fn set_status(status: http::StatusCode) {
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(status);
    }
}

/// A refusal answers a form's call with its status (400, 403, 404, 409) —
/// the person's to fix, not a server failure; a page being rendered keeps
/// its own status (the page says what was refused).
#[cfg(feature = "ssr")]
fn refusal(status: http::StatusCode, reason: String) -> ServerFnError {
    let called = use_context::<http::request::Parts>()
        .is_some_and(|parts| parts.uri.path().starts_with("/fn/"));
    if called {
        set_status(status);
    }
    ServerFnError::new(reason)
}

/// Logs the cause and gives the browser a message without internals
/// (or the reason, when the request was refused for one the person can fix).
#[cfg(feature = "ssr")]
fn failed(what: &'static str) -> impl FnOnce(crate::port::PortError) -> ServerFnError {
    move |error| match error {
        crate::port::PortError::Refused(reason) => refusal(http::StatusCode::BAD_REQUEST, reason),
        crate::port::PortError::Forbidden(reason) => refusal(http::StatusCode::FORBIDDEN, reason),
        crate::port::PortError::NotFound(reason) => refusal(http::StatusCode::NOT_FOUND, reason),
        crate::port::PortError::Conflict(reason) => refusal(http::StatusCode::CONFLICT, reason),
        crate::port::PortError::Gone(reason) => {
            // A page built on what is gone says so in its status too.
            set_status(http::StatusCode::GONE);
            ServerFnError::new(reason)
        }
        crate::port::PortError::Failed(cause) => {
            tracing::error!(%cause, "dashboard could not load {what}");
            ServerFnError::new(format!(
                "could not load {what}; the server log has the cause"
            ))
        }
        crate::port::PortError::Unavailable(cause) => {
            tracing::warn!(%cause, "dashboard could not load {what}: a dependency is unavailable");
            // Answered as the REST API answers an outage: 503, retry later
            // (the same seconds as the server's `RETRY_AFTER_SECONDS`).
            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(http::StatusCode::SERVICE_UNAVAILABLE);
                response.insert_header(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("5"),
                );
            }
            ServerFnError::new(format!(
                "could not load {what}: a service Gantry depends on did not answer; try again later"
            ))
        }
    }
}

#[server(prefix = "/fn", endpoint = "list_environments")]
pub async fn list_environments() -> Result<Vec<EnvironmentSummary>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.environments(&caller)
        .await
        .map_err(failed("environments"))
}

#[server(prefix = "/fn", endpoint = "list_lanes")]
pub async fn list_lanes(
    query: crate::dto::LaneQuery,
) -> Result<crate::dto::LanesPage, ServerFnError> {
    let (port, caller) = caller().await?;
    port.lanes_page(&caller, query)
        .await
        .map_err(failed("the lanes"))
}

#[server(prefix = "/fn", endpoint = "get_resources")]
pub async fn get_resources(
    app: String,
    env: String,
    query: crate::dto::ResourceQuery,
) -> Result<crate::dto::ResourcePage, ServerFnError> {
    let (port, caller) = caller().await?;
    port.resources(&caller, app, env, query)
        .await
        .map_err(failed("the resources"))
}

#[server(prefix = "/fn", endpoint = "get_resource")]
pub async fn get_resource(
    app: String,
    env: String,
    reference: crate::dto::ResourceRef,
) -> Result<crate::dto::ResourceDetail, ServerFnError> {
    let (port, caller) = caller().await?;
    port.resource(&caller, app, env, reference)
        .await
        .map_err(failed("the object"))
}

#[server(prefix = "/fn", endpoint = "get_pod_log")]
pub async fn get_pod_log(
    app: String,
    env: String,
    pod: String,
    query: crate::dto::PodLogQuery,
) -> Result<crate::dto::PodLog, ServerFnError> {
    let (port, caller) = caller().await?;
    port.pod_log(&caller, app, env, pod, query)
        .await
        .map_err(failed("the pod's log"))
}

#[server(prefix = "/fn", endpoint = "get_attention")]
pub async fn get_attention() -> Result<crate::dto::Attention, ServerFnError> {
    let (port, caller) = caller().await?;
    port.attention(&caller)
        .await
        .map_err(failed("what needs attention"))
}

/// How many decisions wait for the signed-in person (0 for a visitor):
/// the count beside Approvals in the navigation.
#[server(prefix = "/fn", endpoint = "waiting_for_me")]
pub async fn waiting_for_me() -> Result<u32, ServerFnError> {
    let (port, caller) = visitor().await?;
    match caller {
        Some(caller) => port
            .waiting_for_me(&caller)
            .await
            .map_err(failed("the approvals waiting")),
        None => Ok(0),
    }
}

#[server(prefix = "/fn", endpoint = "list_runs")]
pub async fn list_runs(
    #[server(default)] query: crate::dto::RunQuery,
) -> Result<crate::dto::RunsPage, ServerFnError> {
    let (port, caller) = caller().await?;
    port.runs(&caller, query).await.map_err(failed("runs"))
}

#[server(prefix = "/fn", endpoint = "get_app_overview")]
pub async fn get_app_overview(app: String) -> Result<Option<AppOverview>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.app_overview(&caller, app)
        .await
        .map_err(failed("the app"))
}

#[server(prefix = "/fn", endpoint = "list_change_requests")]
pub async fn list_change_requests() -> Result<Vec<ChangeRequestSummary>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.change_requests(&caller)
        .await
        .map_err(failed("change requests"))
}

/// One release with its soak progress (`None`: no such release).
#[server(prefix = "/fn", endpoint = "get_release")]
pub async fn get_release(id: i64) -> Result<Option<ReleaseSummary>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.release(&caller, id)
        .await
        .map_err(failed("the release"))
}

/// Commits, authors and files between two releases of an app.
#[server(prefix = "/fn", endpoint = "compare_releases")]
pub async fn compare_releases(
    app: String,
    from: i64,
    to: i64,
) -> Result<crate::dto::ReleaseComparison, ServerFnError> {
    let (port, caller) = caller().await?;
    port.compare_releases(&caller, app, from, to)
        .await
        .map_err(failed("the comparison"))
}

/// Delivery metrics per app the caller may see (dora.dev's measures).
#[server(prefix = "/fn", endpoint = "delivery_metrics")]
pub async fn get_delivery_metrics(
    query: crate::dto::DeliveryQuery,
) -> Result<Vec<crate::dto::DeliveryMetrics>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.delivery_metrics(&caller, query)
        .await
        .map_err(failed("delivery metrics"))
}

#[server(prefix = "/fn", endpoint = "list_releases")]
pub async fn list_releases(filter: ReleaseFilter) -> Result<Vec<ReleaseSummary>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.releases(&caller, filter)
        .await
        .map_err(failed("releases"))
}

/// An admin rolls an environment back to release `to` (empty: the last
/// stable one). `confirm` is the form's "I understand" box; `faulty` its
/// "the current release is faulty" box (its artifact is rejected).
#[server(prefix = "/fn", endpoint = "rollback_release")]
pub async fn rollback_release(
    app: String,
    environment: String,
    to: String,
    reason: String,
    confirm: Option<String>,
    faulty: Option<String>,
    csrf: String,
) -> Result<crate::dto::RollbackAccepted, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the rollback"))?;
    if confirm.as_deref() != Some("yes") {
        return Err(ServerFnError::new(
            "tick the box to confirm: the environment will be pinned",
        ));
    }
    let to = match to.trim() {
        "" => None,
        id => Some(
            id.parse::<i64>()
                .map_err(|_| ServerFnError::new(format!("{id:?} is not a release number")))?,
        ),
    };
    let request = crate::dto::RollbackRequest {
        environment: Some(environment).filter(|e| !e.trim().is_empty()),
        to,
        reason,
        faulty: faulty.as_deref() == Some("yes"),
    };
    port.rollback(&caller, app, request)
        .await
        .map_err(failed("the rollback"))
}

#[server(prefix = "/fn", endpoint = "mark_release_stable")]
pub async fn mark_release_stable(
    id: i64,
    reason: String,
    csrf: String,
) -> Result<ReleaseSummary, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the release"))?;
    let reason = Some(reason).filter(|r| !r.trim().is_empty());
    port.mark_release_stable(&caller, id, reason)
        .await
        .map_err(failed("the release"))
}

#[server(prefix = "/fn", endpoint = "promote_environment")]
pub async fn promote_environment(
    app: String,
    environment: String,
    reason: String,
    csrf: String,
) -> Result<crate::dto::Promotion, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the promotion"))?;
    let request = crate::dto::PromoteRequest {
        environment,
        reason: Some(reason).filter(|r| !r.trim().is_empty()),
    };
    port.promote(&caller, app, request)
        .await
        .map_err(failed("the promotion"))
}

#[server(prefix = "/fn", endpoint = "list_pending_approvals")]
pub async fn list_pending_approvals() -> Result<Vec<PendingApproval>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.pending_approvals(&caller)
        .await
        .map_err(failed("approvals"))
}

#[server(prefix = "/fn", endpoint = "list_clusters")]
pub async fn list_clusters() -> Result<Vec<ClusterSummary>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.clusters(&caller).await.map_err(failed("clusters"))
}

#[server(prefix = "/fn", endpoint = "list_audit_log")]
pub async fn list_audit_log(filter: AuditFilter) -> Result<Vec<AuditEntry>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.audit_log(&caller, filter)
        .await
        .map_err(failed("the audit log"))
}

#[server(prefix = "/fn", endpoint = "get_settings")]
pub async fn get_settings() -> Result<Settings, ServerFnError> {
    let (port, caller) = caller().await?;
    port.settings(&caller).await.map_err(failed("settings"))
}

#[server(prefix = "/fn", endpoint = "get_config_status")]
pub async fn get_config_status() -> Result<ConfigStatus, ServerFnError> {
    let (port, caller) = caller().await?;
    port.config_status(&caller)
        .await
        .map_err(failed("the pipeline repo status"))
}

#[server(prefix = "/fn", endpoint = "get_run")]
pub async fn get_run(id: i64) -> Result<Option<RunDetail>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.run_detail(&caller, id)
        .await
        .map_err(failed("the run"))
}

/// The share button: a signed, expiring link to the tester page.
/// A developer ends a share link.
#[server(prefix = "/fn", endpoint = "revoke_share_link")]
pub async fn revoke_share_link(id: i64, csrf: String) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the revocation"))?;
    port.revoke_share_link(&caller, id)
        .await
        .map_err(failed("the revocation"))?;
    Ok(format!("Share link {id} is revoked: it no longer opens."))
}

/// A developer gives a share link another full lifetime.
#[server(prefix = "/fn", endpoint = "extend_share_link")]
pub async fn extend_share_link(id: i64, csrf: String) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the extension"))?;
    let link = port
        .extend_share_link(&caller, id)
        .await
        .map_err(failed("the extension"))?;
    Ok(format!(
        "Share link {id} now expires {}; the address testers have keeps working.",
        crate::format::timestamp(link.expires_at)
    ))
}

#[server(prefix = "/fn", endpoint = "share_change_request")]
pub async fn share_change_request(id: i64, csrf: String) -> Result<ShareLink, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the share link"))?;
    port.share_change_request(&caller, id)
        .await
        .map_err(failed("the share link"))
}

#[server(prefix = "/fn", endpoint = "get_shared_preview")]
pub async fn get_shared_preview(token: String) -> Result<SharedPreview, ServerFnError> {
    let (port, visitor) = visitor().await?;
    let shared = port.shared_preview(visitor.as_ref(), token).await;
    if let Err(crate::port::PortError::NotFound(_)) = &shared {
        // A link that never was (or was tampered with) is a 404 page.
        set_status(http::StatusCode::NOT_FOUND);
    }
    shared.map_err(failed("the shared preview"))
}

/// A tester's verdict through a share link (signed in or not).
#[server(prefix = "/fn", endpoint = "leave_shared_feedback")]
pub async fn leave_shared_feedback(
    token: String,
    verdict: String,
    comment: String,
    name: Option<String>,
    csrf: String,
) -> Result<TesterFeedback, ServerFnError> {
    let (port, visitor) = visitor().await?;
    // Signed-in visitors prove the form is theirs; for others the link's
    // token is the capability.
    if let Some(caller) = &visitor {
        caller.check_csrf(&csrf).map_err(failed("your feedback"))?;
    }
    port.leave_shared_feedback(
        visitor.as_ref(),
        token,
        crate::dto::NewFeedback {
            verdict,
            comment,
            name,
        },
    )
    .await
    .map_err(failed("your feedback"))
}

#[server(prefix = "/fn", endpoint = "list_channels")]
pub async fn list_channels() -> Result<Vec<ChannelSummary>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.channels(&caller)
        .await
        .map_err(failed("notification channels"))
}

/// "Send test message": queued now, its delivery shows in the log.
#[server(prefix = "/fn", endpoint = "test_channel")]
pub async fn test_channel(name: String, csrf: String) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller
        .check_csrf(&csrf)
        .map_err(failed("the test message"))?;
    port.test_channel(&caller, name.clone())
        .await
        .map_err(failed("the test message"))?;
    Ok(name)
}

/// Splits a form's "a, b c" list into its items.
#[cfg(feature = "ssr")]
fn items(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// An empty form field is an absent value.
#[cfg(feature = "ssr")]
fn given(text: String) -> Option<String> {
    Some(text.trim().to_string()).filter(|text| !text.is_empty())
}

/// Admins register a channel; its secrets go by name. `recipients` are
/// whom it tells: email addresses for email, mobile numbers to @mention
/// for DingTalk, user ids for WeCom (the sender and per-app rules are the
/// API's).
#[server(prefix = "/fn", endpoint = "register_channel")]
pub async fn register_channel(
    name: String,
    kind: String,
    url_secret: String,
    #[server(default)] signing_secret: String,
    #[server(default)] recipients: String,
    #[server(default)] events: Vec<String>,
    csrf: String,
) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the channel"))?;
    let recipients = items(&recipients);
    let email = kind == "email";
    let form = crate::dto::ChannelForm {
        name: name.trim().to_string(),
        kind,
        url_secret: url_secret.trim().to_string(),
        signing_secret: given(signing_secret),
        to: if email {
            recipients.clone()
        } else {
            Vec::new()
        },
        from: None,
        mentions: if email { Vec::new() } else { recipients },
        events,
    };
    let name = form.name.clone();
    port.register_channel(&caller, form)
        .await
        .map_err(failed("the channel"))?;
    Ok(format!(
        "Channel {name} is saved; send it a test message to see it work."
    ))
}

#[server(prefix = "/fn", endpoint = "remove_channel")]
pub async fn remove_channel(name: String, csrf: String) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the channel"))?;
    port.remove_channel(&caller, name.clone())
        .await
        .map_err(failed("the channel"))?;
    Ok(format!("Channel {name} is removed."))
}

#[server(prefix = "/fn", endpoint = "list_secrets")]
pub async fn list_secrets() -> Result<Vec<crate::dto::SecretEntry>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.secrets(&caller).await.map_err(failed("secrets"))
}

/// Admins set a secret; the value goes in sealed and never comes back.
#[server(prefix = "/fn", endpoint = "set_secret")]
pub async fn set_secret(
    name: String,
    value: String,
    #[server(default)] app: String,
    csrf: String,
) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the secret"))?;
    let name = name.trim().to_string();
    port.set_secret(&caller, name.clone(), value, given(app))
        .await
        .map_err(failed("the secret"))?;
    Ok(format!(
        "Secret {name} is set. Its value will not be shown again."
    ))
}

#[server(prefix = "/fn", endpoint = "delete_secret")]
pub async fn delete_secret(
    name: String,
    #[server(default)] app: String,
    csrf: String,
) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the secret"))?;
    port.delete_secret(&caller, name.clone(), given(app))
        .await
        .map_err(failed("the secret"))?;
    Ok(format!("Secret {name} is deleted."))
}

#[server(prefix = "/fn", endpoint = "list_api_tokens")]
pub async fn list_api_tokens() -> Result<Vec<crate::dto::ApiToken>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.api_tokens(&caller).await.map_err(failed("API tokens"))
}

/// A token acting as the signed-in person; the secret is in the answer
/// and nowhere else, ever.
#[server(prefix = "/fn", endpoint = "create_api_token")]
pub async fn create_api_token(
    name: String,
    role: String,
    #[server(default)] app: String,
    #[server(default)] expires: String,
    csrf: String,
) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the token"))?;
    let request = crate::dto::ApiTokenRequest {
        name,
        role,
        app: given(app),
        expires: given(expires),
    };
    let created = port
        .create_api_token(&caller, request)
        .await
        .map_err(failed("the token"))?;
    Ok(format!(
        "Your new token — copy it now, it will not be shown again: {}",
        created.token
    ))
}

#[server(prefix = "/fn", endpoint = "revoke_api_token")]
pub async fn revoke_api_token(id: i64, csrf: String) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the token"))?;
    port.revoke_api_token(&caller, id)
        .await
        .map_err(failed("the token"))?;
    Ok(format!("Token {id} is revoked: it no longer works."))
}

/// What an open change request changes, file by file.
#[server(prefix = "/fn", endpoint = "get_change_request_files")]
pub async fn get_change_request_files(
    id: i64,
) -> Result<crate::dto::ChangeRequestFiles, ServerFnError> {
    let (port, caller) = caller().await?;
    port.change_request_files(&caller, id)
        .await
        .map_err(failed("the changed files"))
}

#[server(prefix = "/fn", endpoint = "register_cluster")]
pub async fn register_cluster(
    name: String,
    kubeconfig: String,
    context: String,
    csrf: String,
) -> Result<ClusterSummary, ServerFnError> {
    let (port, caller) = caller().await?;
    caller
        .check_csrf(&csrf)
        .map_err(failed("the cluster registration"))?;
    let registration = crate::dto::ClusterRegistration {
        name,
        kubeconfig: Some(kubeconfig),
        context: Some(context).filter(|c| !c.trim().is_empty()),
        ..crate::dto::ClusterRegistration::default()
    };
    port.register_cluster(&caller, registration)
        .await
        .map_err(failed("the cluster registration"))
}

#[server(prefix = "/fn", endpoint = "check_cluster")]
pub async fn check_cluster(name: String, csrf: String) -> Result<ClusterSummary, ServerFnError> {
    let (port, caller) = caller().await?;
    caller
        .check_csrf(&csrf)
        .map_err(failed("the cluster check"))?;
    port.check_cluster(&caller, name)
        .await
        .map_err(failed("the cluster check"))
}

#[server(prefix = "/fn", endpoint = "get_run_diff")]
pub async fn get_run_diff(id: i64) -> Result<Option<Vec<ObjectDiff>>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.run_diff(&caller, id).await.map_err(failed("the diff"))
}

#[server(prefix = "/fn", endpoint = "get_change_request")]
pub async fn get_change_request(id: i64) -> Result<Option<ChangeRequestDetail>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.change_request(&caller, id)
        .await
        .map_err(failed("the change request"))
}

#[server(prefix = "/fn", endpoint = "get_change_request_diff")]
pub async fn get_change_request_diff(id: i64) -> Result<Option<Vec<ObjectDiff>>, ServerFnError> {
    let (port, caller) = caller().await?;
    port.change_request_diff(&caller, id)
        .await
        .map_err(failed("the diff"))
}

#[server(prefix = "/fn", endpoint = "approval_inbox")]
pub async fn get_approval_inbox() -> Result<ApprovalInbox, ServerFnError> {
    let (port, caller) = caller().await?;
    port.approval_inbox(&caller)
        .await
        .map_err(failed("the approvals"))
}

/// What the "open a change request" form offers: apps, and `app`'s branches.
#[server(prefix = "/fn", endpoint = "request_choices")]
pub async fn request_choices(
    #[server(default)] app: String,
) -> Result<crate::dto::RequestChoices, ServerFnError> {
    let (port, caller) = caller().await?;
    port.request_choices(&caller, app)
        .await
        .map_err(failed("the apps and branches"))
}

#[server(prefix = "/fn", endpoint = "open_change_request")]
pub async fn open_change_request(
    app: String,
    source_branch: String,
    target_branch: String,
    title: String,
    description: String,
    csrf: String,
) -> Result<ChangeRequestSummary, ServerFnError> {
    let (port, caller) = caller().await?;
    caller
        .check_csrf(&csrf)
        .map_err(failed("the change request"))?;
    let present = |text: String| Some(text).filter(|t| !t.trim().is_empty());
    let request = crate::dto::NewChangeRequest {
        app,
        source_branch,
        target_branch: present(target_branch),
        title: present(title),
        description: present(description),
    };
    port.open_change_request(&caller, request)
        .await
        .map_err(failed("the change request"))
}

/// `action`: approve, reject, override or close.
#[server(prefix = "/fn", endpoint = "review_change_request")]
pub async fn review_change_request(
    id: i64,
    action: String,
    comment: String,
    csrf: String,
    // The danger zone's "I understand" box, which an override needs.
    #[server(default)] confirm: Option<String>,
) -> Result<ChangeRequestSummary, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the decision"))?;
    let review = review_of(&action, comment)?;
    let ticked = matches!(confirm.as_deref(), Some("on" | "yes" | "true"));
    if review.action == crate::dto::ReviewAction::Override && !ticked {
        return Err(ServerFnError::new(
            "an override merges without the approvals: tick \"I understand\" to confirm it",
        ));
    }
    port.review_change_request(&caller, id, review)
        .await
        .map_err(failed("the decision"))
}

/// `action`: approve, reject or override a held run.
#[server(prefix = "/fn", endpoint = "review_run")]
pub async fn review_run(
    id: i64,
    action: String,
    comment: String,
    csrf: String,
) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the decision"))?;
    let review = review_of(&action, comment)?;
    port.review_run(&caller, id, review)
        .await
        .map_err(failed("the decision"))
}

#[cfg(feature = "ssr")]
fn review_of(action: &str, comment: String) -> Result<crate::dto::Review, ServerFnError> {
    let action = crate::dto::ReviewAction::parse(action)
        .ok_or_else(|| ServerFnError::new(format!("unknown decision {action:?}")))?;
    Ok(crate::dto::Review {
        action,
        comment: Some(comment).filter(|c| !c.trim().is_empty()),
    })
}

/// An admin stops a run (queued, held or running).
#[server(prefix = "/fn", endpoint = "cancel_run")]
pub async fn cancel_run(id: i64, csrf: String) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the cancel"))?;
    port.cancel_run(&caller, id)
        .await
        .map_err(failed("the cancel"))
}

/// An admin promotes, pauses or aborts a run's canary.
#[server(prefix = "/fn", endpoint = "rollout_run")]
pub async fn rollout_run(id: i64, action: String, csrf: String) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the rollout"))?;
    port.rollout_run(&caller, id, action)
        .await
        .map_err(failed("the rollout"))
}

/// A developer runs a finished run's commit again; the new run's address.
#[server(prefix = "/fn", endpoint = "rerun_run")]
pub async fn rerun_run(id: i64, csrf: String) -> Result<String, ServerFnError> {
    let (port, caller) = caller().await?;
    caller.check_csrf(&csrf).map_err(failed("the re-run"))?;
    let new_id = port
        .rerun(&caller, id)
        .await
        .map_err(failed("the re-run"))?;
    Ok(format!("/runs/{new_id}"))
}

#[server(prefix = "/fn", endpoint = "whoami")]
pub async fn whoami() -> Result<Option<crate::dto::Me>, ServerFnError> {
    let parts = use_context::<http::request::Parts>();
    let port = use_context::<crate::port::Port>()
        .map(|port| port.0)
        .ok_or_else(|| ServerFnError::new("the dashboard port is not configured"))?;
    let parts = parts.ok_or_else(|| ServerFnError::new("no request"))?;
    Ok(port
        .identify(parts)
        .await
        .map_err(failed("who you are"))?
        .map(|caller| caller.me))
}
