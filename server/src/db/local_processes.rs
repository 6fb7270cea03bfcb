//! Processes of the local target, one per live environment, so a restart
//! knows what to bring back.

use sqlx::{Any, Executor, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct LocalProcessRow {
    pub environment_id: i64,
    pub deployment_id: i64,
    pub pid: Option<i64>,
    pub port: i64,
    pub workdir: String,
}

pub async fn upsert<'e>(
    exec: impl Executor<'e, Database = Any>,
    row: &LocalProcessRow,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO local_processes (environment_id, deployment_id, pid, port, workdir, started_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (environment_id) DO UPDATE SET deployment_id = $2, pid = $3, port = $4,
             workdir = $5, started_at = $6",
    )
    .bind(row.environment_id)
    .bind(row.deployment_id)
    .bind(row.pid)
    .bind(row.port)
    .bind(&row.workdir)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

pub async fn delete<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("DELETE FROM local_processes WHERE environment_id = $1")
            .bind(environment_id)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<LocalProcessRow>, super::QueryError> {
    Ok(sqlx::query_as("SELECT environment_id, deployment_id, pid, port, workdir FROM local_processes ORDER BY environment_id")
        .fetch_all(exec)
        .await?)
}

/// The pid of an environment's process after a restart.
pub async fn set_pid<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
    pid: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE local_processes SET pid = $2 WHERE environment_id = $1")
            .bind(environment_id)
            .bind(pid)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}
