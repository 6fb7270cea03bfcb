//! The release ledger over REST: the timeline, one release, rollback,
//! promotion, marking stable, and tracing commits. Thin: each handler asks
//! the dashboard port.

use app::dto::{
    CommitReleases, DeliveryMetrics, DeliveryQuery, PromoteRequest, Promotion, ReleaseComparison,
    ReleaseFilter, ReleaseSummary, RollbackAccepted, RollbackRequest,
};
use app::port::ReleasesPort;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::Principal;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::principal::Admin;

/// The ledger, newest first: every deployment of staging and production,
/// filtered by app and environment, paged with `before`.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", params(ReleaseFilter),
    responses((status = 200, body = [ReleaseSummary]), (status = 500, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(filter): Query<ReleaseFilter>,
) -> Result<Json<Vec<ReleaseSummary>>, ApiError> {
    Ok(Json(state.releases(&principal.caller(), filter).await?))
}

/// One release: changelog, approvals, targets and lineage.
#[utoipa::path(get, path = "/api/v1/releases/{id}", tag = "releases",
    params(("id" = i64, Path)),
    responses((status = 200, body = ReleaseSummary), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<ReleaseSummary>, ApiError> {
    state
        .release(&principal.caller(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("release {id} does not exist")))
}

/// Why an admin marks a release stable early (kept in the audit log).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct StableRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Admins: a live release is stable now, before its soak ends.
#[utoipa::path(post, path = "/api/v1/releases/{id}/stable", tag = "releases",
    params(("id" = i64, Path)), request_body = StableRequest,
    responses((status = 200, body = ReleaseSummary), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn mark_stable(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(id): Path<i64>,
    Json(request): Json<StableRequest>,
) -> Result<Json<ReleaseSummary>, ApiError> {
    Ok(Json(
        state
            .mark_release_stable(&principal.caller(), id, request.reason)
            .await?,
    ))
}

/// Admins: re-apply the stored manifests of the last stable release (or
/// `to`) on every target, and pin the environment. Answers once the
/// rollback run is queued; follow it at `/api/v1/runs/{run_id}`.
#[utoipa::path(post, path = "/api/v1/apps/{app}/rollback", tag = "releases",
    params(("app" = String, Path)), request_body = RollbackRequest,
    responses((status = 202, body = RollbackAccepted), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(app): Path<String>,
    Json(request): Json<RollbackRequest>,
) -> Result<(StatusCode, Json<RollbackAccepted>), ApiError> {
    let accepted = state.rollback(&principal.caller(), app, request).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Admins: unpin an environment and send its branch head through the flow.
#[utoipa::path(post, path = "/api/v1/apps/{app}/promote", tag = "releases",
    params(("app" = String, Path)), request_body = PromoteRequest,
    responses((status = 200, body = Promotion), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn promote(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(app): Path<String>,
    Json(request): Json<PromoteRequest>,
) -> Result<Json<Promotion>, ApiError> {
    Ok(Json(
        state.promote(&principal.caller(), app, request).await?,
    ))
}

/// The two releases to compare.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

/// What lies between two releases: commits, authors, changed files.
#[utoipa::path(get, path = "/api/v1/apps/{app}/compare", tag = "releases",
    params(("app" = String, Path), Range),
    responses((status = 200, body = ReleaseComparison), (status = 404, body = ErrorBody)))]
pub async fn compare(
    State(state): State<AppState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<ReleaseComparison>, ApiError> {
    Ok(Json(
        state
            .compare_releases(&principal.caller(), app, range.from, range.to)
            .await?,
    ))
}

/// Which deployment first carried a commit to each environment.
#[utoipa::path(get, path = "/api/v1/apps/{app}/commits/{sha}/releases", tag = "releases",
    params(("app" = String, Path), ("sha" = String, Path)),
    responses((status = 200, body = CommitReleases), (status = 404, body = ErrorBody)))]
pub async fn commit_releases(
    State(state): State<AppState>,
    principal: Principal,
    Path((app, sha)): Path<(String, String)>,
) -> Result<Json<CommitReleases>, ApiError> {
    Ok(Json(
        state.commit_releases(&principal.caller(), app, sha).await?,
    ))
}

/// Delivery metrics from the ledger, per app the caller may see, following
/// dora.dev's definitions: deployment frequency, change lead time, change
/// fail rate, failed-deployment recovery time and deployment rework rate.
#[utoipa::path(get, path = "/api/v1/metrics/delivery", tag = "releases", params(DeliveryQuery),
    responses((status = 200, body = [DeliveryMetrics]), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delivery_metrics(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<Vec<DeliveryMetrics>>, ApiError> {
    Ok(Json(
        state.delivery_metrics(&principal.caller(), query).await?,
    ))
}
