//! Secrets: set, list (names only) and delete. Values are never returned.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::db::{self, secrets::NewSecret};
use crate::http::error::{ApiError, ErrorBody};
use crate::state::AppState;

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

/// The shortest value accepted: shorter ones could not be masked in logs
/// without garbling them.
const MIN_LENGTH: usize = 4;

async fn app_id(state: &AppState, app: Option<&str>) -> Result<Option<i64>, ApiError> {
    match app {
        None => Ok(None),
        Some(name) => db::apps::find_active_by_name(state.db.pool(), name)
            .await?
            .map(|row| Some(row.id))
            .ok_or_else(|| ApiError::NotFound(format!("app {name} does not exist"))),
    }
}

/// `NAME` or `NAME (app shop)`, for the audit log.
fn scoped(name: &str, app: Option<&str>) -> String {
    match app {
        Some(app) => format!("secret {name} (app {app})"),
        None => format!("secret {name}"),
    }
}

/// Creates or replaces a secret.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path)), request_body = SecretValue,
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn put_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Json(body): Json<SecretValue>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(app::dto::Role::Admin, None)?;
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
        && !name.starts_with("GANTRY_");
    if !valid_name {
        return Err(ApiError::BadRequest(format!(
            "{name:?} is not a secret name: uppercase letters, digits and `_`, not starting with GANTRY_"
        )));
    }
    if body.value.chars().count() < MIN_LENGTH {
        return Err(ApiError::BadRequest(format!(
            "a secret value needs at least {MIN_LENGTH} characters, so logs can mask it"
        )));
    }
    let app_id = app_id(&state, body.app.as_deref()).await?;
    let sealed = state
        .vault
        .seal(&name, &body.value)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    db::secrets::put(
        state.db.pool(),
        &NewSecret {
            name: &name,
            app_id,
            nonce: &sealed.nonce,
            ciphertext: &sealed.ciphertext,
            key_id: &sealed.key_id,
            created_by: None,
        },
        db::now_millis(),
    )
    .await?;
    // The name and scope, never the value.
    let target = scoped(&name, body.app.as_deref());
    crate::audit::record(&state.db, &principal.caller(), "secret.set", &target, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Names and scopes of every secret.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", responses((status = 200, body = [SecretName])))]
pub async fn list_secrets(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<SecretName>>, ApiError> {
    principal.require(app::dto::Role::Admin, None)?;
    let names = db::secrets::list_names(state.db.pool()).await?;
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
    principal.require(app::dto::Role::Admin, None)?;
    let app_id = app_id(&state, scope.app.as_deref()).await?;
    if db::secrets::delete(state.db.pool(), &name, app_id).await? {
        let target = scoped(&name, scope.app.as_deref());
        crate::audit::record(
            &state.db,
            &principal.caller(),
            "secret.delete",
            &target,
            None,
        )
        .await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no secret {name}")))
    }
}
