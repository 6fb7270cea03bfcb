//! The release ledger.

use app::dto::{ReleaseState, ReleaseSummary};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

#[derive(FromRow)]
struct Row {
    id: i64,
    app: String,
    environment: String,
    version: String,
    state: String,
    created_by: Option<String>,
    created_at: i64,
}

/// The newest releases first.
pub async fn list_recent<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<ReleaseSummary>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.id, a.name AS app, e.name AS environment, r.version, r.state, r.created_by,
                r.created_at
         FROM releases r
         JOIN apps a ON a.id = r.app_id
         JOIN environments e ON e.id = r.environment_id
         ORDER BY r.created_at DESC, r.id DESC
         LIMIT 200",
    )
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(ReleaseSummary {
                id: row.id,
                app: row.app,
                environment: row.environment,
                version: row.version,
                state: decode_state(&row.state, ReleaseState::parse)?,
                created_by: row.created_by,
                created_at: row.created_at,
            })
        })
        .collect()
}
