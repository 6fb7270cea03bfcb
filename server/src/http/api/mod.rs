//! The JSON REST API under `/api/v1`, described by the OpenAPI document at
//! `/api/v1/openapi.json`. Handlers are thin: they ask the same port the
//! dashboard uses, so the API and the UI never disagree.
//!
//! Every route but the OpenAPI document, the git trigger (which takes a
//! per-app token), the forge webhooks (signed) and share links (the token
//! decides) needs a principal: a session or an API token. What each
//! may do is decided by the port methods the handlers call.

mod artifacts;
mod change_requests;
mod changes;
mod channels;
mod clusters;
mod hooks;
mod releases;
mod resources;
mod runs;
mod secrets;
mod sharing;
mod tokens;

use app::dto::{
    AuditEntry, AuditFilter, ChangeRequestSummary, ClusterState, ClusterSummary, ConfigIssue,
    ConfigStatus, EnvironmentState, EnvironmentSummary, PendingApproval, ReleaseState,
    ReleaseSummary, RunArtifact, RunAttempt, RunDetail, RunOutput, RunState, RunSummary,
    SettingSource, Settings, StepState, StepSummary, TestCaseFailure, TestReportSummary,
};
use app::port::{AdminPort, ChangeRequestsPort, ClustersPort, RunsPort, StackPort};
use axum::Json;
use axum::Router;
use axum::extract::{OriginalUri, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::auth::Principal;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody, ErrorDetail};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gantry API",
        description = "Environments, runs, change requests, releases, approvals, clusters and the audit log of a Gantry server."
    ),
    paths(
        list_environments,
        list_lanes,
        get_attention,
        list_runs,
        get_app,
        resources::page,
        resources::object,
        resources::pod_log,
        list_change_requests,
        change_requests::open,
        change_requests::get,
        change_requests::approve,
        change_requests::reject,
        change_requests::override_policy,
        change_requests::close,
        change_requests::feedback,
        change_requests::diff,
        change_requests::files,
        changes::feed,
        sharing::create,
        sharing::revoke,
        sharing::extend,
        sharing::open,
        sharing::feedback,
        releases::list,
        releases::get,
        releases::mark_stable,
        releases::rollback,
        releases::promote,
        releases::compare,
        releases::commit_releases,
        releases::delivery_metrics,
        artifacts::reject,
        list_pending_approvals,
        list_clusters,
        list_audit_log,
        get_settings,
        get_config,
        runs::get_run,
        runs::step_log,
        runs::run_events,
        runs::approve,
        runs::reject,
        runs::override_hold,
        runs::cancel,
        runs::rollout,
        runs::rerun,
        runs::diff,
        hooks::git_hook,
        hooks::forge_hook,
        channels::list,
        channels::put,
        channels::remove,
        channels::test,
        channels::deliveries,
        hooks::new_hook_token,
        secrets::put_secret,
        secrets::list_secrets,
        secrets::delete_secret,
        clusters::register,
        clusters::check,
        clusters::remove,
        crate::http::auth::me,
        tokens::create,
        tokens::list,
        tokens::revoke
    ),
    components(schemas(
        EnvironmentSummary,
        EnvironmentState,
        RunSummary,
        app::dto::RunStarted,
        RunState,
        ChangeRequestSummary,
        app::dto::ChangeRequestState,
        app::dto::ChangeRequestDetail,
        app::dto::NewChangeRequest,
        app::dto::ApprovalRecord,
        ReleaseSummary,
        ReleaseState,
        app::dto::ReleaseKind,
        app::dto::ReleaseFilter,
        app::dto::ChangelogCommit,
        app::dto::TargetOutcome,
        app::dto::DeploymentState,
        app::dto::PinInfo,
        app::dto::RollbackRequest,
        app::dto::RollbackAccepted,
        app::dto::PromoteRequest,
        app::dto::Promotion,
        app::dto::ReleaseComparison,
        app::dto::ChangedFile,
        app::dto::ChangeRequestFiles,
        app::dto::FileDiff,
        app::dto::CommitLanding,
        app::dto::CommitReleases,
        releases::StableRequest,
        PendingApproval,
        ClusterSummary,
        ClusterState,
        AuditEntry,
        Settings,
        SettingSource,
        ErrorBody,
        ErrorDetail,
        ConfigStatus,
        ConfigIssue,
        RunDetail,
        RunAttempt,
        RunArtifact,
        RunOutput,
        app::dto::RolloutView,
        app::dto::RingView,
        app::dto::ArtifactStatus,
        app::dto::Verification,
        app::dto::ArtifactRejection,
        app::dto::PromotionGate,
        app::dto::GateState,
        app::dto::RejectArtifact,
        app::dto::DeliveryMetrics,
        app::dto::DeliveryDay,
        app::dto::DeliveryQuery,
        StepSummary,
        StepState,
        TestReportSummary,
        TestCaseFailure,
        runs::Decision,
        runs::RolloutAction,
        crate::approvals::ApprovalOutcome,
        hooks::GitHook,
        hooks::DeliveryReceipt,
        channels::NewChannel,
        channels::ChannelView,
        crate::notify::ChannelSettings,
        crate::notify::Rule,
        crate::notify::Event,
        crate::db::notifications::DeliveryRow,
        secrets::SecretValue,
        secrets::SecretName,
        crate::clusters::Registration,
        crate::delivery::deploy::drift::ObjectDiff,
        app::dto::Me,
        app::dto::Grant,
        app::dto::Role,
        tokens::NewToken,
        tokens::CreatedToken,
        crate::auth::tokens::TokenInfo
    ))
)]
pub struct ApiDoc;

