//! Change requests, native and from forges, in one model.

use app::dto::{ChangeRequestState, ChangeRequestSummary};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

#[derive(FromRow)]
struct Row {
    id: i64,
    app: String,
    title: String,
    source_branch: String,
    target_branch: String,
    author: String,
    state: String,
    created_at: i64,
}

/// Open requests first, then the rest; newest first within each.
pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<ChangeRequestSummary>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.id, a.name AS app, c.title, c.source_branch, c.target_branch, c.author,
                c.state, c.created_at
         FROM change_requests c JOIN apps a ON a.id = c.app_id
         ORDER BY CASE WHEN c.state = $1 THEN 0 ELSE 1 END, c.created_at DESC, c.id DESC
         LIMIT 200",
    )
    .bind(ChangeRequestState::Open.as_str())
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(ChangeRequestSummary {
                id: row.id,
                app: row.app,
                title: row.title,
                source_branch: row.source_branch,
                target_branch: row.target_branch,
                author: row.author,
                state: decode_state(&row.state, ChangeRequestState::parse)?,
                created_at: row.created_at,
            })
        })
        .collect()
}
