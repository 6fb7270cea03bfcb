//! Singleton leases: a row per background loop naming the replica that
//! holds it until `expires_at`. Times are the database's, never a
//! replica's, so a replica whose clock is off cannot take a lease early.

use sqlx::FromRow;

use super::{Db, now_sql};

/// Takes or renews `name` for `holder` for `lease_ms`: true when `holder`
/// holds it now (it held it, or the lease had expired or was free).
pub async fn hold(
    db: &Db,
    name: &str,
    holder: &str,
    lease_ms: i64,
) -> Result<bool, super::QueryError> {
    let now = now_sql(db.backend());
    let held = sqlx::query(&format!(
        "INSERT INTO singletons (name, holder, acquired_at, expires_at)
         VALUES ($1, $2, {now}, {now} + $3)
         ON CONFLICT (name) DO UPDATE SET
             acquired_at = CASE WHEN singletons.holder = excluded.holder
                                THEN singletons.acquired_at ELSE excluded.acquired_at END,
             holder = excluded.holder,
             expires_at = excluded.expires_at
         WHERE singletons.holder = excluded.holder OR singletons.expires_at < {now}"
    ))
    .bind(name)
    .bind(holder)
    .bind(lease_ms)
    .execute(db.pool())
    .await?;
    Ok(held.rows_affected() == 1)
}

/// Gives `name` up (a replica shutting down), if `holder` holds it.
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("DELETE FROM singletons WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(db.pool())
            .await
            .map(|_| ())?,
    )
}

/// Who holds what.
#[derive(Clone, Debug, FromRow)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub acquired_at: i64,
    pub expires_at: i64,
}

pub async fn list(db: &Db) -> Result<Vec<Lease>, super::QueryError> {
    Ok(
        sqlx::query_as(
            "SELECT name, holder, acquired_at, expires_at FROM singletons ORDER BY name",
        )
        .fetch_all(db.pool())
        .await?,
    )
}
