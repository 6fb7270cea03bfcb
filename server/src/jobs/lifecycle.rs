//! The end of environments: previews destroyed when their branch is merged
//! into the staging branch, deleted, or past its TTL; environments of apps
//! that left the pipeline repo. Teardown is verified and recorded.

use std::time::Duration;

use app::dto::{EnvironmentState, RunState};

use crate::db::{self, audit::NewEntry, environments::EnvRow, now_millis};
use crate::gitops::schema::AppConfig;
use crate::state::App;

/// Stops an environment's runs, tears down what it runs, and records it.
pub async fn destroy(
    app: &App,
    env: &EnvRow,
    app_name: &str,
    reason: &str,
) -> Result<(), super::FlowError> {
    let pool = app.db.pool();
    let now = now_millis();
    db::environments::set_state(
        pool,
        env.id,
        EnvironmentState::Destroying,
        Some(reason),
        now,
    )
    .await?;
    for run in db::runs::list_unfinished_for_environment(pool, env.id).await? {
        if run.state == RunState::Running {
            db::runs::request_cancel(pool, run.id).await?;
        } else {
            db::runs::finish(
                pool,
                run.id,
                RunState::Cancelled,
                Some("the environment was destroyed"),
                now,
            )
            .await?;
        }
    }
    // A run being cancelled may still be inside its deploy; let it leave.
    for _ in 0..300 {
        let current = db::environments::get(pool, env.id).await?;
        if current.is_none_or(|e| e.locked_by_run.is_none()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut teardown = vec![
        app.local
            .destroy(&app.db, env.id, app_name, &env.name)
            .await?,
    ];
    teardown.extend(destroy_on_clusters(app, env, app_name).await);
    let teardown = teardown.join("; ");
    let detail = format!("{reason}; {teardown}");
    db::environments::mark_destroyed(pool, env.id, &detail, now_millis()).await?;
    db::audit::record(
        pool,
        &NewEntry {
            actor: "gantry",
            action: "environment.destroy",
            target: &format!("{app_name}/{}", env.name),
            reason: Some(reason),
            source_ip: None,
            detail: &serde_json::json!({ "teardown": teardown }).to_string(),
        },
        now_millis(),
    )
    .await?;
    tracing::info!(app = app_name, env = %env.name, %reason, %teardown, "environment destroyed");
    Ok(())
}

/// Deletes the environment's namespace on each of its clusters and checks
/// it is gone; each line says what happened (failures included).
async fn destroy_on_clusters(app: &App, env: &EnvRow, app_name: &str) -> Vec<String> {
    let Some(namespace) = env.namespace.as_deref() else {
        return Vec::new();
    };
    let config = match db::apps::get(app.db.pool(), env.app_id).await {
        Ok(Some(row)) => serde_json::from_str::<AppConfig>(&row.config).ok(),
        _ => None,
    };
    let entry = config
        .as_ref()
        .and_then(|c| c.stack.iter().find(|e| e.env == env.stack_entry));
    let clusters: Vec<String> = entry
        .map(|e| e.cluster_targets().cloned().collect())
        .unwrap_or_default();
    let timeout = Duration::from_secs(entry.map_or(300, |e| e.rollout_timeout_seconds));
    let guardrails = config
        .as_ref()
        .map(|c| c.guardrails.clone())
        .unwrap_or_default();
    let rules = config
        .as_ref()
        .map(|c| c.health_rules.clone())
        .unwrap_or_default();
    // What the environment's current deployment applied: its pre-delete
    // hooks run first.
    let objects = match env.deployment_id {
        Some(id) => crate::delivery::deploy::drift::deployed_objects(&app.delivery(), id)
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut lines = Vec::new();
    for cluster in clusters {
        let outcome = match app.cluster_registry().connection(&cluster).await {
            Ok((client, served)) => {
                // A preview goes with its branch: a failing pre-delete hook
                // is reported, and the namespace deleted all the same.
                let teardown = crate::delivery::deploy::cluster::Teardown {
                    cluster: &cluster,
                    namespace,
                    app: app_name,
                    env: &env.name,
                    objects: &objects,
                    timeout,
                    guardrails: &guardrails,
                    rules: &rules,
                };
                let hooks =
                    crate::delivery::deploy::cluster::pre_delete(&client, served, &teardown)
                        .await
                        .unwrap_or_else(|error| vec![error.to_string()]);
                lines.extend(hooks);
                crate::delivery::deploy::cluster::delete_namespace(
                    &client, &cluster, namespace, app_name, &env.name,
                )
                .await
                .map_err(|error| error.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        lines.push(outcome.unwrap_or_else(|error| format!("teardown incomplete: {error}")));
    }
    lines
}

/// After the staging branch moved to `staging_head`: previews whose branch
/// head is now part of it are merged, and go.
pub async fn destroy_merged_previews(
    app: &App,
    app_row: &db::apps::AppRow,
    config: &AppConfig,
    staging_head: &str,
) -> Result<(), super::FlowError> {
    let pool = app.db.pool();
    let heads = db::branch_heads::list(pool, app_row.id).await?;
    let staging = crate::gitops::stack::staging_branch(config).unwrap_or("latest");
    for env in db::environments::list_for_app(pool, app_row.id).await? {
        if !crate::gitops::stack::is_preview(config, &env.stack_entry) {
            continue;
        }
        let Some(head) = env.branch.as_deref().and_then(|b| heads.get(b)) else {
            continue;
        };
        if app
            .git
            .is_ancestor(&app_row.source_url, head, staging_head)
            .await?
        {
            let branch = env.branch.clone().unwrap_or_default();
            destroy(
                app,
                &env,
                &app_row.name,
                &format!("{branch} was merged into {staging}"),
            )
            .await?;
        }
    }
    Ok(())
}

/// One pass of the expiry job: previews past their TTL, and freezes that
/// ended (they end on the clock, not on an event).
pub async fn expire_and_thaw(app: &App) {
    if let Err(error) = expire(app).await {
        tracing::warn!(%error, "expiring environments failed");
    }
    if let Err(error) = crate::approvals::release_thawed(&app.approvals()).await {
        tracing::warn!(%error, "releasing runs after a freeze failed");
    }
    if let Err(error) = crate::change_requests::merge_thawed(&app.change_request_service()).await {
        tracing::warn!(%error, "merging change requests after a freeze failed");
    }
}

pub async fn expire(app: &App) -> Result<(), super::FlowError> {
    let pool = app.db.pool();
    let now = app.clock.now_millis();
    let active_apps = db::apps::list_active(pool).await?;
    for env in db::environments::list_all_active(pool).await? {
        let Some(app_row) = active_apps.iter().find(|a| a.id == env.app_id) else {
            let name = db::apps::get(pool, env.app_id)
                .await?
                .map(|a| a.name)
                .unwrap_or_default();
            destroy(
                app,
                &env,
                &name,
                "its app was removed from the pipeline repo",
            )
            .await?;
            continue;
        };
        let config: AppConfig = crate::configs::stored(app_row)?;
        if let Some(ttl) = env.ttl_seconds
            && crate::gitops::stack::is_preview(&config, &env.stack_entry)
            && env.locked_by_run.is_none()
            && now - env.updated_at > ttl.saturating_mul(1000)
        {
            let ttl = crate::config::duration::HumanDuration(Duration::from_secs(
                u64::try_from(ttl).unwrap_or(0),
            ));
            destroy(
                app,
                &env,
                &app_row.name,
                &format!("its TTL of {ttl} passed"),
            )
            .await?;
        }
    }
    Ok(())
}
