//! Change requests over REST: open, read, approve, reject, override, close.
//! Each handler asks the dashboard port, so the API and the UI share the
//! rules.

use app::dto::{
    ChangeRequestDetail, ChangeRequestSummary, NewChangeRequest, ObjectDiff, Review, ReviewAction,
};
use app::port::ChangeRequestsPort;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::runs::Decision;
use crate::auth::Principal;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::principal::Admin;

/// Opens a change request from a branch into an environment branch
/// (default: the staging branch; from the staging branch: production).
#[utoipa::path(post, path = "/api/v1/change-requests", tag = "change requests",
    request_body = NewChangeRequest,
    responses((status = 201, body = ChangeRequestSummary), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn open(
    State(state): State<AppState>,
    principal: Principal,
    Json(request): Json<NewChangeRequest>,
) -> Result<(StatusCode, Json<ChangeRequestSummary>), ApiError> {
    let summary = state
        .open_change_request(&principal.caller(), request)
        .await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

/// One change request: preview, tests, policy and decisions.
#[utoipa::path(get, path = "/api/v1/change-requests/{id}", tag = "change requests",
    params(("id" = i64, Path)),
    responses((status = 200, body = ChangeRequestDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<ChangeRequestDetail>, ApiError> {
    state
        .change_request(&principal.caller(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("change request {id} does not exist")))
}

/// What an open request changes, file by file, with the unified diff of
/// each (the lines for developers and up; others get names and counts).
#[utoipa::path(get, path = "/api/v1/change-requests/{id}/files", tag = "change requests",
    params(("id" = i64, Path)),
    responses((status = 200, body = app::dto::ChangeRequestFiles), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn files(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<app::dto::ChangeRequestFiles>, ApiError> {
    Ok(Json(
        state.change_request_files(&principal.caller(), id).await?,
    ))
}

/// Admins: what merging would change on the target environment's clusters.
#[utoipa::path(get, path = "/api/v1/change-requests/{id}/diff", tag = "change requests",
    params(("id" = i64, Path)),
    responses((status = 200, body = [ObjectDiff]), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<Vec<ObjectDiff>>, ApiError> {
    state
        .change_request_diff(&principal.caller(), id)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no diff for change request {id}: it does not exist or its target was never deployed"
            ))
        })
}

async fn review(
    state: &AppState,
    principal: &Principal,
    id: i64,
    action: ReviewAction,
    comment: Option<String>,
) -> Result<Json<ChangeRequestSummary>, ApiError> {
    Ok(Json(
        state
            .review_change_request(&principal.caller(), id, Review { action, comment })
            .await?,
    ))
}

/// Approves the request's current head; Gantry merges once the policy is met.
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/approve", tag = "change requests",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = ChangeRequestSummary), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Json<ChangeRequestSummary>, ApiError> {
    review(
        &state,
        &principal,
        id,
        ReviewAction::Approve,
        decision.comment,
    )
    .await
}

/// Rejects the request with a comment.
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/reject", tag = "change requests",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = ChangeRequestSummary), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Json<ChangeRequestSummary>, ApiError> {
    review(
        &state,
        &principal,
        id,
        ReviewAction::Reject,
        decision.comment,
    )
    .await
}

/// Admins: merge regardless of approvals, author rule and freeze; the
/// comment is the mandatory reason.
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/override", tag = "change requests",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = ChangeRequestSummary), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn override_policy(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Json<ChangeRequestSummary>, ApiError> {
    review(
        &state,
        &principal,
        id,
        ReviewAction::Override,
        decision.comment,
    )
    .await
}

/// Testers and up leave feedback on the preview (not an approval).
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/feedback", tag = "change requests",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = ChangeRequestSummary), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn feedback(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Json<ChangeRequestSummary>, ApiError> {
    review(
        &state,
        &principal,
        id,
        ReviewAction::Feedback,
        decision.comment,
    )
    .await
}

/// The author (or an admin) withdraws the request.
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/close", tag = "change requests",
    params(("id" = i64, Path)),
    responses((status = 200, body = ChangeRequestSummary), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn close(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<ChangeRequestSummary>, ApiError> {
    review(&state, &principal, id, ReviewAction::Close, None).await
}
