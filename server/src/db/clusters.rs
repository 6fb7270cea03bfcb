//! Registered clusters. Credentials stay in their encrypted columns and are
//! never selected here.

use app::dto::{ClusterState, ClusterSummary};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

#[derive(FromRow)]
struct Row {
    name: String,
    server_url: Option<String>,
    state: String,
    server_version: Option<String>,
    last_checked_at: Option<i64>,
    last_error: Option<String>,
    missing_permissions: Option<String>,
}

pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<ClusterSummary>, super::QueryError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, server_url, state, server_version, last_checked_at, last_error, missing_permissions
         FROM clusters ORDER BY name",
    )
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(ClusterSummary {
                name: row.name,
                server_url: row.server_url,
                state: decode_state(&row.state, ClusterState::parse)?,
                server_version: row.server_version,
                last_checked_at: row.last_checked_at,
                last_error: row.last_error,
                missing_permissions: row
                    .missing_permissions
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

pub struct NewCluster<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub context: Option<&'a str>,
    pub server_url: Option<&'a str>,
    pub sealed: &'a super::Sealed,
}

pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    cluster: &NewCluster<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO clusters (name, kind, context, server_url, credentials_nonce, credentials, key_id, state,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(cluster.name)
    .bind(cluster.kind)
    .bind(cluster.context)
    .bind(cluster.server_url)
    .bind(cluster.sealed.nonce.clone())
    .bind(cluster.sealed.ciphertext.clone())
    .bind(&cluster.sealed.key_id)
    .bind(ClusterState::Unknown.as_str())
    .bind(now)
    .fetch_one(exec)
    .await?)
}

/// The sealed credentials: (nonce, ciphertext, key id).
pub async fn sealed<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
) -> Result<Option<(Vec<u8>, Vec<u8>, String)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT credentials_nonce, credentials, key_id FROM clusters WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(exec)
    .await?)
}

pub async fn reseal<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
    sealed: &super::Sealed,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE clusters SET credentials_nonce = $2, credentials = $3, key_id = $4 WHERE name = $1",
    )
    .bind(name)
    .bind(sealed.nonce.clone())
    .bind(sealed.ciphertext.clone())
    .bind(&sealed.key_id)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// What a check found out about a cluster.
pub struct Check<'a> {
    pub state: ClusterState,
    pub version: Option<&'a str>,
    pub error: Option<&'a str>,
    /// `None` when the check could not ask.
    pub missing_permissions: Option<&'a [String]>,
}

pub async fn record_check<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
    check: &Check<'_>,
    now: i64,
) -> Result<(), super::QueryError> {
    let missing = check
        .missing_permissions
        .map(|missing| serde_json::to_string(missing).unwrap_or_else(|_| "[]".into()));
    Ok(sqlx::query(
        "UPDATE clusters SET state = $2, server_version = COALESCE($3, server_version), last_error = $4,
             last_checked_at = $5, updated_at = $5, missing_permissions = $6
         WHERE name = $1",
    )
    .bind(name)
    .bind(check.state.as_str())
    .bind(check.version)
    .bind(check.error)
    .bind(now)
    .bind(missing)
    .execute(exec)
    .await
    .map(|_| ())?)
}

pub async fn delete<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
) -> Result<bool, super::QueryError> {
    let result = sqlx::query("DELETE FROM clusters WHERE name = $1")
        .bind(name)
        .execute(exec)
        .await?;
    Ok(result.rows_affected() > 0)
}

/// Every cluster's sealed credentials (key rotation): (name, nonce,
/// ciphertext, key id).
pub async fn all_sealed<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<(String, Vec<u8>, Vec<u8>, String)>, super::QueryError> {
    Ok(
        sqlx::query_as("SELECT name, credentials_nonce, credentials, key_id FROM clusters")
            .fetch_all(exec)
            .await?,
    )
}

/// Whether a cluster was registered after `at` (ms).
/// Whether a cluster was registered after the one with id `seen` (ids
/// only grow; replicas' clocks need not agree).
pub async fn registered_after<'e>(
    exec: impl Executor<'e, Database = Any>,
    seen: i64,
) -> Result<bool, super::QueryError> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clusters WHERE id > $1")
        .bind(seen)
        .fetch_one(exec)
        .await?;
    Ok(count > 0)
}

/// The highest cluster id registered (0 when none is).
pub async fn highest_id<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<i64, super::QueryError> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM clusters")
            .fetch_one(exec)
            .await?,
    )
}
