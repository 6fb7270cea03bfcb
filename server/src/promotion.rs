//! Build once, promote. An artifact (an app's source tree built by one
//! pipeline commit) is *verified* in an environment while a release of it
//! is live and healthy there, its run having passed every step. A stack
//! entry may ask for that before it deploys the artifact (`requires:
//! {verified_in, soak}`) and may deploy the verified build instead of
//! building again (`promote_from`). An artifact an admin rejected, or whose
//! release was rolled back as faulty, is held from every fixed environment
//! until an admin overrides.
//!
//! The judgement ([`gate`]) is pure; the rest reads and writes through
//! `db::artifacts`.

use app::dto::{ArtifactRejection, ArtifactStatus, GateState, PromotionGate, Role, Verification};
use app::port::Caller;

use crate::db::{self, Db, artifacts::VerificationRow, audit::NewEntry};
use crate::gitops::schema::StackEntry;

#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl crate::error::Classified for PromotionError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            PromotionError::NotFound(_) => Kind::NotFound,
            PromotionError::Forbidden(_) => Kind::Forbidden,
            PromotionError::Invalid(_) => Kind::Invalid,
            PromotionError::Conflict(_) => Kind::Conflict,
            PromotionError::Db(error) => error.kind(),
        }
    }
}

/// How long a verification row's release was healthy, as of `now`: on
/// until now while it serves, to when it stopped otherwise.
fn healthy_for(row: &VerificationRow, now: i64) -> i64 {
    let until = match row.healthy_until {
        Some(until) => until,
        None if row.serving == 1 => now,
        None => row.healthy_since,
    };
    (until - row.healthy_since).max(0)
}

fn verification(row: &VerificationRow, now: i64) -> Verification {
    Verification {
        environment: row.environment.clone(),
        release_id: row.release_id,
        run_id: row.run_id,
        healthy_since: row.healthy_since,
        healthy_for_millis: healthy_for(row, now),
        serving: row.serving == 1,
    }
}

/// An image reference a step declared (`registry/shop@sha256:…`), checked
/// before it is pasted into manifests: registry, path, tag and digest
/// characters only, so it can never be more than one YAML scalar.
pub fn image_reference(value: &str) -> Result<&str, crate::error::Rejected> {
    let value = value.trim();
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if value.is_empty()
        || value.len() > 512
        || !plain
        || value.starts_with(['-', '.', '/', ':', '@'])
    {
        return Err(format!(
            "{value:?} is not an image reference (registry/name:tag or registry/name@sha256:digest)"
        )
        .into());
    }
    Ok(value)
}

