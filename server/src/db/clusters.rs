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
}

pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<ClusterSummary>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, server_url, state, server_version, last_checked_at, last_error
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
            })
        })
        .collect()
}
