//! Secrets over REST: set, list (names only) and delete, each a call to
//! `secrets_admin`. Values are never returned.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::principal::Admin;
use crate::secrets_admin as admin;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SecretValue {
    pub value: String,
    /// Limit the secret to one app (default: every app may use it).
    pub app: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SecretScope {
    pub app: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretName {
    pub name: String,
    pub app: Option<String>,
}

/// Creates or replaces a secret.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path)), request_body = SecretValue,
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn put_secret(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(name): Path<String>,
    Json(body): Json<SecretValue>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = principal.caller();
    admin::put(
        &state.db,
        &state.vault,
        &caller,
        &name,
        &body.value,
        body.app.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Names and scopes of every secret.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", responses((status = 200, body = [SecretName])))]
pub async fn list_secrets(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<SecretName>>, ApiError> {
    let names = admin::names(&state.db, &principal.caller()).await?;
    Ok(Json(
        names
            .into_iter()
            .map(|(name, app)| SecretName { name, app })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path), SecretScope),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Query(scope): Query<SecretScope>,
) -> Result<impl IntoResponse, ApiError> {
    admin::delete(&state.db, &principal.caller(), &name, scope.app.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
