//! The audit log: who changed what, from where and why. Each audited action
//! is recorded by the domain service that performs it, so the REST API and
//! the dashboard cannot disagree about what is audited.

use app::port::Caller;

use crate::db::{self, Db};

/// Records one action by `caller` on `target`.
pub async fn record(
    db: &Db,
    caller: &Caller,
    action: &str,
    target: &str,
    reason: Option<&str>,
) -> Result<(), crate::db::QueryError> {
    db::audit::record(
        db.pool(),
        &db::audit::NewEntry {
            actor: &caller.me.name,
            action,
            target,
            reason,
            source_ip: caller.source_ip.as_deref(),
            detail: "{}",
        },
        db::now_millis(),
    )
    .await
    .map(|_| ())
}
