//! Which apps a caller may see. A grant on every app needs no list: queries
//! run unfiltered. A caller scoped to some apps gets their ids, read once per
//! request and pushed into each query (`app_id IN (…)`), so a page of a list
//! is full whatever other apps hold, and nothing of another app is counted.

use app::dto::Role;
use app::port::Caller;

use crate::db::{self, Db, QueryError};

/// The apps a caller may see at `role` or above.
pub enum Visible {
    /// Every app, including one added after this answer.
    Every,
    /// These apps (id, name), in name order.
    Only(Vec<(i64, String)>),
}

impl Visible {
    /// Reads what `caller` may see; only a scoped caller costs a query.
    pub async fn of(db: &Db, caller: &Caller, role: Role) -> Result<Visible, QueryError> {
        if caller.me.can(role, None) {
            return Ok(Visible::Every);
        }
        Ok(Visible::Only(
            db::apps::names_active(db.pool())
                .await?
                .into_iter()
                .filter(|(_, name)| caller.me.can(role, Some(name)))
                .collect(),
        ))
    }

    /// The ids to limit queries to; `None`: no limit.
    pub fn ids(&self) -> Option<Vec<i64>> {
        match self {
            Visible::Every => None,
            Visible::Only(apps) => Some(apps.iter().map(|(id, _)| *id).collect()),
        }
    }
}
