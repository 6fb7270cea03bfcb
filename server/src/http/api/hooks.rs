//! The git trigger endpoint: a git server hook or CI says "this app's repo
//! changed", and Gantry fetches it at once instead of at the next poll.
//! Authenticated by a per-app token (stored hashed).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use crate::auth::{Principal, constant_time_eq, random_token, sha256_hex};
use crate::db;
use crate::http::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct GitHook {
    /// The app whose repo changed.
    pub app: String,
}

/// Fetch an app's repo now. `Authorization: Bearer <app hook token>`.
#[utoipa::path(post, path = "/api/v1/hooks/git", tag = "hooks", request_body = GitHook,
    responses((status = 202, description = "fetch started"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn git_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(hook): Json<GitHook>,
) -> Result<impl IntoResponse, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "send the app's hook token as `Authorization: Bearer <token>`".into(),
            )
        })?;
    let app_row = db::apps::find_active_by_name(state.db.pool(), &hook.app).await?;
    let expected = match &app_row {
        Some(app_row) => db::apps::hook_token_hash(state.db.pool(), app_row.id).await?,
        None => None,
    };
    // Unknown app and wrong token answer alike: no probing for app names.
    let (Some(app_row), Some(expected)) = (app_row, expected) else {
        return Err(ApiError::Unauthorized("unknown app or wrong token".into()));
    };
    if !constant_time_eq(&sha256_hex(token), &expected) {
        return Err(ApiError::Unauthorized("unknown app or wrong token".into()));
    }
    let app = state.0.clone();
    tokio::spawn(async move {
        if let Err(error) = crate::flow::watch::scan_app(&app, &app_row, "hook").await {
            tracing::warn!(app = %app_row.name, %error, "triggered fetch failed");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "fetching": hook.app })),
    ))
}

/// Issues a new hook token for an app (the old one stops working). The
/// token is shown once.
#[utoipa::path(post, path = "/api/v1/apps/{app}/hook-token", tag = "hooks",
    params(("app" = String, Path)),
    responses((status = 201, description = "{\"token\": \"...\"}"), (status = 404, body = ErrorBody)))]
pub async fn new_hook_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(app): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(app::dto::Role::Admin, Some(&app))?;
    let app_row = db::apps::find_active_by_name(state.db.pool(), &app)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("app {app} does not exist")))?;
    let token = issue_token(&state, app_row.id).await?;
    let target = format!("{app} git trigger token");
    crate::dashboard::audit(
        &state,
        &principal.caller(),
        "hook_token.issue",
        &target,
        None,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "app": app, "token": token })),
    ))
}

/// Creates and stores (hashed) a fresh token for the app.
pub async fn issue_token(state: &crate::state::App, app_id: i64) -> Result<String, ApiError> {
    let token = random_token("gth_")?;
    db::apps::set_hook_token_hash(state.db.pool(), app_id, &sha256_hex(&token)).await?;
    Ok(token)
}
