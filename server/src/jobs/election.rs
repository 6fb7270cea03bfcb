//! Background loops that must run on one replica at a time — scanning git,
//! planning, expiring previews and thawing freezes, drift, the stability
//! soak, notification delivery — are elected in the database: each has a
//! lease row (`db::singletons`) a replica takes and renews every third of
//! `runner.lease`. A replica that dies stops renewing, and another takes
//! the loop within one lease. On SQLite (one process) this replica holds
//! them all. The runner is not one of them: replicas share runs by claiming
//! them (`db::runs::claim_next`).

use std::time::Instant;

use crate::db::{self, Backend};
use crate::state::App;

/// The elected loops, by name.
pub const LOOPS: [&str; 7] = [
    "scan",
    "plan",
    "expiry",
    "drift",
    "stability",
    "delivery",
    "builds",
];

fn lease_millis(app: &App) -> i64 {
    i64::try_from(app.config.runner_lease.as_millis()).unwrap_or(i64::MAX)
}

/// Takes or renews every loop's lease once.
pub async fn elect(app: &App) {
    if app.db.backend() == Backend::Sqlite {
        publish(app);
        return;
    }
    for name in LOOPS {
        let asked = Instant::now();
        match db::singletons::hold(&app.db, name, &app.replica.id, lease_millis(app)).await {
            Ok(true) => {
                let until = asked + app.config.runner_lease * 2 / 3;
                if app.replica.singletons.hold(name, until) {
                    tracing::info!(singleton = name, replica = %app.replica.id, "this replica now runs the {name} loop");
                }
            }
            Ok(false) => app.replica.singletons.lose(name),
            // Kept until its own expiry: a blip does not hand the loop over.
            Err(error) => {
                tracing::warn!(%error, singleton = name, "renewing a singleton lease failed")
            }
        }
    }
    publish(app);
}

/// `/metrics`: `gantry_singleton_held{name}` is 1 on the replica that
/// holds the loop, 0 on the others.
fn publish(app: &App) {
    for name in LOOPS {
        let held = if app.replica.singletons.holds(name) {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("gantry_singleton_held", "name" => name).set(held);
    }
}

/// Gives the leases up as this replica stops, so another takes over at once
/// instead of a lease later.
pub async fn resign(app: &App) {
    if app.db.backend() == Backend::Sqlite {
        return;
    }
    let held: Vec<&str> = LOOPS
        .into_iter()
        .filter(|name| app.replica.singletons.holds(name))
        .collect();
    app.replica.singletons.lose_all();
    for name in held {
        let _ = db::singletons::release(&app.db, name, &app.replica.id).await;
    }
}

/// Who runs each elected loop (the Settings page).
pub async fn holders(app: &App) -> Result<Vec<app::dto::SingletonHolder>, crate::db::QueryError> {
    if app.db.backend() == Backend::Sqlite {
        return Ok(LOOPS
            .into_iter()
            .map(|name| app::dto::SingletonHolder {
                name: name.into(),
                holder: app.replica.id.clone(),
                here: true,
                since: None,
                until: None,
            })
            .collect());
    }
    let leases = db::singletons::list(&app.db).await?;
    Ok(LOOPS
        .into_iter()
        .map(|name| {
            let lease = leases.iter().find(|l| l.name == name);
            app::dto::SingletonHolder {
                name: name.into(),
                holder: lease
                    .map(|l| l.holder.clone())
                    .unwrap_or_else(|| "nobody yet".into()),
                here: app.replica.singletons.holds(name),
                since: lease.map(|l| l.acquired_at),
                until: lease.map(|l| l.expires_at),
            }
        })
        .collect())
}