/// The `/api/v1` routes (mounted by the router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/me", get(crate::http::auth::me))
        .route("/environments", get(list_environments))
        .route("/lanes", get(list_lanes))
        .route("/attention", get(get_attention))
        .route("/runs", get(list_runs))
        .route("/apps/{app}", get(get_app))
        .route(
            "/change-requests",
            get(list_change_requests).post(change_requests::open),
        )
        .route("/change-requests/{id}", get(change_requests::get))
        .route(
            "/change-requests/{id}/approve",
            post(change_requests::approve),
        )
        .route(
            "/change-requests/{id}/reject",
            post(change_requests::reject),
        )
        .route(
            "/change-requests/{id}/override",
            post(change_requests::override_policy),
        )
        .route("/change-requests/{id}/close", post(change_requests::close))
        .route("/change-requests/{id}/diff", get(change_requests::diff))
        .route("/change-requests/{id}/files", get(change_requests::files))
        .route(
            "/change-requests/{id}/feedback",
            post(change_requests::feedback),
        )
        .route("/changes", get(changes::feed))
        .route("/change-requests/{id}/share", post(sharing::create))
        .route("/share-links/{id}", axum::routing::delete(sharing::revoke))
        .route("/share-links/{id}/extend", post(sharing::extend))
        .route("/share/{token}", get(sharing::open))
        .route("/share/{token}/feedback", post(sharing::feedback))
        .route("/releases", get(releases::list))
        .route("/releases/{id}", get(releases::get))
        .route("/releases/{id}/stable", post(releases::mark_stable))
        .route("/apps/{app}/rollback", post(releases::rollback))
        .route("/apps/{app}/promote", post(releases::promote))
        .route("/apps/{app}/compare", get(releases::compare))
        .route(
            "/apps/{app}/commits/{sha}/releases",
            get(releases::commit_releases),
        )
        .route("/artifacts/{id}/reject", post(artifacts::reject))
        .route("/metrics/delivery", get(releases::delivery_metrics))
        .route("/approvals", get(list_pending_approvals))
        .route("/clusters", get(list_clusters).post(clusters::register))
        .route("/clusters/{name}", axum::routing::delete(clusters::remove))
        .route("/clusters/{name}/check", post(clusters::check))
        .route("/audit", get(list_audit_log))
        .route("/settings", get(get_settings))
        .route("/config", get(get_config))
        .route("/runs/{id}", get(runs::get_run))
        .route("/runs/{id}/steps/{step}/log", get(runs::step_log))
        .route("/runs/{id}/events", get(runs::run_events))
        .route("/runs/{id}/approve", post(runs::approve))
        .route("/runs/{id}/reject", post(runs::reject))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/rollout", post(runs::rollout))
        .route("/runs/{id}/rerun", post(runs::rerun))
        .route("/runs/{id}/override", post(runs::override_hold))
        .route("/runs/{id}/diff", get(runs::diff))
        .route("/hooks/git", post(hooks::git_hook))
        .route("/hooks/{forge}", post(hooks::forge_hook))
        .route("/channels", get(channels::list))
        .route(
            "/channels/{name}",
            axum::routing::put(channels::put).delete(channels::remove),
        )
        .route("/channels/{name}/test", post(channels::test))
        .route("/channels/{name}/deliveries", get(channels::deliveries))
        .route("/apps/{app}/hook-token", post(hooks::new_hook_token))
        .route(
            "/apps/{app}/environments/{env}/resources",
            get(resources::page),
        )
        .route(
            "/apps/{app}/environments/{env}/resources/object",
            get(resources::object),
        )
        .route(
            "/apps/{app}/environments/{env}/pods/{pod}/log",
            get(resources::pod_log),
        )
        .route("/secrets", get(secrets::list_secrets))
        .route(
            "/secrets/{name}",
            axum::routing::put(secrets::put_secret).delete(secrets::delete_secret),
        )
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .fallback(not_found)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(format!("no API route at {}", uri.path()))
}