/// `12m`, `1h 5m`, `40s`: how people read a soak.
pub fn human(millis: i64) -> String {
    let seconds = (millis.max(0) + 999) / 1000;
    let (hours, minutes, rest) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (hours, minutes, rest) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// What `entry` asks of artifact `id`, and where it stands: `None` where
/// it asks nothing (a preview, or a fixed environment without `requires`
/// for an artifact nobody rejected). `verified` is the artifact's
/// verifications as of now.
pub fn gate(
    id: i64,
    entry: &StackEntry,
    verified: &[Verification],
    rejected: Option<&ArtifactRejection>,
) -> Option<PromotionGate> {
    if entry.branches.is_preview() {
        return None;
    }
    let verified_in = entry.requires.as_ref().map(|r| r.verified_in.clone());
    let soak_millis = entry.requires.as_ref().map_or(0, |r| {
        i64::try_from(r.soak_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    });
    let decided = |state, reason: String, opens_at| {
        Some(PromotionGate {
            verified_in: verified_in.clone(),
            soak_millis,
            state,
            reason,
            opens_at,
        })
    };
    if let Some(rejection) = rejected {
        return decided(
            GateState::Rejected,
            format!(
                "artifact {id} was rejected by {}: {}; it is not deployed again unless an admin overrides with a reason",
                rejection.by, rejection.reason
            ),
            None,
        );
    }
    let upstream = verified_in.as_deref()?;
    let best = verified
        .iter()
        .filter(|v| v.environment == upstream)
        .max_by_key(|v| (v.healthy_for_millis, v.serving));
    let soak = human(soak_millis);
    match best {
        None => decided(
            GateState::Unverified,
            format!(
                "artifact {id} has not been live and healthy in {upstream}: deploy it there first (its run there must pass every step)"
            ),
            None,
        ),
        Some(best) if best.healthy_for_millis >= soak_millis => decided(
            GateState::Passed,
            format!(
                "verified in {upstream}: live and healthy there for {} ({soak} required)",
                human(best.healthy_for_millis)
            ),
            None,
        ),
        Some(best) if best.serving => decided(
            GateState::Soaking,
            format!(
                "soaking in {upstream}: live and healthy there for {} of the {soak} required; released in {} if it stays healthy",
                human(best.healthy_for_millis),
                human(soak_millis - best.healthy_for_millis)
            ),
            Some(best.healthy_since + soak_millis),
        ),
        Some(best) => decided(
            GateState::Unverified,
            format!(
                "artifact {id} was live and healthy in {upstream} for only {} of the {soak} required before it was replaced; deploy it there again",
                human(best.healthy_for_millis)
            ),
            None,
        ),
    }
}

/// Artifact `artifact_id`'s standing, judged for `entry` where given.
pub async fn status(
    db: &Db,
    artifact_id: i64,
    entry: Option<&StackEntry>,
    now: i64,
) -> Result<Option<ArtifactStatus>, crate::db::QueryError> {
    let pool = db.pool();
    let Some((_, artifact)) = db::artifacts::get(pool, artifact_id).await? else {
        return Ok(None);
    };
    let mut verified: Vec<Verification> = db::artifacts::verifications(pool, artifact_id)
        .await?
        .iter()
        .map(|row| verification(row, now))
        .collect();
    verified.sort_by_key(|v| std::cmp::Reverse(v.healthy_for_millis));
    let rejected = db::artifacts::rejection(pool, artifact_id).await?;
    let gate = entry.and_then(|entry| gate(artifact_id, entry, &verified, rejected.as_ref()));
    Ok(Some(ArtifactStatus {
        id: artifact.id,
        source_tree: artifact.source_tree,
        pipeline_sha: artifact.pipeline_sha,
        verified,
        rejected,
        gate,
        promoted_from_run: None,
    }))
}

/// The artifact commit `sha` of the app builds with the pipeline Gantry
/// has now: the commit's tree, built by the app's pipeline folder as that
/// commit of the pipeline repo has it — pins and `app.yaml` aside, which
/// say where and when to deploy, not how to build. Another app's change, a
/// pin or a freeze window in between keeps it one artifact. `None` (and a warning) when either cannot be read.
pub async fn artifact_of(
    db: &Db,
    (git, pipeline_repo): (&crate::git::GitStore, Option<&str>),
    app: &db::apps::AppRow,
    sha: &str,
) -> Result<Option<i64>, crate::db::QueryError> {
    let tree = git.tree_of(&app.source_url, sha).await;
    let pipeline = match pipeline_repo {
        Some(repo) => {
            git.folder_fingerprint(
                repo,
                &app.pipeline_sha,
                &format!("apps/{}", app.name),
                &["pins", "app.yaml"],
            )
            .await
        }
        // No pipeline repo (a single-app setup): its commit stands for it.
        None => Ok(app.pipeline_sha.clone()),
    };
    match (tree, pipeline) {
        (Ok(tree), Ok(pipeline)) => Ok(Some(
            db::artifacts::ensure(
                db.pool(),
                app.id,
                (&tree, &app.pipeline_sha, &pipeline),
                db::now_millis(),
            )
            .await?,
        )),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(app = %app.name, commit = %sha, %error, "cannot read what the commit builds; the run records no artifact");
            Ok(None)
        }
    }
}

/// The standing of run `run_id`'s artifact, judged for the stack entry of
/// the run's environment (none for a run without an artifact).
pub async fn status_of_run(
    db: &Db,
    run_id: i64,
    now: i64,
) -> Result<Option<ArtifactStatus>, crate::db::QueryError> {
    let pool = db.pool();
    let Some(run) = db::runs::get(pool, run_id).await? else {
        return Ok(None);
    };
    let Some(artifact) = run.artifact_id else {
        return Ok(None);
    };
    let env = db::environments::get(pool, run.environment_id).await?;
    let app = db::apps::get(pool, run.app_id).await?;
    // An unreadable configuration judges nothing; the artifact still shows.
    let config = app.and_then(|app| crate::configs::stored(&app).ok());
    let entry = match (&config, &env) {
        (Some(config), Some(env)) => config.stack.iter().find(|e| e.env == env.stack_entry),
        _ => None,
    };
    let mut status = status(db, artifact, entry, now).await?;
    // An override released it whatever its artifact's standing: the gate
    // says so rather than what held it.
    if let Some(gate) = status.as_mut().and_then(|s| s.gate.as_mut())
        && gate.state != GateState::Passed
        && db::approvals::overridden(pool, run_id).await?
    {
        gate.reason = format!(
            "overridden by an admin (audited); held for: {}",
            gate.reason
        );
    }
    if let Some(status) = &mut status {
        status.promoted_from_run = run.promoted_from;
    }
    Ok(status)
}

/// The app's stack as a promotion graph: each entry, what feeds it and
/// what it asks, the artifact each fixed environment serves, and the runs
/// held on their way in (with their artifacts' standing).
pub async fn graph(
    db: &Db,
    app: &db::apps::AppRow,
    config: &crate::gitops::schema::AppConfig,
    now: i64,
) -> Result<app::dto::PromotionGraph, crate::db::QueryError> {
    let pool = db.pool();
    let environments = db::environments::list_for_app(pool, app.id).await?;
    let waiting = db::runs::list_waiting_for_approval(pool).await?;
    let mut stages = Vec::new();
    for entry in &config.stack {
        let mine: Vec<&db::environments::EnvRow> = environments
            .iter()
            .filter(|e| e.stack_entry == entry.env && e.destroyed_at.is_none())
            .collect();
        let serving = match mine.first().filter(|_| !entry.branches.is_preview()) {
            Some(env) => match db::artifacts::serving_run(pool, env.id).await? {
                Some(run) => status_of_run(db, run, now).await?,
                None => None,
            },
            None => None,
        };
        let mut held = Vec::new();
        for pending in waiting
            .iter()
            .filter(|p| p.app == app.name && mine.iter().any(|e| e.name == p.environment))
        {
            held.push(app::dto::HeldArtifact {
                run_id: pending.run_id,
                commit_sha: pending.commit_sha.clone(),
                promotion: status_of_run(db, pending.run_id, now).await?,
            });
        }
        let (branches, preview) = match &entry.branches {
            crate::gitops::schema::BranchMatch::Exact(branch) => (branch.clone(), false),
            crate::gitops::schema::BranchMatch::Glob(glob) => (glob.clone(), true),
        };
        stages.push(app::dto::PromotionStage {
            environment: entry.env.clone(),
            branches,
            preview,
            promote_from: entry.promote_from.clone(),
            requires: entry.requires.as_ref().map(|r| r.verified_in.clone()),
            soak_millis: entry.requires.as_ref().map_or(0, |r| {
                i64::try_from(r.soak_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
            }),
            live: mine
                .iter()
                .filter(|e| e.state == app::dto::EnvironmentState::Live)
                .count() as i64,
            serving,
            held,
            strategy: strategy_words(&entry.strategy),
            rings: entry
                .rings
                .as_ref()
                .map(|r| r.rings.clone())
                .unwrap_or_default(),
        });
    }
    Ok(app::dto::PromotionGraph { stages })
}

/// How a deploy goes out, after "rolls out": `whole (rolling)`, `as a
/// canary: 10 % → 50 %`, `blue/green, keeping the old version 10m`.
fn strategy_words(strategy: &crate::gitops::strategy::Strategy) -> String {
    use crate::gitops::strategy::{CanaryStep, Strategy};
    match strategy {
        Strategy::Rolling => "whole (rolling)".into(),
        Strategy::Canary(plan) => {
            let weights: Vec<String> = plan
                .steps
                .iter()
                .filter_map(|step| match step {
                    CanaryStep::Weight(weight) => Some(format!("{weight} %")),
                    _ => None,
                })
                .collect();
            format!("as a canary: {}", weights.join(" → "))
        }
        Strategy::BlueGreen(switch) => format!(
            "blue/green, keeping the old version {}",
            crate::config::duration::HumanDuration(std::time::Duration::from_secs(
                switch.keep_seconds
            ))
        ),
    }
}

/// Why `entry` holds a run of `artifact` (its id, if known), if it does:
/// a rejected artifact, or one not yet verified (long enough) where
/// `requires` says.
pub async fn hold(
    db: &Db,
    artifact: Option<i64>,
    entry: &StackEntry,
    now: i64,
) -> Result<Option<String>, crate::db::QueryError> {
    if entry.branches.is_preview() {
        return Ok(None);
    }
    let Some(artifact_id) = artifact else {
        return Ok(entry.requires.as_ref().map(|requires| {
            format!(
                "what this run builds is not known (its commit's tree could not be read), so it cannot be shown verified in {}",
                requires.verified_in
            )
        }));
    };
    let gate = status(db, artifact_id, Some(entry), now)
        .await?
        .and_then(|status| status.gate);
    Ok(gate
        .filter(|gate| gate.state != GateState::Passed)
        .map(|gate| gate.reason))
}

/// The build a promoted run deploys: the verification of its artifact in
/// `upstream` that stayed healthy longest — the one the gate judged, so
/// what soaked is what goes on (a rebuild of the same tree that went live
/// a minute ago is not) — and at least `soak_millis` of it.
pub async fn source(
    db: &Db,
    artifact_id: i64,
    upstream: &str,
    soak_millis: i64,
    now: i64,
) -> Result<Option<VerificationRow>, crate::db::QueryError> {
    let rows = db::artifacts::verifications(db.pool(), artifact_id).await?;
    Ok(rows
        .into_iter()
        .filter(|row| row.environment == upstream && healthy_for(row, now) >= soak_millis)
        .max_by_key(|row| (healthy_for(row, now), row.serving, row.release_id)))
}

/// An admin of the app rejects artifact `artifact_id` with a reason
/// (audited): no fixed environment deploys it again without an override.
pub async fn reject(
    db: &Db,
    caller: &Caller,
    artifact_id: i64,
    reason: &str,
    now: i64,
) -> Result<ArtifactStatus, PromotionError> {
    let pool = db.pool();
    let not_found = || PromotionError::NotFound(format!("artifact {artifact_id} does not exist"));
    let (app_id, _) = db::artifacts::get(pool, artifact_id)
        .await?
        .ok_or_else(not_found)?;
    let app = db::apps::get(pool, app_id).await?.ok_or_else(not_found)?;
    if !caller.me.can(Role::Viewer, Some(&app.name)) {
        return Err(not_found());
    }
    if !caller.me.can(Role::Admin, Some(&app.name)) {
        return Err(PromotionError::Forbidden(format!(
            "rejecting an artifact needs the admin role on {}; {} does not have it",
            app.name, caller.me.name
        )));
    }
    let reason = reason.trim();
    if reason.chars().count() < 5 {
        return Err(PromotionError::Invalid(
            "a rejection needs a reason (at least 5 characters); people held by it read it".into(),
        ));
    }
    let mut tx = db.begin().await?;
    if !db::artifacts::reject(&mut *tx, artifact_id, &caller.me.name, reason, now).await? {
        return Err(PromotionError::Conflict(format!(
            "artifact {artifact_id} is already rejected"
        )));
    }
    db::audit::record(
        &mut *tx,
        &NewEntry {
            actor: &caller.me.name,
            action: "artifact.reject",
            target: &format!("{} artifact {artifact_id}", app.name),
            reason: Some(reason),
            source_ip: caller.source_ip.as_deref(),
            detail: "{}",
        },
        now,
    )
    .await?;
    crate::db::commit(tx).await?;
    tracing::info!(artifact = artifact_id, by = %caller.me.name, "artifact rejected");
    status(db, artifact_id, None, now)
        .await?
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::schema::{BranchMatch, Requirement};

    const MINUTE: i64 = 60_000;

    fn production(soak_minutes: u64) -> StackEntry {
        let mut entry: StackEntry = serde_json::from_value(serde_json::json!({
            "env": "production",
            "branches": { "exact": "master" },
            "targets": ["local"],
            "url": null,
            "namespace": null,
            "ttl_seconds": null,
            "approval": null,
            "variables": {},
        }))
        .expect("entry");
        entry.requires = Some(Requirement {
            verified_in: "staging".into(),
            soak_seconds: soak_minutes * 60,
        });
        entry
    }

    fn in_staging(minutes: i64, serving: bool) -> Verification {
        Verification {
            environment: "staging".into(),
            release_id: 1,
            run_id: 1,
            healthy_since: 0,
            healthy_for_millis: minutes * MINUTE,
            serving,
        }
    }

    #[test]
    fn an_artifact_passes_after_its_soak_upstream_and_only_there() {
        let entry = production(30);
        let passed = gate(9, &entry, &[in_staging(31, true)], None).expect("gate");
        assert_eq!(passed.state, GateState::Passed);
        assert!(
            passed.reason.contains("31m (30m required)"),
            "{}",
            passed.reason
        );
        // Still soaking: when it opens is said.
        let soaking = gate(9, &entry, &[in_staging(12, true)], None).expect("gate");
        assert_eq!(soaking.state, GateState::Soaking);
        assert_eq!(soaking.opens_at, Some(30 * MINUTE));
        assert!(
            soaking.reason.contains("12m of the 30m"),
            "{}",
            soaking.reason
        );
        assert!(
            soaking.reason.contains("released in 18m"),
            "{}",
            soaking.reason
        );
        // Replaced before the soak ended: it will not get there by waiting.
        let cut = gate(9, &entry, &[in_staging(12, false)], None).expect("gate");
        assert_eq!(cut.state, GateState::Unverified);
        assert!(
            cut.reason.contains("before it was replaced"),
            "{}",
            cut.reason
        );
        // Elsewhere does not count.
        let mut elsewhere = in_staging(600, true);
        elsewhere.environment = "qa".into();
        let unverified = gate(9, &entry, &[elsewhere], None).expect("gate");
        assert_eq!(unverified.state, GateState::Unverified);
        assert!(
            unverified
                .reason
                .contains("not been live and healthy in staging")
        );
    }

    #[test]
    fn a_rejection_holds_every_fixed_environment_and_no_preview() {
        let rejection = ArtifactRejection {
            by: "ada".into(),
            reason: "corrupts carts".into(),
            at: 0,
        };
        let rejected = gate(
            9,
            &production(0),
            &[in_staging(600, true)],
            Some(&rejection),
        )
        .expect("gate");
        assert_eq!(rejected.state, GateState::Rejected);
        assert!(rejected.reason.contains("rejected by ada: corrupts carts"));
        let mut open = production(0);
        open.requires = None;
        assert_eq!(
            gate(9, &open, &[], Some(&rejection)).map(|g| g.state),
            Some(GateState::Rejected)
        );
        assert_eq!(gate(9, &open, &[], None), None, "nothing asked");
        let mut preview = production(30);
        preview.branches = BranchMatch::Glob("*".into());
        assert_eq!(gate(9, &preview, &[], Some(&rejection)), None);
    }

    #[test]
    fn no_soak_means_verified_once_live_and_healthy() {
        let gate = gate(9, &production(0), &[in_staging(0, true)], None).expect("gate");
        assert_eq!(gate.state, GateState::Passed);
    }

    #[test]
    fn a_declared_image_is_one_reference_and_nothing_more() {
        let digest = format!("registry.example.com/shop@sha256:{}", "a".repeat(64));
        assert_eq!(
            image_reference(&digest).map(str::to_string),
            Ok(digest.clone())
        );
        assert!(image_reference("shop:1.2.3").is_ok());
        for hostile in [
            "",
            "x, securityContext: {privileged: true}",
            "x\n  privileged: true",
            "x #",
            "{a: b}",
            "\"quoted\"",
            "-flag",
            "x y",
        ] {
            assert!(image_reference(hostile).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn soaks_read_as_people_write_them() {
        assert_eq!(human(40_000), "40s");
        assert_eq!(human(30 * MINUTE), "30m");
        assert_eq!(human(65 * MINUTE), "1h 5m");
        assert_eq!(human(90_500), "1m 31s");
    }
}
