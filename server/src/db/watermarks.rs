//! The change feed's watermarks: indexed maxima and counts whose change
//! means something the dashboard shows moved. Cheap with 100,000 runs.

use sqlx::{Any, Executor};

/// One string that changes whenever any watermark does.
pub async fn version<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<String, super::QueryError> {
    let row: (i64, i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(updated_at), 0) FROM environments),
                (SELECT COUNT(*) FROM environments),
                (SELECT COALESCE(MAX(id), 0) FROM runs),
                (SELECT COALESCE(MAX(started_at), 0) FROM runs),
                (SELECT COALESCE(MAX(finished_at), 0) FROM runs),
                (SELECT COALESCE(MAX(updated_at), 0) FROM change_requests),
                (SELECT COALESCE(MAX(id), 0) FROM releases),
                (SELECT COALESCE(MAX(id), 0) FROM audit_log),
                (SELECT COALESCE(MAX(id), 0) FROM tester_feedback)",
    )
    .fetch_one(exec)
    .await?;
    Ok(format!(
        "{}.{}.{}.{}.{}.{}.{}.{}.{}",
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8
    ))
}
