//! Encrypted secrets. Only ciphertext is stored; `crate::secrets` holds the
//! key and does the cryptography.

use sqlx::{Any, Executor, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct SecretRow {
    pub name: String,
    pub app_id: Option<i64>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub key_id: String,
}

#[derive(Clone, Debug)]
pub struct NewSecret<'a> {
    pub name: &'a str,
    pub app_id: Option<i64>,
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
    pub key_id: &'a str,
    pub created_by: Option<&'a str>,
}

/// Creates or replaces the secret `name` (global, or of one app).
pub async fn put<'e, E>(exec: E, secret: &NewSecret<'_>, now: i64) -> Result<(), super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let updated = sqlx::query(
        "UPDATE secrets SET nonce = $3, ciphertext = $4, key_id = $5, updated_at = $6
         WHERE name = $1 AND COALESCE(app_id, 0) = COALESCE($2, 0)",
    )
    .bind(secret.name)
    .bind(secret.app_id)
    .bind(secret.nonce.to_vec())
    .bind(secret.ciphertext.to_vec())
    .bind(secret.key_id)
    .bind(now)
    .execute(exec)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO secrets (name, app_id, nonce, ciphertext, key_id, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(secret.name)
        .bind(secret.app_id)
        .bind(secret.nonce.to_vec())
        .bind(secret.ciphertext.to_vec())
        .bind(secret.key_id)
        .bind(secret.created_by)
        .bind(now)
        .execute(exec)
        .await?;
    }
    Ok(())
}

/// The secrets an app may read: its own and the global ones.
pub async fn for_app<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
) -> Result<Vec<SecretRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT name, app_id, nonce, ciphertext, key_id FROM secrets
         WHERE app_id IS NULL OR app_id = $1 ORDER BY name",
    )
    .bind(app_id)
    .fetch_all(exec)
    .await?)
}

/// Names and scopes, never values: `(name, app name or None)`.
pub async fn list_names<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<(String, Option<String>)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT s.name, a.name FROM secrets s LEFT JOIN apps a ON a.id = s.app_id ORDER BY s.name, a.name",
    )
    .fetch_all(exec)
    .await?)
}

pub async fn delete<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
    app_id: Option<i64>,
) -> Result<bool, super::QueryError> {
    let result = sqlx::query(
        "DELETE FROM secrets WHERE name = $1 AND COALESCE(app_id, 0) = COALESCE($2, 0)",
    )
    .bind(name)
    .bind(app_id)
    .execute(exec)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Every secret, sealed (key rotation): (id, name, nonce, ciphertext, key id).
pub async fn all_sealed<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<(i64, String, Vec<u8>, Vec<u8>, String)>, super::QueryError> {
    Ok(
        sqlx::query_as("SELECT id, name, nonce, ciphertext, key_id FROM secrets")
            .fetch_all(exec)
            .await?,
    )
}

/// Replaces one secret's sealed value (key rotation).
pub async fn reseal<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sealed: &super::Sealed,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE secrets SET nonce = $2, ciphertext = $3, key_id = $4 WHERE id = $1")
            .bind(id)
            .bind(sealed.nonce.clone())
            .bind(sealed.ciphertext.clone())
            .bind(&sealed.key_id)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}
