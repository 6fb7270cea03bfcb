//! The lanes: each app's way to production read as one line — its previews,
//! then the environments of its fixed stack entries in stack order, with
//! the commits between them — and the "needs attention" strip above them.
//! Built for the home page at thousands of apps: only the page's apps have
//! their configurations read, their environments and last runs come in one
//! query each, and the distances between commits are remembered by git.

use std::collections::HashMap;

use app::dto::{
    AppLane, Attention, AttentionItem, EnvironmentSummary, LANES_PER_PAGE, LaneGap, LaneQuery,
    LaneStop, LanesPage, LastRun, PREVIEWS_PER_LANE, Role, RunState,
};
use app::port::Caller;

use crate::clock::Clock;
use crate::db::{self, Db, QueryError};
use crate::error::{Classified, Kind};
use crate::git::GitStore;
use crate::gitops::schema::{AppConfig, BranchMatch};
use crate::visibility::Visible;

/// What the lanes read: the database, the mirrors (for distances between
/// commits) and the clock (for freezes).
#[derive(Clone, Copy)]
pub struct Lanes<'a> {
    pub db: &'a Db,
    pub git: &'a GitStore,
    pub clock: &'a Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("database: {0}")]
    Db(#[from] QueryError),
}

impl Classified for LaneError {
    fn kind(&self) -> Kind {
        match self {
            LaneError::Db(error) => error.kind(),
        }
    }
}

/// Searches longer than this are cut (an app name is far shorter).
const SEARCH_MAX_CHARS: usize = 100;

/// How far back the strip looks for failed runs.
const FAILURES_WITHIN_MILLIS: i64 = 14 * 24 * 3600 * 1000;

/// Items of each kind the strip lists, at most.
const ATTENTION_ITEMS: usize = 8;

