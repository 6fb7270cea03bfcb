//! Collecting build pods nothing follows any more: a run that ended, an
//! attempt that was taken over and whose pod the next attempt did not
//! follow on (see `reattach`), a Gantry that crashed between creating a
//! pod and deleting it. Found by label — this Gantry's own pods
//! only — on every build cluster and namespace the apps' configurations
//! name, and deleted (their secrets go with them). Run by whichever
//! replica holds the `builds` loop.

use std::collections::BTreeSet;

use app::dto::RunState;
use kube::api::{DeleteParams, ListParams};

use super::pod::{self, MANAGED_BY, RUN_LABEL};
use super::{BuildError, Builds};
use crate::db::{self, Db};
use crate::gitops::builds::Executor;
use crate::gitops::schema::{AppConfig, Step};

/// The (cluster, namespace) pairs a configuration builds in.
fn places(config: &AppConfig, fallback: &Executor) -> Vec<(String, String)> {
    let steps = config.pipeline.steps.iter().filter_map(|step| match step {
        Step::Command(step) => Some(config.executor_of(step, fallback)),
        Step::Deploy => None,
    });
    steps
        .filter_map(|executor| match executor {
            Executor::Kubernetes(kube) => Some((kube.cluster, kube.namespace)),
            Executor::Local => None,
        })
        .collect()
}

/// How long after a run was taken over its earlier attempt's pod is left
/// for the new attempt to follow on (it takes the pod within seconds of
/// starting; see `reattach`).
const FOLLOW_ON_GRACE_MS: i64 = 2 * 60 * 1000;

/// Whether the run's current attempt may still take over an earlier
/// attempt's pod: it has not started yet (the run waits to be claimed), or
/// started moments ago.
async fn may_follow_on(db: &Db, run: &db::runs::RunRow) -> Result<bool, BuildError> {
    let attempts = db::run_attempts::of_run(db.pool(), run.id).await?;
    Ok(match attempts.iter().find(|a| a.attempt == run.attempt) {
        None => true,
        Some(current) => db::now_millis() - current.started_at < FOLLOW_ON_GRACE_MS,
    })
}

/// Deletes this Gantry's build pods whose run ended or moved to another
/// attempt; how many it deleted.
pub async fn collect(builds: &Builds<'_>, db: &Db) -> Result<usize, BuildError> {
    let mut everywhere = BTreeSet::new();
    for app_row in db::apps::list_active(db.pool()).await? {
        if let Ok(config) = crate::configs::stored(&app_row) {
            everywhere.extend(places(&config, &builds.fallback));
        }
    }
    let selector = format!(
        "{}={},gantry.dev/instance={}",
        MANAGED_BY.0,
        MANAGED_BY.1,
        pod::label_value(builds.instance)
    );
    let mut deleted = 0;
    for (cluster, namespace) in everywhere {
        let client = match builds.clusters.client(&cluster).await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%cluster, %error, "builds: cannot reach a build cluster to collect its pods");
                continue;
            }
        };
        let api = super::step::pods(&client, &namespace);
        let pods = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(pods) => pods,
            Err(error) => {
                tracing::warn!(%cluster, %namespace, %error, "builds: cannot list build pods");
                continue;
            }
        };
        for found in pods {
            let labels = found.metadata.labels.clone().unwrap_or_default();
            let number = |key: &str| labels.get(key).and_then(|v| v.parse::<i64>().ok());
            let (Some(run_id), Some(attempt)) = (number(RUN_LABEL), number("gantry.dev/attempt"))
            else {
                continue;
            };
            let followed = match db::runs::get(db.pool(), run_id).await? {
                Some(run) if matches!(run.state, RunState::Running | RunState::Queued) => {
                    run.attempt == attempt
                        || (attempt < run.attempt && may_follow_on(db, &run).await?)
                }
                _ => false,
            };
            if followed || found.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = found.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    deleted += 1;
                    tracing::info!(%cluster, %namespace, pod = %name, run = run_id, attempt, "builds: collected a pod nothing follows");
                }
                Err(error) => {
                    tracing::warn!(%cluster, %namespace, pod = %name, %error, "builds: cannot delete a build pod");
                }
            }
        }
    }
    Ok(deleted)
}
