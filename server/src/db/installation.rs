//! The installation's tag: made by the first replica to start, read by
//! every other (`installation`, one row).

use sqlx::{Any, Executor};

/// The installation's tag, made from `fresh` when there is none yet.
pub async fn tag<'e, E>(exec: E, fresh: &str) -> Result<String, super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    sqlx::query("INSERT INTO installation (id, tag) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
        .bind(fresh)
        .execute(exec)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT tag FROM installation WHERE id = 1")
            .fetch_one(exec)
            .await?,
    )
}