impl Lanes<'_> {
    /// One page of the lanes of the apps the caller may see whose name
    /// contains the search.
    pub async fn page(&self, caller: &Caller, query: &LaneQuery) -> Result<LanesPage, LaneError> {
        let search: String = query
            .search
            .as_deref()
            .unwrap_or_default()
            .trim()
            .chars()
            .take(SEARCH_MAX_CHARS)
            .collect();
        let needle = search.to_lowercase();
        let per_page = LANES_PER_PAGE as usize;
        let wanted = query.page.unwrap_or(1).max(1) as usize;
        // A grant on every app pages in SQL (no list of every name per
        // request); a scoped caller's few apps are filtered here.
        let (shown, total): (Vec<(i64, String)>, usize) =
            match Visible::of(self.db, caller, Role::Viewer).await? {
                Visible::Every => {
                    let pool = self.db.pool();
                    let total = db::apps::count_active(pool, &needle).await?;
                    let total = usize::try_from(total).unwrap_or(0);
                    let page = wanted.min(total.div_ceil(per_page).max(1));
                    let offset = i64::try_from((page - 1) * per_page).unwrap_or(i64::MAX);
                    let apps =
                        db::apps::page_active(pool, &needle, offset, i64::from(LANES_PER_PAGE))
                            .await?;
                    (apps, total)
                }
                Visible::Only(apps) => {
                    let matching: Vec<_> = apps
                        .into_iter()
                        .filter(|(_, name)| name.to_lowercase().contains(&needle))
                        .collect();
                    let total = matching.len();
                    let page = wanted.min(total.div_ceil(per_page).max(1));
                    let shown = matching
                        .into_iter()
                        .skip((page - 1) * per_page)
                        .take(per_page)
                        .collect();
                    (shown, total)
                }
            };
        let pages = total.div_ceil(per_page).max(1);
        let page = wanted.min(pages);
        let shown = &shown[..];
        let lanes = self
            .lanes_of(caller, shown, Some(PREVIEWS_PER_LANE))
            .await?;
        Ok(LanesPage {
            lanes,
            matching: u32::try_from(total).unwrap_or(u32::MAX),
            page: u32::try_from(page).unwrap_or(u32::MAX),
            pages: u32::try_from(pages).unwrap_or(u32::MAX),
            search,
        })
    }

    /// One app's lane with every preview (its page); `None`: no such app
    /// (or not one the caller may see).
    pub async fn lane(&self, caller: &Caller, app: &str) -> Result<Option<AppLane>, LaneError> {
        let Some(row) = db::apps::find_active_by_name(self.db.pool(), app).await? else {
            return Ok(None);
        };
        if !caller.me.can(Role::Viewer, Some(app)) {
            return Ok(None);
        }
        Ok(self
            .lanes_of(caller, &[(row.id, row.name)], None)
            .await?
            .pop())
    }

    /// The lanes of `apps` (id, name), in that order.
    async fn lanes_of(
        &self,
        caller: &Caller,
        apps: &[(i64, String)],
        preview_cap: Option<usize>,
    ) -> Result<Vec<AppLane>, LaneError> {
        let ids: Vec<i64> = apps.iter().map(|(id, _)| *id).collect();
        let pool = self.db.pool();
        let rows = db::apps::by_ids(pool, &ids).await?;
        // A configuration that does not read back leaves the lane in the
        // environments' own order; the config banner says what is wrong.
        let apps_by_name: HashMap<String, (String, Option<AppConfig>)> = rows
            .into_iter()
            .map(|row| {
                let config = crate::configs::stored(&row).ok();
                (row.name, (row.source_url, config))
            })
            .collect();
        let mut environments: HashMap<String, Vec<EnvironmentSummary>> = HashMap::new();
        for env in
            db::environments::list_active_of(self.db, db::environments::Which::Apps(&ids)).await?
        {
            let env = redact(caller, env);
            environments.entry(env.app.clone()).or_default().push(env);
        }
        let mut latest: HashMap<(String, String), LastRun> = db::runs::latest_of_apps(pool, &ids)
            .await?
            .into_iter()
            .map(|row| ((row.app.clone(), row.environment.clone()), last_run(row)))
            .collect();
        let now = self.clock.now_millis();
        let mut lanes = Vec::with_capacity(apps.len());
        for (_, name) in apps {
            let (source, config) = match apps_by_name.get(name) {
                Some((source, config)) => (source.as_str(), config.as_ref()),
                None => continue,
            };
            let envs = environments.remove(name).unwrap_or_default();
            // Run errors are for testers and above, like a run's page.
            let errors_shown = caller.me.can(Role::Tester, Some(name));
            let stops = envs.into_iter().map(|env| {
                let last_run = latest
                    .remove(&(env.app.clone(), env.name.clone()))
                    .map(|run| LastRun {
                        error: run.error.filter(|_| errors_shown),
                        ..run
                    });
                let frozen = config
                    .and_then(|config| config.stack.iter().find(|e| e.env == env.stack_entry))
                    .and_then(|entry| crate::approvals::policy::freeze_now(Some(entry), now))
                    .map(|freeze| freeze.describe());
                LaneStop {
                    environment: env,
                    last_run,
                    frozen,
                }
            });
            let mut lane = arrange(name, config, stops.collect(), preview_cap);
            let promotable = caller.me.can(Role::Developer, Some(name));
            for gap in &mut lane.gaps {
                gap.promotable = promotable;
                self.measure(source, &lane.stages, gap).await;
            }
            lanes.push(lane);
        }
        Ok(lanes)
    }

    /// Counts the commits between the two stages of `gap`, when both have
    /// a commit live and the mirror knows them.
    async fn measure(&self, source: &str, stages: &[LaneStop], gap: &mut LaneGap) {
        let commit = |name: &str| {
            stages
                .iter()
                .find(|stop| stop.environment.name == name)
                .and_then(|stop| stop.environment.commit_sha.clone())
        };
        let (Some(from), Some(to)) = (commit(&gap.from), commit(&gap.to)) else {
            return;
        };
        match self.git.distance(source, &from, &to).await {
            Ok(distance) => {
                gap.ahead = Some(u32::try_from(distance.ahead).unwrap_or(u32::MAX));
                gap.behind = Some(u32::try_from(distance.behind).unwrap_or(u32::MAX));
                gap.same_code = distance.same_tree;
            }
            Err(error) => {
                tracing::debug!(%error, from, to, "lane gap not measured");
            }
        }
    }

    /// What needs someone now, across the apps the caller may see: the
    /// queries are limited to those apps before their limits apply, so
    /// other apps' trouble never crowds out the caller's own.
    pub async fn attention(&self, caller: &Caller) -> Result<Attention, LaneError> {
        let pool = self.db.pool();
        let visible = Visible::of(self.db, caller, Role::Viewer).await?;
        let ids = visible.ids();
        let flagged: Vec<EnvironmentSummary> = db::environments::list_active_of(
            self.db,
            db::environments::Which::NeedingAttention {
                limit: 500,
                apps: ids.as_deref(),
            },
        )
        .await?
        .into_iter()
        .map(|env| redact(caller, env))
        .collect();
        // Why a run failed is for testers and above, like a run's page.
        let reason = |app: &str, text: Option<&str>, otherwise: &str| match text {
            Some(text) if caller.me.can(Role::Tester, Some(app)) => first_line(text),
            _ => otherwise.to_string(),
        };
        let since = self.clock.now_millis() - FAILURES_WITHIN_MILLIS;
        let mut failed: Vec<(i64, AttentionItem)> =
            db::runs::failed_and_latest(pool, since, 100, ids.as_deref())
                .await?
                .into_iter()
                .map(|run| {
                    let at = run.finished_at.unwrap_or(run.created_at);
                    let item = AttentionItem {
                        detail: reason(&run.app, run.error.as_deref(), "the run failed"),
                        app: run.app,
                        environment: run.environment,
                        run_id: Some(run.id),
                    };
                    (at, item)
                })
                .collect();
        for env in flagged.iter().filter(|env| {
            matches!(
                env.state,
                app::dto::EnvironmentState::Failed | app::dto::EnvironmentState::PartiallyFailed
            )
        }) {
            if !failed
                .iter()
                .any(|(_, item)| item.app == env.app && item.environment == env.name)
            {
                let item = AttentionItem {
                    app: env.app.clone(),
                    environment: env.name.clone(),
                    detail: reason(&env.app, env.state_detail.as_deref(), "the deploy failed"),
                    run_id: None,
                };
                failed.push((env.updated_at, item));
            }
        }
        // Newest first, whichever kind.
        failed.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let item = |env: &EnvironmentSummary, detail: String| AttentionItem {
            app: env.app.clone(),
            environment: env.name.clone(),
            detail,
            run_id: None,
        };
        let drifted = flagged
            .iter()
            .filter_map(|env| Some(item(env, first_line(env.drift.as_deref()?))))
            .take(ATTENTION_ITEMS)
            .collect();
        let pinned = flagged
            .iter()
            .filter_map(|env| {
                let pin = env.pin.as_ref()?;
                Some(item(
                    env,
                    format!("pinned by {}: {}", pin.pinned_by, first_line(&pin.reason)),
                ))
            })
            .take(ATTENTION_ITEMS)
            .collect();
        Ok(Attention {
            failed: failed
                .into_iter()
                .take(ATTENTION_ITEMS)
                .map(|(_, item)| item)
                .collect(),
            waiting_for_you: self.waiting_among(caller, &visible).await?,
            drifted,
            pinned,
        })
    }

    /// Held runs and open change requests the caller may decide on and has
    /// not: the policy accepts the caller's role, the caller did not bring
    /// the change (unless the policy allows it), a fork's waits for an
    /// admin, and a run held only by a freeze waits for no one.
    pub async fn waiting_for(&self, caller: &Caller) -> Result<u32, LaneError> {
        let visible = Visible::of(self.db, caller, Role::Viewer).await?;
        self.waiting_among(caller, &visible).await
    }

    async fn waiting_among(&self, caller: &Caller, visible: &Visible) -> Result<u32, LaneError> {
        use crate::approvals::policy::{for_change_request, lowest_role};
        use crate::gitops::schema::ApprovalPolicy;
        let pool = self.db.pool();
        let ids = visible.ids();
        let candidates: Vec<db::approvals::Undecided> =
            db::approvals::undecided(pool, caller.user_id, ids.as_deref())
                .await?
                .into_iter()
                .filter(|item| item.decided == 0 && caller.me.can(Role::Viewer, Some(&item.app)))
                .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut app_ids: Vec<i64> = candidates.iter().map(|item| item.app_id).collect();
        app_ids.sort_unstable();
        app_ids.dedup();
        let configs: HashMap<i64, AppConfig> = db::apps::by_ids(pool, &app_ids)
            .await?
            .into_iter()
            .filter_map(|row| Some((row.id, crate::configs::stored(&row).ok()?)))
            .collect();
        let mut count = 0u32;
        for item in candidates {
            let config = configs.get(&item.app_id);
            let policy: Option<ApprovalPolicy> = if item.from_fork != 0 {
                Some(ApprovalPolicy::one_admin())
            } else if let Some(entry) = &item.stack_entry {
                config
                    .and_then(|config| config.stack.iter().find(|e| e.env == *entry))
                    .and_then(|entry| entry.approval.clone())
            } else {
                let entry = config.and_then(|config| {
                    crate::gitops::stack::entry_for(config, item.target_branch.as_deref()?)
                });
                Some(for_change_request(entry))
            };
            let Some(policy) = policy else {
                continue;
            };
            let brought =
                [item.author_user_id, item.pushed_by_user_id].contains(&Some(caller.user_id));
            if caller.me.can(lowest_role(&policy), Some(&item.app))
                && (policy.self_approval || !brought)
            {
                count += 1;
            }
        }
        Ok(count)
    }
}

