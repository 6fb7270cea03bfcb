//! Pins: an environment kept on a release until an admin promotes again.
//! The pipeline repo holds the same pin as `apps/<app>/pins/<env>.yaml`
//! (see `delivery::ledger::pin`); this table is what the deploy step reads.

use app::dto::PinInfo;
use sqlx::{Any, Executor, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct PinRow {
    pub environment_id: i64,
    pub release_id: Option<i64>,
    pub version: String,
    pub pinned_by: String,
    pub reason: String,
    pub pin_commit: Option<String>,
    pub git_error: Option<String>,
    pub created_at: i64,
}

impl PinRow {
    pub fn info(&self) -> PinInfo {
        PinInfo {
            release_id: self.release_id,
            version: self.version.clone(),
            pinned_by: self.pinned_by.clone(),
            reason: self.reason.clone(),
            pinned_at: self.created_at,
            pin_commit: self.pin_commit.clone(),
            git_error: self.git_error.clone(),
        }
    }
}

const COLUMNS: &str =
    "environment_id, release_id, version, pinned_by, reason, pin_commit, git_error, created_at";

pub async fn get<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
) -> Result<Option<PinRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM environment_pins WHERE environment_id = $1"
    ))
    .bind(environment_id)
    .fetch_optional(exec)
    .await?)
}

/// Every pin, for the stack view.
pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<PinRow>, super::QueryError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM environment_pins"))
            .fetch_all(exec)
            .await?,
    )
}

/// Pins the environment (a newer pin replaces an older one).
pub async fn set<'e>(
    exec: impl Executor<'e, Database = Any>,
    pin: &PinRow,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO environment_pins
             (environment_id, release_id, version, pinned_by, reason, pin_commit, git_error, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (environment_id) DO UPDATE SET release_id = $2, version = $3, pinned_by = $4,
             reason = $5, pin_commit = $6, git_error = $7, created_at = $8",
    )
    .bind(pin.environment_id)
    .bind(pin.release_id)
    .bind(&pin.version)
    .bind(&pin.pinned_by)
    .bind(&pin.reason)
    .bind(&pin.pin_commit)
    .bind(&pin.git_error)
    .bind(pin.created_at)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Records what writing the pin to the pipeline repo gave. Only the pin
/// made at `pinned_at` is touched (a newer pin has its own write).
pub async fn set_git_outcome<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
    pinned_at: i64,
    pin_commit: Option<&str>,
    git_error: Option<&str>,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE environment_pins SET pin_commit = $3, git_error = $4
         WHERE environment_id = $1 AND created_at = $2",
    )
    .bind(environment_id)
    .bind(pinned_at)
    .bind(pin_commit)
    .bind(git_error)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Unpins; true when there was a pin.
pub async fn delete<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
) -> Result<bool, super::QueryError> {
    let result = sqlx::query("DELETE FROM environment_pins WHERE environment_id = $1")
        .bind(environment_id)
        .execute(exec)
        .await?;
    Ok(result.rows_affected() > 0)
}