/// Environments of every app's stack (destroyed ones excluded).
#[utoipa::path(get, path = "/api/v1/environments", tag = "environments",
    responses((status = 200, body = [EnvironmentSummary]), (status = 500, body = ErrorBody)))]
async fn list_environments(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<EnvironmentSummary>>, ApiError> {
    Ok(Json(state.environments(&principal.caller()).await?))
}

/// A page of lanes: each app's previews, then its fixed environments in
/// stack order with the commits between them (`search`: part of an app's
/// name; `page`: from 1, at most 20 lanes each).
#[utoipa::path(get, path = "/api/v1/lanes", tag = "environments",
    params(app::dto::LaneQuery),
    responses((status = 200, body = app::dto::LanesPage), (status = 500, body = ErrorBody)))]
async fn list_lanes(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<app::dto::LaneQuery>,
) -> Result<Json<app::dto::LanesPage>, ApiError> {
    Ok(Json(state.lanes_page(&principal.caller(), query).await?))
}

/// What needs someone now: failed environments and runs, decisions
/// waiting for the caller, drift and pins.
#[utoipa::path(get, path = "/api/v1/attention", tag = "environments",
    responses((status = 200, body = app::dto::Attention), (status = 500, body = ErrorBody)))]
async fn get_attention(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<app::dto::Attention>, ApiError> {
    Ok(Json(state.attention(&principal.caller()).await?))
}

/// One app: its stack, open change requests and recent runs.
#[utoipa::path(get, path = "/api/v1/apps/{app}", tag = "environments",
    params(("app" = String, Path)),
    responses((status = 200, body = app::dto::AppOverview), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_app(
    State(state): State<AppState>,
    principal: Principal,
    axum::extract::Path(app): axum::extract::Path<String>,
) -> Result<Json<app::dto::AppOverview>, ApiError> {
    state
        .app_overview(&principal.caller(), app.clone())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("there is no app {app}")))
}

/// A page of runs, newest first (50 at most): filters are exact and
/// optional. The body is the page's runs; when older runs match, a
/// `Link: <…?before=N>; rel="next"` header gives the next page's address
/// (the body stays a list, as it always was).
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs",
    params(app::dto::RunQuery),
    responses(
        (status = 200, body = [RunSummary],
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when older runs match"))),
        (status = 400, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn list_runs(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<app::dto::RunQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let page = state.runs(&principal.caller(), query.clone()).await?;
    let mut headers = axum::http::HeaderMap::new();
    if let Some(before) = page.older {
        let next = app::dto::RunQuery {
            before: Some(before),
            ..query.cleaned()
        };
        let link = format!("</api/v1/runs?{}>; rel=\"next\"", next.query_string());
        if let Ok(value) = axum::http::HeaderValue::from_str(&link) {
            headers.insert(axum::http::header::LINK, value);
        }
    }
    Ok((headers, Json(page.runs)))
}

/// Change requests, open ones first.
#[utoipa::path(get, path = "/api/v1/change-requests", tag = "change requests",
    responses((status = 200, body = [ChangeRequestSummary]), (status = 500, body = ErrorBody)))]
async fn list_change_requests(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<ChangeRequestSummary>>, ApiError> {
    Ok(Json(state.change_requests(&principal.caller()).await?))
}

/// Runs waiting for approval, oldest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals",
    responses((status = 200, body = [PendingApproval]), (status = 500, body = ErrorBody)))]
async fn list_pending_approvals(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<PendingApproval>>, ApiError> {
    Ok(Json(state.pending_approvals(&principal.caller()).await?))
}

/// Registered clusters (never their credentials).
#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters",
    responses((status = 200, body = [ClusterSummary]), (status = 500, body = ErrorBody)))]
async fn list_clusters(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<ClusterSummary>>, ApiError> {
    Ok(Json(state.clusters(&principal.caller()).await?))
}

/// The audit log, newest first, filtered by person, action, target and time.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditFilter),
    responses((status = 200, body = [AuditEntry]), (status = 400, body = ErrorBody)))]
async fn list_audit_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    Ok(Json(state.audit_log(&principal.caller(), filter).await?))
}

/// The effective configuration and the layer that set each value.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings",
    responses((status = 200, body = Settings), (status = 500, body = ErrorBody)))]
async fn get_settings(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(state.settings(&principal.caller()).await?))
}

/// The pipeline repo: the last commit read, and every problem found in it.
#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    responses((status = 200, body = ConfigStatus), (status = 500, body = ErrorBody)))]
async fn get_config(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ConfigStatus>, ApiError> {
    Ok(Json(state.config_status(&principal.caller()).await?))
}
