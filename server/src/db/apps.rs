//! Applications, as reconciled from the pipeline repo.

use sqlx::{Any, Executor, FromRow};

/// An app row with its validated configuration (JSON of `AppConfig`).
#[derive(Clone, Debug, FromRow)]
pub struct AppRow {
    pub id: i64,
    pub name: String,
    pub source_url: String,
    pub config: String,
    pub pipeline_sha: String,
}

/// What the reconciler records for one `apps/<name>/` folder.
#[derive(Clone, Debug)]
pub struct NewApp<'a> {
    pub name: &'a str,
    pub source_url: &'a str,
    pub config: &'a str,
    pub pipeline_sha: &'a str,
}

/// Inserts an application and returns its id.
pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    app: &NewApp<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO apps (name, source_url, config, pipeline_sha, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(app.name)
    .bind(app.source_url)
    .bind(app.config)
    .bind(app.pipeline_sha)
    .bind(now)
    .fetch_one(exec)
    .await?)
}

/// Inserts or updates (and un-retires) the app of that name.
pub async fn upsert<'e>(
    exec: impl Executor<'e, Database = Any>,
    app: &NewApp<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO apps (name, source_url, config, pipeline_sha, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (name) DO UPDATE SET source_url = $2, config = $3, pipeline_sha = $4,
             updated_at = $5, removed_at = NULL
         RETURNING id",
    )
    .bind(app.name)
    .bind(app.source_url)
    .bind(app.config)
    .bind(app.pipeline_sha)
    .bind(now)
    .fetch_one(exec)
    .await?)
}

const COLUMNS: &str = "id, name, source_url, config, pipeline_sha";

/// Apps that are in the pipeline repo now.
pub async fn list_active<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<AppRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM apps WHERE removed_at IS NULL ORDER BY name"
    ))
    .fetch_all(exec)
    .await?)
}

pub async fn get<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<AppRow>, super::QueryError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM apps WHERE id = $1"))
            .bind(id)
            .fetch_optional(exec)
            .await?,
    )
}

pub async fn find_active_by_name<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
) -> Result<Option<AppRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM apps WHERE name = $1 AND removed_at IS NULL"
    ))
    .bind(name)
    .fetch_optional(exec)
    .await?)
}

/// Retires one app that left the pipeline repo.
pub async fn mark_removed<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE apps SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

pub async fn set_hook_token_hash<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    hash: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE apps SET hook_token_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

pub async fn hook_token_hash<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<String>, super::QueryError> {
    Ok(
        sqlx::query_scalar("SELECT hook_token_hash FROM apps WHERE id = $1")
            .bind(id)
            .fetch_one(exec)
            .await?,
    )
}

/// Records the outcome of the last fetch of the app's repo.
pub async fn set_fetch_error<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    error: Option<&str>,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE apps SET fetch_error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Active apps whose repo could not be fetched: `(name, error)`.
pub async fn fetch_errors<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<(String, String)>, super::QueryError> {
    Ok(sqlx::query_as("SELECT name, fetch_error FROM apps WHERE removed_at IS NULL AND fetch_error IS NOT NULL ORDER BY name")
        .fetch_all(exec)
        .await?)
}

/// The ids and names of the apps in the pipeline repo now, by name: what
/// the home page pages through without reading every configuration.
pub async fn names_active<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<(i64, String)>, super::QueryError> {
    Ok(
        sqlx::query_as("SELECT id, name FROM apps WHERE removed_at IS NULL ORDER BY name")
            .fetch_all(exec)
            .await?,
    )
}

/// The `LIKE` pattern for names containing `needle` (already lower-case):
/// `%`, `_` and `\` in it match themselves.
fn containing(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// How many active apps have `needle` (lower-case; empty: any) in their
/// lower-cased name.
pub async fn count_active<'e>(
    exec: impl Executor<'e, Database = Any>,
    needle: &str,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM apps WHERE removed_at IS NULL AND LOWER(name) LIKE $1 ESCAPE '\\'",
    )
    .bind(containing(needle))
    .fetch_one(exec)
    .await?)
}

/// A page of those apps (id, name), in name order.
pub async fn page_active<'e>(
    exec: impl Executor<'e, Database = Any>,
    needle: &str,
    offset: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, name FROM apps WHERE removed_at IS NULL AND LOWER(name) LIKE $1 ESCAPE '\\'
         ORDER BY name LIMIT $2 OFFSET $3",
    )
    .bind(containing(needle))
    .bind(limit)
    .bind(offset)
    .fetch_all(exec)
    .await?)
}

/// The apps with these ids (any order).
pub async fn by_ids<'e>(
    exec: impl Executor<'e, Database = Any>,
    ids: &[i64],
) -> Result<Vec<AppRow>, super::QueryError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Numbers, written into the text: no injection.
    let ids = super::id_list(ids);
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM apps WHERE id IN ({})", ids))
            .fetch_all(exec)
            .await?,
    )
}