/// What a caller may read of an environment: drift details name objects
/// and fields (admins of the app only); why it is in its state — often a
/// failure's text — is for testers and up, like a run's page.
pub fn redact(caller: &Caller, mut env: EnvironmentSummary) -> EnvironmentSummary {
    if !caller.me.can(Role::Admin, Some(&env.app)) {
        env.drift = env
            .drift
            .map(|_| "drift found; an admin can see the details".into());
    }
    // A failed deploy that left the old version serving reads "live"
    // with the failure in its detail: the detail goes whatever the state.
    if !caller.me.can(Role::Tester, Some(&env.app)) {
        env.state_detail = None;
    }
    env
}

fn last_run(row: db::runs::LatestRow) -> LastRun {
    LastRun {
        id: row.id,
        state: row.state,
        commit_sha: row.commit_sha,
        created_at: row.created_at,
        finished_at: row.finished_at,
        error: row
            .error
            .filter(|_| row.state == RunState::Failed)
            .map(|error| first_line(&error)),
    }
}

/// The first line of a text, within a lane's width of reading.
fn first_line(text: &str) -> String {
    app::format::first_line(text).unwrap_or_default()
}

/// Puts one app's environments in lane order: the fixed entries' in stack
/// order, previews failed first, then those on their way, then the newest.
fn arrange(
    app: &str,
    config: Option<&AppConfig>,
    stops: Vec<LaneStop>,
    preview_cap: Option<usize>,
) -> AppLane {
    let position = |stop: &LaneStop| {
        config
            .and_then(|config| {
                config
                    .stack
                    .iter()
                    .position(|entry| entry.env == stop.environment.stack_entry)
            })
            .unwrap_or(usize::MAX)
    };
    let fixed = |stop: &LaneStop| match config {
        Some(config) => config.stack.iter().any(|entry| {
            entry.env == stop.environment.name && matches!(entry.branches, BranchMatch::Exact(_))
        }),
        None => stop.environment.name == stop.environment.stack_entry,
    };
    let (mut stages, mut previews): (Vec<LaneStop>, Vec<LaneStop>) =
        stops.into_iter().partition(fixed);
    stages.sort_by_key(position);
    previews.sort_by(|a, b| {
        let rank = |stop: &LaneStop| (!stop.failed(), !stop.on_its_way());
        rank(a)
            .cmp(&rank(b))
            .then(b.environment.updated_at.cmp(&a.environment.updated_at))
            .then(a.environment.name.cmp(&b.environment.name))
    });
    let total = previews.len();
    if let Some(cap) = preview_cap {
        previews.truncate(cap);
    }
    let gaps = stages
        .windows(2)
        .map(|pair| LaneGap {
            from: pair[0].environment.name.clone(),
            to: pair[1].environment.name.clone(),
            ahead: None,
            behind: None,
            from_branch: pair[0].environment.branch.clone(),
            to_branch: pair[1].environment.branch.clone(),
            promotable: false,
            same_code: false,
        })
        .collect();
    AppLane {
        app: app.to_string(),
        more_previews: u32::try_from(total - previews.len()).unwrap_or(u32::MAX),
        previews,
        stages,
        gaps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::dto::EnvironmentState;

    fn stop(name: &str, entry: &str, state: EnvironmentState, updated_at: i64) -> LaneStop {
        LaneStop {
            environment: EnvironmentSummary {
                app: "shop".into(),
                name: name.into(),
                stack_entry: entry.into(),
                branch: Some(name.into()),
                state,
                commit_sha: None,
                pipeline_sha: None,
                url: None,
                updated_at,
                commit_message: None,
                commit_author: None,
                state_detail: None,
                drift: None,
                pin: None,
            },
            last_run: None,
            frozen: None,
        }
    }

    fn names(stops: &[LaneStop]) -> Vec<&str> {
        stops.iter().map(|s| s.environment.name.as_str()).collect()
    }

    /// Without a configuration the fixed environments are those named
    /// after their entry; previews come failed first, then those on their
    /// way, then the newest, and the cap leaves a count of the rest.
    #[test]
    fn a_lane_lists_failed_previews_first_and_keeps_stages_apart() {
        use EnvironmentState::*;
        let mut failed_run = stop("preview-b", "preview", Live, 5);
        failed_run.last_run = Some(LastRun {
            id: 9,
            state: RunState::Failed,
            commit_sha: "c".into(),
            created_at: 5,
            finished_at: Some(6),
            error: Some("tests failed".into()),
        });
        let lane = arrange(
            "shop",
            None,
            vec![
                stop("staging", "staging", Live, 1),
                stop("preview-a", "preview", Live, 9),
                failed_run,
                stop("preview-c", "preview", Pending, 2),
                stop("preview-d", "preview", Failed, 1),
                stop("production", "production", Live, 1),
                stop("preview-e", "preview", Live, 3),
            ],
            Some(4),
        );
        assert_eq!(names(&lane.stages), ["staging", "production"]);
        assert_eq!(
            names(&lane.previews),
            ["preview-b", "preview-d", "preview-c", "preview-a"]
        );
        assert_eq!(lane.more_previews, 1);
        assert_eq!(lane.gaps.len(), 1);
        assert_eq!(
            (lane.gaps[0].from.as_str(), lane.gaps[0].to.as_str()),
            ("staging", "production")
        );
    }

    #[test]
    fn a_failure_is_told_in_one_bounded_line() {
        assert_eq!(first_line("step test failed\nexit 1"), "step test failed");
        let long = "x".repeat(500);
        assert_eq!(first_line(&long).chars().count(), 200);
    }
}
