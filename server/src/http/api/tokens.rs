//! API tokens over REST: anyone signed in creates tokens for themselves, up
//! to their own role; people list and revoke their own, and only global
//! admins anyone's (an admin of one app manages that app, not people).
//! The token is shown once, in the creation answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::auth::tokens::{self, TokenInfo, TokenRequest};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    /// What the token is for, e.g. `ci` or `laptop`.
    pub name: String,
    /// admin, developer, tester or viewer (at most the caller's own).
    pub role: String,
    /// Limit the token to one app.
    #[serde(default)]
    pub app: Option<String>,
    /// How long it lives, e.g. `30d` (default 90d, at most 400d).
    #[serde(default)]
    pub expires: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    /// The secret: shown only here, never again.
    pub token: String,
    pub expires_at: i64,
}

/// Creates a token acting as the caller.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(new): Json<NewToken>,
) -> Result<impl IntoResponse, ApiError> {
    let request = TokenRequest {
        name: &new.name,
        role: &new.role,
        app: new.app.as_deref(),
        expires: new.expires.as_deref(),
    };
    let created = tokens::create(&state.db, &principal.caller(), &request).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: created.id,
            token: created.token,
            expires_at: created.expires_at,
        }),
    ))
}

/// The caller's tokens (an admin's: everyone's). Never the secrets.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = [TokenInfo])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(tokens::list(&state.db, &principal.caller()).await?))
}

/// Revokes a token (its owner or an admin).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    tokens::revoke(&state.db, &principal.caller(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
