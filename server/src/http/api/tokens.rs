//! API tokens over REST: anyone signed in creates tokens for themselves, up
//! to their own role; people list and revoke their own, and only global
//! admins anyone's (an admin of one app manages that app, not people).
//! The token is shown once, in the creation answer.

use app::dto::Role;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::auth::tokens::{self, TokenInfo};
use crate::config::duration::HumanDuration;
use crate::http::error::{ApiError, ErrorBody};
use crate::state::AppState;

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

const MAX_LIFETIME_DAYS: u64 = 400;

/// Only an admin of every app manages other people's tokens.
fn is_admin(principal: &Principal) -> bool {
    principal.can(Role::Admin, None)
}

/// Creates a token acting as the caller.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(new): Json<NewToken>,
) -> Result<impl IntoResponse, ApiError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 60 {
        return Err(ApiError::BadRequest(
            "name: say what the token is for, in at most 60 characters".into(),
        ));
    }
    let role = Role::parse(&new.role).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "role: unknown role {:?}; expected admin, developer, tester or viewer",
            new.role
        ))
    })?;
    // Nobody mints more power than they hold.
    principal.require(role, new.app.as_deref())?;
    let lifetime = HumanDuration::parse(new.expires.as_deref().unwrap_or("90d"))
        .map_err(|e| ApiError::BadRequest(format!("expires: {e}")))?;
    if lifetime.0.as_secs() == 0 || lifetime.0.as_secs() > MAX_LIFETIME_DAYS * 86_400 {
        return Err(ApiError::BadRequest(format!(
            "expires: a token lives between 1s and {MAX_LIFETIME_DAYS}d"
        )));
    }
    let lifetime_ms = i64::try_from(lifetime.0.as_millis()).unwrap_or(i64::MAX);
    let (id, token) = tokens::create(
        &state.db,
        principal.user_id,
        name,
        role,
        new.app.as_deref(),
        lifetime_ms,
    )
    .await?;
    let target = format!("token {id} ({name})");
    let caller = principal.caller();
    crate::dashboard::audit(&state, &caller, "token.create", &target, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id,
            token,
            expires_at: crate::db::now_millis() + lifetime_ms,
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
    let owner = (!is_admin(&principal)).then_some(principal.user_id);
    Ok(Json(tokens::list(&state.db, owner).await?))
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
    let missing = || ApiError::NotFound(format!("no active token {id}"));
    let owner = tokens::owner(&state.db, id).await?.ok_or_else(missing)?;
    if owner != principal.user_id && !is_admin(&principal) {
        // Someone else's token: as if it did not exist.
        return Err(missing());
    }
    if !tokens::revoke(&state.db, id).await? {
        return Err(missing());
    }
    let caller = principal.caller();
    crate::dashboard::audit(
        &state,
        &caller,
        "token.revoke",
        &format!("token {id}"),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
