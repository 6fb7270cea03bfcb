//! Preview share links over REST: make one for a change request, revoke
//! it, and — with the link's token — read the tester page and leave
//! feedback (signed in, or without an account where the admin allows it).

use app::dto::{NewFeedback, ShareLink, SharedPreview, TesterFeedback};
use app::port::SharingPort;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::Principal;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::principal::Visitor;

/// Developers: a signed link to the request's tester page, expiring after
/// `auth.share_ttl`.
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/share", tag = "change requests",
    params(("id" = i64, Path)),
    responses((status = 201, body = ShareLink), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<ShareLink>), ApiError> {
    let link = state.share_change_request(&principal.caller(), id).await?;
    Ok((StatusCode::CREATED, Json(link)))
}

/// Developers: ends a share link now.
#[utoipa::path(delete, path = "/api/v1/share-links/{id}", tag = "change requests",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.revoke_share_link(&principal.caller(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Developers: gives a live share link another full lifetime from now; its
/// address stays the same.
#[utoipa::path(post, path = "/api/v1/share-links/{id}/extend", tag = "change requests",
    params(("id" = i64, Path)),
    responses((status = 200, body = ShareLink), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn extend(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<ShareLink>, ApiError> {
    Ok(Json(
        state.extend_share_link(&principal.caller(), id).await?,
    ))
}

/// The tester page's facts: commits, tests, preview, feedback.
#[utoipa::path(get, path = "/api/v1/share/{token}", tag = "change requests",
    params(("token" = String, Path)),
    responses((status = 200, body = SharedPreview), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn open(
    State(state): State<AppState>,
    Visitor(visitor): Visitor,
    Path(token): Path<String>,
) -> Result<Json<SharedPreview>, ApiError> {
    let caller = visitor.map(|p| p.caller());
    Ok(Json(state.shared_preview(caller.as_ref(), token).await?))
}

/// A tester's verdict (works, broken, note) with a comment; recorded on the
/// change request and shown in its forge comment.
#[utoipa::path(post, path = "/api/v1/share/{token}/feedback", tag = "change requests",
    params(("token" = String, Path)), request_body = NewFeedback,
    responses((status = 201, body = TesterFeedback), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody)))]
pub async fn feedback(
    State(state): State<AppState>,
    Visitor(visitor): Visitor,
    Path(token): Path<String>,
    Json(feedback): Json<NewFeedback>,
) -> Result<(StatusCode, Json<TesterFeedback>), ApiError> {
    let caller = visitor.map(|p| p.caller());
    let recorded = state
        .leave_shared_feedback(caller.as_ref(), token, feedback)
        .await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}
