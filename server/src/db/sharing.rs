//! Preview share links and the feedback testers leave through them.

use sqlx::{Any, Executor, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct ShareLinkRow {
    pub id: i64,
    pub change_request_id: i64,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

pub async fn insert_link<'e>(
    exec: impl Executor<'e, Database = Any>,
    change_request_id: i64,
    created_by: &str,
    now: i64,
    expires_at: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO share_links (change_request_id, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(change_request_id)
    .bind(created_by)
    .bind(now)
    .bind(expires_at)
    .fetch_one(exec)
    .await?)
}

pub async fn link<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<ShareLinkRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, change_request_id, created_by, created_at, expires_at, revoked_at
         FROM share_links WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(exec)
    .await?)
}

/// Links of a change request, newest first.
pub async fn links_of<'e>(
    exec: impl Executor<'e, Database = Any>,
    change_request_id: i64,
) -> Result<Vec<ShareLinkRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, change_request_id, created_by, created_at, expires_at, revoked_at
         FROM share_links WHERE change_request_id = $1 ORDER BY id DESC",
    )
    .bind(change_request_id)
    .fetch_all(exec)
    .await?)
}

/// `false`: no such link, or revoked already.
pub async fn revoke<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    now: i64,
) -> Result<bool, super::QueryError> {
    let done =
        sqlx::query("UPDATE share_links SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(exec)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A live link's new expiry; `false`: no such link, or revoked.
pub async fn extend<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    expires_at: i64,
) -> Result<bool, super::QueryError> {
    let done =
        sqlx::query("UPDATE share_links SET expires_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(expires_at)
            .execute(exec)
            .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Clone, Debug, FromRow)]
pub struct FeedbackRow {
    pub id: i64,
    pub change_request_id: i64,
    pub share_link_id: Option<i64>,
    pub author: String,
    pub verdict: String,
    pub comment: String,
    pub commit_sha: Option<String>,
    pub created_at: i64,
}

pub struct NewFeedback<'a> {
    pub change_request_id: i64,
    pub share_link_id: Option<i64>,
    pub author: &'a str,
    pub verdict: &'a str,
    pub comment: &'a str,
    pub commit_sha: Option<&'a str>,
}

pub async fn insert_feedback<'e>(
    exec: impl Executor<'e, Database = Any>,
    feedback: &NewFeedback<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO tester_feedback
             (change_request_id, share_link_id, author, verdict, comment, commit_sha, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(feedback.change_request_id)
    .bind(feedback.share_link_id)
    .bind(feedback.author)
    .bind(feedback.verdict)
    .bind(feedback.comment)
    .bind(feedback.commit_sha)
    .bind(now)
    .fetch_one(exec)
    .await?)
}

/// A change request's feedback, oldest first.
pub async fn feedback_of<'e>(
    exec: impl Executor<'e, Database = Any>,
    change_request_id: i64,
) -> Result<Vec<FeedbackRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, change_request_id, share_link_id, author, verdict, comment, commit_sha, created_at
         FROM tester_feedback WHERE change_request_id = $1 ORDER BY id LIMIT 500",
    )
    .bind(change_request_id)
    .fetch_all(exec)
    .await?)
}
