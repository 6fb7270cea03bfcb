//! The git trigger endpoint: a git server hook or CI says "this app's repo
//! changed", and Gantry fetches it at once instead of at the next poll.
//! Authenticated by a per-app token (stored hashed). And the forges'
//! webhooks, authenticated by their signatures (see `crate::forge`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use crate::auth::{Principal, constant_time_eq, sha256_hex};
use crate::db;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};

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
    let app = state.app.clone();
    tokio::spawn(async move {
        if let Err(error) = crate::jobs::scan::scan_app(&app, &app_row, "hook").await {
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
    let token = crate::auth::tokens::issue_hook_token(&state.db, &principal.caller(), &app).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "app": app, "token": token })),
    ))
}

/// Where a forge delivery went.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryReceipt {
    pub forge: String,
    pub delivery: String,
    pub event: String,
    /// The same delivery id was stored before: acknowledged, not stored again.
    pub duplicate: bool,
}

/// A forge's webhook (`github`, `gitlab` or `gitea`): verified with the
/// admin-registered secret (`GITHUB_WEBHOOK_SECRET`, `GITLAB_WEBHOOK_TOKEN`,
/// `GITEA_WEBHOOK_SECRET`), stored once per delivery id, processed in the
/// background. 202 when stored, 200 for a repeated delivery.
#[utoipa::path(post, path = "/api/v1/hooks/{forge}", tag = "hooks",
    params(("forge" = String, Path, description = "github, gitlab or gitea")),
    request_body(content = String, description = "the forge's JSON payload, as sent"),
    responses((status = 202, body = DeliveryReceipt), (status = 200, body = DeliveryReceipt),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn forge_hook(
    State(state): State<AppState>,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    use crate::forge::{Forge, KIND_PREFIX, webhook};
    let forge = Forge::parse(&forge).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no forge {forge:?}; expected github, gitlab or gitea"
        ))
    })?;
    let secret = match state
        .secrets()
        .resolve(0, &[forge.secret_name().to_string()])
        .await
    {
        Ok(values) => values.into_iter().next().map(|(_, value)| value),
        Err(crate::secrets::SecretError::Missing { .. }) => None,
        Err(crate::secrets::SecretError::Db(error)) => return Err(ApiError::of(&error)),
        Err(error) => return Err(ApiError::Internal(error.to_string())),
    };
    let secret = secret.ok_or_else(|| {
        ApiError::Unauthorized(
            webhook::WebhookError::NoSecret {
                forge: forge.as_str(),
                name: forge.secret_name().to_string(),
            }
            .to_string(),
        )
    })?;
    webhook::verify(forge, &headers, &body, &secret)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let delivery =
        webhook::delivery(forge, &headers).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let text = std::str::from_utf8(&body)
        .ok()
        .filter(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
        .ok_or_else(|| ApiError::BadRequest("the payload is not JSON".into()))?;
    // The same signed body under a new delivery id is a replay, not news.
    let stored = db::inbox::insert_delivery(
        state.db.pool(),
        forge.as_str(),
        &delivery.id,
        &crate::auth::sha256_hex(text),
        &format!("{KIND_PREFIX}{}", delivery.event),
        text,
        db::now_millis(),
    )
    .await?;
    if stored.is_some() {
        state.flow.plan_wake.notify_one();
    }
    let receipt = DeliveryReceipt {
        forge: forge.as_str().to_string(),
        delivery: delivery.id,
        event: delivery.event,
        duplicate: stored.is_none(),
    };
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(receipt)))
}
