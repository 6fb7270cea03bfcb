//! API tokens for the CLI and automation: shown once, stored as a SHA-256
//! hash, scoped to a role (and optionally an app), expiring, revocable.

use app::dto::{Grant, Role};

use super::{Principal, Via, random_token, sha256_hex};
use crate::db::now_millis;
use crate::http::error::ApiError;
use crate::state::App;

/// A token as listed (never the secret).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub user: String,
    pub role: String,
    pub app: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Presented {
    id: i64,
    user_id: i64,
    name: String,
    role: String,
    app_name: Option<String>,
    expires_at: i64,
    revoked_at: Option<i64>,
}

pub async fn verify(app: &App, token: &str) -> Result<Principal, ApiError> {
    let row: Option<Presented> = sqlx::query_as(
        "SELECT t.id, t.user_id, u.display_name AS name, t.role, a.name AS app_name, t.expires_at,
                t.revoked_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN apps a ON a.id = t.app_id
         WHERE t.token_hash = $1",
    )
    .bind(sha256_hex(token))
    .fetch_optional(app.db.pool())
    .await?;
    let refused = || ApiError::Unauthorized("the API token is unknown, expired or revoked".into());
    let Presented {
        id,
        user_id,
        name,
        role,
        app_name,
        expires_at,
        revoked_at,
    } = row.ok_or_else(refused)?;
    if revoked_at.is_some() || expires_at <= now_millis() {
        return Err(refused());
    }
    let role = Role::parse(&role).ok_or_else(refused)?;
    let _ = sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now_millis())
        .execute(app.db.pool())
        .await;
    Ok(Principal {
        user_id,
        name,
        grants: vec![Grant {
            role,
            app: app_name,
        }],
        auth_time: None,
        via: Via::Token { token_id: id },
        source_ip: None,
    })
}

/// Creates a token for `user_id`; returns (id, the token — shown once).
pub async fn create(
    app: &App,
    user_id: i64,
    name: &str,
    role: Role,
    app_name: Option<&str>,
    lifetime_ms: i64,
) -> Result<(i64, String), ApiError> {
    let app_id: Option<i64> = match app_name {
        Some(app_name) => Some(
            sqlx::query_scalar("SELECT id FROM apps WHERE name = $1 AND removed_at IS NULL")
                .bind(app_name)
                .fetch_optional(app.db.pool())
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("app {app_name} does not exist")))?,
        ),
        None => None,
    };
    let token = random_token("gat_")?;
    let now = now_millis();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_hash, role, app_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(user_id)
    .bind(name)
    .bind(sha256_hex(&token))
    .bind(role.as_str())
    .bind(app_id)
    .bind(now)
    .bind(now + lifetime_ms)
    .fetch_one(app.db.pool())
    .await?;
    Ok((id, token))
}

/// Every token (`owner: None`) or one user's, newest first.
pub async fn list(app: &App, owner: Option<i64>) -> Result<Vec<TokenInfo>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.name, u.display_name AS \"user\", t.role, a.name AS app, t.created_at,
                t.expires_at, t.revoked_at, t.last_used_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN apps a ON a.id = t.app_id
         WHERE $1 IS NULL OR t.user_id = $1
         ORDER BY t.id DESC",
    )
    .bind(owner)
    .fetch_all(app.db.pool())
    .await?)
}

/// The user a token belongs to.
pub async fn owner(app: &App, id: i64) -> Result<Option<i64>, ApiError> {
    Ok(
        sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(app.db.pool())
            .await?,
    )
}

pub async fn revoke(app: &App, id: i64) -> Result<bool, ApiError> {
    let result =
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now_millis())
            .execute(app.db.pool())
            .await?;
    Ok(result.rows_affected() == 1)
}
