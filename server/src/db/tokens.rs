//! API tokens: only their SHA-256 is stored.

use sqlx::{Any, Executor, FromRow};

/// A token as listed (never the secret).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema, FromRow)]
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

/// What a presented token's hash finds.
#[derive(Clone, Debug, FromRow)]
pub struct Presented {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub role: String,
    pub app_name: Option<String>,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

pub async fn by_hash<'e>(
    exec: impl Executor<'e, Database = Any>,
    token_hash: &str,
) -> Result<Option<Presented>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.user_id, u.display_name AS name, t.role, a.name AS app_name, t.expires_at,
                t.revoked_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN apps a ON a.id = t.app_id
         WHERE t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(exec)
    .await?)
}

pub async fn touch<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// A token to store.
#[derive(Clone, Debug)]
pub struct NewToken<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub role: &'a str,
    pub app_id: Option<i64>,
    pub expires_at: i64,
}

pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    token: &NewToken<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_hash, role, app_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(token.user_id)
    .bind(token.name)
    .bind(token.token_hash)
    .bind(token.role)
    .bind(token.app_id)
    .bind(now)
    .bind(token.expires_at)
    .fetch_one(exec)
    .await?)
}

/// Every token (`owner: None`) or one user's, newest first.
pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
    owner: Option<i64>,
) -> Result<Vec<TokenInfo>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.name, u.display_name AS \"user\", t.role, a.name AS app, t.created_at,
                t.expires_at, t.revoked_at, t.last_used_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN apps a ON a.id = t.app_id
         WHERE $1 IS NULL OR t.user_id = $1
         ORDER BY t.id DESC",
    )
    .bind(owner)
    .fetch_all(exec)
    .await?)
}

pub async fn owner<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<i64>, super::QueryError> {
    Ok(
        sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(exec)
            .await?,
    )
}

/// Revokes a live token; false when it was unknown or revoked already.
pub async fn revoke<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    now: i64,
) -> Result<bool, super::QueryError> {
    let result =
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(exec)
            .await?;
    Ok(result.rows_affected() == 1)
}
