//! The server's side of the dashboard port: every read and action of the
//! dashboard and of the REST API, each deciding from the [`Caller`] whether
//! it is allowed. Lists show only the apps the caller may see.

use app::dto::{
    AppOverview, ApprovalInbox, Attention, AuditEntry, AuditFilter, ChangeRequestDetail,
    ChangeRequestSummary, ChannelSummary, ClusterRegistration, ClusterSummary, CommitReleases,
    ConfigIssue, ConfigStatus, EnvironmentSummary, LaneQuery, LanesPage, NewChangeRequest,
    NewFeedback, ObjectDiff, PendingApproval, PromoteRequest, Promotion, RUNS_PER_PAGE,
    ReleaseComparison, ReleaseFilter, ReleaseSummary, Review, ReviewAction, Role, RollbackAccepted,
    RollbackRequest, RunDetail, RunQuery, RunState, RunSummary, RunsPage, SettingSource, Settings,
    ShareLink, SharedPreview, TesterFeedback,
};
use app::port::{
    AdminPort, Caller, ChangeRequestsPort, ClustersPort, IdentityPort, PortError, ReleasesPort,
    RunsPort, SharingPort, StackPort,
};
use async_trait::async_trait;

use crate::approvals::{self, ApprovalOutcome};
use crate::change_requests::{self, ChangeRequestError};
use crate::db;
use crate::error::{Classified, Kind};
use crate::state::App;

fn port_error(error: db::QueryError) -> PortError {
    port_error_of(&error)
}

/// Keeps the items of apps where the caller has at least `role`.
fn visible<T>(caller: &Caller, role: Role, items: Vec<T>, app_of: impl Fn(&T) -> &str) -> Vec<T> {
    items
        .into_iter()
        .filter(|item| caller.me.can(role, Some(app_of(item))))
        .collect()
}

#[async_trait]
impl IdentityPort for App {
    async fn identify(
        &self,
        parts: axum::http::request::Parts,
    ) -> Result<Option<Caller>, PortError> {
        let principal = crate::http::principal::authenticate(&parts, self)
            .await
            .map_err(|e| port_error_of(&e))?;
        Ok(principal.map(|p| p.caller()))
    }
}

#[async_trait]
impl StackPort for App {
    async fn environments(&self, caller: &Caller) -> Result<Vec<EnvironmentSummary>, PortError> {
        let all = db::environments::list_active(&self.db)
            .await
            .map_err(port_error)?;
        Ok(visible(caller, Role::Viewer, all, |e| &e.app)
            .into_iter()
            .map(|e| crate::lanes::redact(caller, e))
            .collect())
    }

    async fn lanes_page(&self, caller: &Caller, query: LaneQuery) -> Result<LanesPage, PortError> {
        Ok(self.lanes().page(caller, &query).await?)
    }

    async fn attention(&self, caller: &Caller) -> Result<Attention, PortError> {
        Ok(self.lanes().attention(caller).await?)
    }

    async fn waiting_for_me(&self, caller: &Caller) -> Result<u32, PortError> {
        Ok(self.lanes().waiting_for(caller).await?)
    }

    async fn app_overview(
        &self,
        caller: &Caller,
        app: String,
    ) -> Result<Option<AppOverview>, PortError> {
        let pool = self.db.pool();
        let Some(row) = db::apps::find_active_by_name(pool, &app)
            .await
            .map_err(port_error)?
        else {
            return Ok(None);
        };
        caller.require(Role::Viewer, Some(&app))?;
        let environments: Vec<EnvironmentSummary> =
            db::environments::list_active_of(&self.db, db::environments::Which::Apps(&[row.id]))
                .await
                .map_err(port_error)?
                .into_iter()
                .map(|e| crate::lanes::redact(caller, e))
                .collect();
        let mut change_requests = Vec::new();
        for cr in db::change_requests::list(pool)
            .await
            .map_err(port_error)?
            .into_iter()
            .filter(|cr| cr.app_id == row.id && cr.is_active())
        {
            if let Some(detail) = self.change_request(caller, cr.id).await? {
                change_requests.push(detail);
            }
        }
        let lane = self.lanes().lane(caller, &app).await?;
        let promotion = match crate::configs::stored(&row) {
            Ok(config) => Some(
                crate::promotion::graph(&self.db, &row, &config, self.clock.now_millis())
                    .await
                    .map_err(port_error)?,
            ),
            Err(_) => None,
        };
        let on_clusters: Vec<String> = crate::configs::stored(&row)
            .map(|config| {
                config
                    .stack
                    .iter()
                    .filter(|e| e.cluster_targets().next().is_some())
                    .map(|e| e.env.clone())
                    .collect()
            })
            .unwrap_or_default();
        let resource_trees = environments
            .iter()
            .filter(|e| on_clusters.contains(&e.stack_entry))
            .map(|e| e.name.clone())
            .collect();
        Ok(Some(AppOverview {
            app,
            source_url: crate::git::redact_source(&row.source_url),
            resource_trees,
            environments,
            lane,
            change_requests,
            runs: db::runs::recent_of_app(pool, row.id, 20)
                .await
                .map_err(port_error)?
                .into_iter()
                .map(|run| RunSummary {
                    // Why a run failed is for testers and up, as on its page.
                    reason: run
                        .reason
                        .filter(|_| caller.me.can(Role::Tester, Some(&run.app))),
                    ..run
                })
                .collect(),
            charts: Some(
                crate::charts::of_app(&self.db, row.id, self.clock.now_millis())
                    .await
                    .map_err(port_error)?,
            ),
            promotion,
        }))
    }

    async fn resources(
        &self,
        caller: &Caller,
        app: String,
        env: String,
        query: app::dto::ResourceQuery,
    ) -> Result<app::dto::ResourcePage, PortError> {
        caller.require(Role::Viewer, Some(&app))?;
        let (row, env_row, config) = self.environment_of(&app, &env).await?;
        let scope = crate::delivery::deploy::tree::EnvScope {
            env: &env_row,
            app: &row.name,
            config: &config,
        };
        let allowed = crate::delivery::deploy::tree::Allowed {
            inspect: caller.me.can(Role::Admin, Some(&app)),
            read_logs: caller.me.can(Role::Developer, Some(&app)),
        };
        Ok(crate::delivery::deploy::tree::page(&self.delivery(), &scope, &query, allowed).await?)
    }

    async fn resource(
        &self,
        caller: &Caller,
        app: String,
        env: String,
        reference: app::dto::ResourceRef,
    ) -> Result<app::dto::ResourceDetail, PortError> {
        // The live object may hold more than developers see.
        caller.require(Role::Admin, Some(&app))?;
        let (row, env_row, config) = self.environment_of(&app, &env).await?;
        let scope = crate::delivery::deploy::tree::EnvScope {
            env: &env_row,
            app: &row.name,
            config: &config,
        };
        Ok(crate::delivery::deploy::tree::detail(&self.delivery(), &scope, &reference).await?)
    }

    async fn pod_log(
        &self,
        caller: &Caller,
        app: String,
        env: String,
        pod: String,
        query: app::dto::PodLogQuery,
    ) -> Result<app::dto::PodLog, PortError> {
        // An app's logs are its developers' (and admins'): the pod is looked
        // up in this environment's namespace only.
        caller.require(Role::Developer, Some(&app))?;
        let (row, env_row, config) = self.environment_of(&app, &env).await?;
        let scope = crate::delivery::deploy::tree::EnvScope {
            env: &env_row,
            app: &row.name,
            config: &config,
        };
        Ok(crate::delivery::deploy::tree::pod_log(
            &self.delivery(),
            &scope,
            &pod,
            query.cluster.as_deref(),
            query.container.as_deref(),
        )
        .await?)
    }
}

impl App {
    /// An app's live environment by name, with the app's configuration.
    async fn environment_of(
        &self,
        app: &str,
        env: &str,
    ) -> Result<
        (
            db::apps::AppRow,
            db::environments::EnvRow,
            crate::gitops::schema::AppConfig,
        ),
        PortError,
    > {
        let pool = self.db.pool();
        let row = db::apps::find_active_by_name(pool, app)
            .await
            .map_err(port_error)?
            .ok_or_else(|| PortError::NotFound(format!("there is no app {app}")))?;
        let env_row = db::environments::find_by_name(pool, row.id, env)
            .await
            .map_err(port_error)?
            .filter(|e| e.destroyed_at.is_none())
            .ok_or_else(|| PortError::NotFound(format!("{app} has no environment {env}")))?;
        let config = crate::configs::stored(&row)
            .map_err(|e| PortError::Failed(format!("{app}: the stored configuration: {e}")))?;
        Ok((row, env_row, config))
    }

    /// What a ledger entry deployed: its run's artifact and its standing.
    async fn artifact_of_release(
        &self,
        release: &ReleaseSummary,
    ) -> Result<Option<app::dto::ArtifactStatus>, PortError> {
        let Some(run_id) = release.run_id else {
            return Ok(None);
        };
        crate::promotion::status_of_run(&self.db, run_id, self.clock.now_millis())
            .await
            .map_err(port_error)
    }
}

#[async_trait]
impl RunsPort for App {
    async fn runs(&self, caller: &Caller, query: RunQuery) -> Result<RunsPage, PortError> {
        let pool = self.db.pool();
        let query = query.cleaned();
        let state = match query.state.as_deref() {
            None => None,
            Some(text) => Some(RunState::parse(text).ok_or_else(|| {
                let known: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
                PortError::Refused(format!(
                    "state {text:?} is not a run state; one of: {}",
                    known.join(", ")
                ))
            })?),
        };
        let app_ids = crate::visibility::Visible::of(&self.db, caller, Role::Viewer)
            .await
            .map_err(port_error)?
            .ids();
        let per_page = i64::from(RUNS_PER_PAGE);
        let mut runs = db::runs::page(
            pool,
            &db::runs::Filter {
                app_ids: app_ids.as_deref(),
                app: query.app.as_deref(),
                environment: query.environment.as_deref(),
                state,
                branch: query.branch.as_deref(),
                actor: query.actor.as_deref(),
                before: query.before,
            },
            per_page + 1,
        )
        .await
        .map_err(port_error)?;
        let older = (runs.len() as i64 > per_page).then(|| {
            runs.truncate(per_page as usize);
            runs.last().map(|r| r.id)
        });
        for run in &mut runs {
            // Why a run failed is for testers and above, like its page.
            if !caller.me.can(Role::Tester, Some(&run.app)) {
                run.reason = None;
            }
        }
        Ok(RunsPage {
            runs,
            older: older.flatten(),
        })
    }

    async fn pending_approvals(&self, caller: &Caller) -> Result<Vec<PendingApproval>, PortError> {
        let all = db::runs::list_waiting_for_approval(self.db.pool())
            .await
            .map_err(port_error)?;
        let mut pending = visible(caller, Role::Viewer, all, |p| &p.app);
        for held in &mut pending {
            held.promotion =
                crate::promotion::status_of_run(&self.db, held.run_id, self.clock.now_millis())
                    .await
                    .map_err(port_error)?;
        }
        Ok(pending)
    }

    async fn run_detail(&self, caller: &Caller, id: i64) -> Result<Option<RunDetail>, PortError> {
        let pool = self.db.pool();
        let Some((run, extra)) = db::runs::detail(pool, id).await.map_err(port_error)? else {
            return Ok(None);
        };
        // Testers read test results; steps and errors too (logs need more).
        caller.require(Role::Tester, Some(&run.app))?;
        let steps = db::steps::list(pool, id).await.map_err(port_error)?;
        let mut warnings = Vec::new();
        if let Some(warning) = crate::sandbox::warning(self.sandbox.status()) {
            warnings.push(warning);
        }
        if let Some(weaker) = crate::sandbox::limits_warning(self.sandbox.status()) {
            warnings.push(weaker);
        }
        for step in steps
            .iter()
            .filter(|s| s.network.as_deref() == Some("host"))
        {
            warnings.push(format!(
                "step {} ran on the host's network (network: host in pipeline.yaml): it could reach every service on this machine's loopback",
                step.name
            ));
        }
        Ok(Some(RunDetail {
            run,
            pipeline_sha: extra.pipeline_sha,
            commit_message: extra.commit_message,
            commit_author: extra.commit_author,
            trigger: extra.trigger,
            error: extra.error,
            steps,
            reports: db::steps::reports_for_run(pool, id)
                .await
                .map_err(port_error)?,
            from_fork: extra.from_fork,
            warnings,
            attempts: db::run_attempts::of_run(pool, id)
                .await
                .map_err(port_error)?,
            uncovered: extra.uncovered,
            pushed_by: extra.pushed_by,
            artifact: db::artifacts::of_run(pool, id).await.map_err(port_error)?,
            outputs: db::artifacts::outputs_of_run(pool, id)
                .await
                .map_err(port_error)?,
            promotion: crate::promotion::status_of_run(&self.db, id, self.clock.now_millis())
                .await
                .map_err(port_error)?,
            rollout: db::runs::rollout_state(pool, id)
                .await
                .map_err(port_error)?
                .and_then(|json| serde_json::from_str(&json).ok()),
        }))
    }

    async fn step_log(
        &self,
        caller: &Caller,
        run_id: i64,
        step_id: i64,
    ) -> Result<Option<String>, PortError> {
        let pool = self.db.pool();
        let Some((run, _)) = db::runs::detail(pool, run_id).await.map_err(port_error)? else {
            return Ok(None);
        };
        caller.require(Role::Developer, Some(&run.app))?;
        let steps = db::steps::list(pool, run_id).await.map_err(port_error)?;
        if !steps.iter().any(|step| step.id == step_id) {
            return Ok(None);
        }
        let chunks = db::steps::log_chunks(pool, step_id, 0)
            .await
            .map_err(port_error)?;
        Ok(Some(chunks.into_iter().map(|(_, text)| text).collect()))
    }

    async fn review_run(
        &self,
        caller: &Caller,
        id: i64,
        review: Review,
    ) -> Result<String, PortError> {
        let comment = review.comment.as_deref().filter(|c| !c.trim().is_empty());
        let outcome = match review.action {
            ReviewAction::Approve => {
                approvals::approve(&self.approvals(), caller, id, comment).await?
            }
            ReviewAction::Reject => {
                approvals::reject(&self.approvals(), caller, id, comment).await?
            }
            ReviewAction::Override => {
                approvals::override_hold(&self.approvals(), caller, id, comment.unwrap_or(""))
                    .await?
            }
            ReviewAction::Close | ReviewAction::Feedback => {
                return Err(PortError::Refused(
                    "a held run is approved, rejected or overridden".into(),
                ));
            }
        };
        Ok(match outcome {
            ApprovalOutcome::Released { .. } => "released: the run is queued".into(),
            ApprovalOutcome::Waiting {
                approvals,
                required,
            } => format!("waiting: {approvals} of {required} approvals"),
            ApprovalOutcome::Rejected => "rejected".into(),
        })
    }

    async fn run_diff(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<Option<Vec<ObjectDiff>>, PortError> {
        let Some((run, _)) = db::runs::detail(self.db.pool(), id)
            .await
            .map_err(port_error)?
        else {
            return Ok(None);
        };
        // Manifests are the admins' (they may hold more than developers see).
        caller.require(Role::Admin, Some(&run.app))?;
        // Bad manifests are the admin's to read and fix (Invalid); a
        // cluster that does not answer is Unavailable.
        Ok(crate::delivery::deploy::drift::diff_for_run(&self.delivery(), id).await?)
    }

    async fn rerun(&self, caller: &Caller, id: i64) -> Result<i64, PortError> {
        Ok(crate::jobs::rerun::rerun(self, caller, id).await?)
    }

    async fn rollout_run(
        &self,
        caller: &Caller,
        id: i64,
        action: String,
    ) -> Result<String, PortError> {
        crate::runs::rollout::command(&self.db, caller, id, &action).await?;
        Ok(match action.as_str() {
            "promote" => format!("Run #{id}'s canary goes on."),
            "pause" => format!("Run #{id}'s canary holds where it is until promoted."),
            _ => {
                format!("Run #{id}'s canary is aborted: every request goes to the stable version.")
            }
        })
    }

    async fn cancel_run(&self, caller: &Caller, id: i64) -> Result<String, PortError> {
        use crate::runs::cancel::{Cancelled, cancel};
        Ok(match cancel(&self.db, caller, id).await? {
            Cancelled::Now => format!("Run #{id} is cancelled."),
            Cancelled::Requested => {
                format!(
                    "Run #{id} is asked to stop: its step is stopped and the run ends cancelled."
                )
            }
        })
    }
}

#[async_trait]
impl ChangeRequestsPort for App {
    async fn change_requests(
        &self,
        caller: &Caller,
    ) -> Result<Vec<ChangeRequestSummary>, PortError> {
        let all = db::change_requests::list(self.db.pool())
            .await
            .map_err(port_error)?;
        visible(caller, Role::Viewer, all, |c| &c.app)
            .iter()
            .map(|row| row.summary().map_err(port_error))
            .collect()
    }

    async fn change_request_files(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<app::dto::ChangeRequestFiles, PortError> {
        Ok(change_requests::files(&self.change_request_service(), caller, id).await?)
    }

    async fn change_request(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<Option<ChangeRequestDetail>, PortError> {
        match change_requests::detail(&self.change_request_service(), caller, id).await {
            Ok(mut detail) => {
                detail.share_links = crate::sharing::links(&self.sharing(), caller, id).await?;
                Ok(Some(detail))
            }
            Err(ChangeRequestError::NotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn approval_inbox(&self, caller: &Caller) -> Result<ApprovalInbox, PortError> {
        let active = db::change_requests::list(self.db.pool())
            .await
            .map_err(port_error)?
            .into_iter()
            .filter(|cr| cr.is_active() && caller.me.can(Role::Viewer, Some(&cr.app)));
        let mut change_requests = Vec::new();
        for cr in active {
            change_requests.push(
                change_requests::detail(&self.change_request_service(), caller, cr.id).await?,
            );
        }
        Ok(ApprovalInbox {
            change_requests,
            runs: self.pending_approvals(caller).await?,
        })
    }

    async fn open_change_request(
        &self,
        caller: &Caller,
        request: NewChangeRequest,
    ) -> Result<ChangeRequestSummary, PortError> {
        let row = change_requests::open(&self.change_request_service(), caller, request).await?;
        row.summary().map_err(port_error)
    }

    async fn request_choices(
        &self,
        caller: &Caller,
        app: String,
    ) -> Result<app::dto::RequestChoices, PortError> {
        use crate::visibility::Visible;
        use app::dto::CHOICES_MAX;
        let pool = self.db.pool();
        let apps = match Visible::of(&self.db, caller, Role::Developer)
            .await
            .map_err(port_error)?
        {
            Visible::Every => db::apps::page_active(pool, "", 0, CHOICES_MAX as i64)
                .await
                .map_err(port_error)?,
            Visible::Only(apps) => apps.into_iter().take(CHOICES_MAX).collect(),
        };
        let app = app.trim();
        let mut branches = Vec::new();
        if caller.me.can(Role::Developer, Some(app))
            && let Some(row) = db::apps::find_active_by_name(pool, app)
                .await
                .map_err(port_error)?
        {
            branches = db::branch_heads::list(pool, row.id)
                .await
                .map_err(port_error)?
                .into_keys()
                .take(CHOICES_MAX)
                .collect();
        }
        Ok(app::dto::RequestChoices {
            apps: apps.into_iter().map(|(_, name)| name).collect(),
            branches,
        })
    }

    async fn review_change_request(
        &self,
        caller: &Caller,
        id: i64,
        review: Review,
    ) -> Result<ChangeRequestSummary, PortError> {
        let comment = review.comment.as_deref().filter(|c| !c.trim().is_empty());
        let row = match review.action {
            ReviewAction::Approve => {
                change_requests::approve(&self.change_request_service(), caller, id, comment)
                    .await?
            }
            ReviewAction::Reject => {
                change_requests::reject(&self.change_request_service(), caller, id, comment).await?
            }
            ReviewAction::Override => {
                change_requests::override_policy(
                    &self.change_request_service(),
                    caller,
                    id,
                    comment.unwrap_or(""),
                )
                .await?
            }
            ReviewAction::Close => {
                change_requests::close(&self.change_request_service(), caller, id).await?
            }
            ReviewAction::Feedback => {
                change_requests::feedback(&self.change_request_service(), caller, id, comment)
                    .await?
            }
        };
        row.summary().map_err(port_error)
    }

    async fn change_request_diff(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<Option<Vec<ObjectDiff>>, PortError> {
        let Some(cr) = db::change_requests::get(self.db.pool(), id)
            .await
            .map_err(port_error)?
        else {
            return Ok(None);
        };
        // Manifests are the admins'.
        caller.require(Role::Admin, Some(&cr.app))?;
        Ok(crate::delivery::deploy::drift::diff_for_change_request(&self.delivery(), id).await?)
    }
}

#[async_trait]
impl ReleasesPort for App {
    async fn releases(
        &self,
        caller: &Caller,
        filter: ReleaseFilter,
    ) -> Result<Vec<ReleaseSummary>, PortError> {
        let mut conn = self.db.acquire().await.map_err(port_error)?;
        let page = db::releases::list(&mut conn, &filter)
            .await
            .map_err(port_error)?;
        drop(conn);
        let mut page = visible(caller, Role::Viewer, page, |r| &r.app);
        for release in &mut page {
            release.artifact = self.artifact_of_release(release).await?;
        }
        Ok(page)
    }

    async fn release(&self, caller: &Caller, id: i64) -> Result<Option<ReleaseSummary>, PortError> {
        let mut conn = self.db.acquire().await.map_err(port_error)?;
        let release = db::releases::get(&mut conn, id).await.map_err(port_error)?;
        drop(conn);
        let Some(mut release) = release else {
            return Ok(None);
        };
        caller.require(Role::Viewer, Some(&release.app))?;
        release.artifact = self.artifact_of_release(&release).await?;
        if release.state == app::dto::ReleaseState::Live {
            release.soak =
                crate::delivery::ledger::stable::progress(&self.delivery(), release.id).await?;
        }
        // Released by an override: what its run was held for went live
        // with no approval covering it.
        if let Some(run_id) = release.run_id
            && release.approvals.iter().any(|a| a.decision == "override")
        {
            release.uncovered = db::runs::detail(self.db.pool(), run_id)
                .await
                .map_err(port_error)?
                .and_then(|(_, extra)| extra.uncovered)
                .filter(|uncovered| uncovered.total > 0);
        }
        Ok(Some(release))
    }

    async fn rollback(
        &self,
        caller: &Caller,
        app: String,
        request: RollbackRequest,
    ) -> Result<RollbackAccepted, PortError> {
        Ok(
            crate::delivery::ledger::rollback::request(&self.delivery(), caller, &app, request)
                .await?,
        )
    }

    async fn promote(
        &self,
        caller: &Caller,
        app: String,
        request: PromoteRequest,
    ) -> Result<Promotion, PortError> {
        Ok(crate::delivery::ledger::rollback::promote(
            &self.delivery(),
            caller,
            &app,
            &request.environment,
            request.reason.as_deref(),
        )
        .await?)
    }

    async fn mark_release_stable(
        &self,
        caller: &Caller,
        id: i64,
        reason: Option<String>,
    ) -> Result<ReleaseSummary, PortError> {
        Ok(
            crate::delivery::ledger::stable::mark(&self.delivery(), caller, id, reason.as_deref())
                .await?,
        )
    }

    async fn compare_releases(
        &self,
        caller: &Caller,
        app: String,
        from: i64,
        to: i64,
    ) -> Result<ReleaseComparison, PortError> {
        Ok(
            crate::delivery::ledger::pinpoint::compare(&self.delivery(), caller, &app, from, to)
                .await?,
        )
    }

    async fn commit_releases(
        &self,
        caller: &Caller,
        app: String,
        sha: String,
    ) -> Result<CommitReleases, PortError> {
        Ok(
            crate::delivery::ledger::pinpoint::landings(&self.delivery(), caller, &app, &sha)
                .await?,
        )
    }

    async fn delivery_metrics(
        &self,
        caller: &Caller,
        query: app::dto::DeliveryQuery,
    ) -> Result<Vec<app::dto::DeliveryMetrics>, PortError> {
        use crate::delivery::metrics::{DEFAULT_DAYS, MAX_DAYS, for_range};
        if let Some(app) = &query.app {
            caller.require(Role::Viewer, Some(app))?;
        }
        let days = query.days.unwrap_or(DEFAULT_DAYS);
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(PortError::Refused(format!(
                "days: {days} is not a range of 1 to {MAX_DAYS} days"
            )));
        }
        let environment = query
            .environment
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .unwrap_or("production");
        let may_see = |app: &str| caller.me.can(Role::Viewer, Some(app));
        Ok(for_range(
            &self.db,
            (query.app.as_deref(), &may_see),
            environment,
            days,
            self.clock.now_millis(),
        )
        .await
        .map_err(port_error)?)
    }
}

#[async_trait]
impl ClustersPort for App {
    async fn clusters(&self, caller: &Caller) -> Result<Vec<ClusterSummary>, PortError> {
        caller.require(Role::Admin, None)?;
        db::clusters::list(self.db.pool()).await.map_err(port_error)
    }

    async fn register_cluster(
        &self,
        caller: &Caller,
        registration: ClusterRegistration,
    ) -> Result<ClusterSummary, PortError> {
        Ok(self
            .cluster_registry()
            .register(caller, &registration)
            .await?)
    }

    async fn check_cluster(
        &self,
        caller: &Caller,
        name: String,
    ) -> Result<ClusterSummary, PortError> {
        Ok(self.cluster_registry().check(caller, &name).await?)
    }
}

#[async_trait]
impl SharingPort for App {
    async fn share_change_request(&self, caller: &Caller, id: i64) -> Result<ShareLink, PortError> {
        Ok(crate::sharing::create(&self.sharing(), caller, id).await?)
    }

    async fn revoke_share_link(&self, caller: &Caller, id: i64) -> Result<(), PortError> {
        Ok(crate::sharing::revoke(&self.sharing(), caller, id).await?)
    }

    async fn extend_share_link(&self, caller: &Caller, id: i64) -> Result<ShareLink, PortError> {
        Ok(crate::sharing::extend(&self.sharing(), caller, id).await?)
    }

    async fn shared_preview(
        &self,
        visitor: Option<&Caller>,
        token: String,
    ) -> Result<SharedPreview, PortError> {
        Ok(crate::sharing::open(&self.sharing(), &token, visitor).await?)
    }

    async fn leave_shared_feedback(
        &self,
        visitor: Option<&Caller>,
        token: String,
        feedback: NewFeedback,
    ) -> Result<TesterFeedback, PortError> {
        Ok(crate::sharing::leave_feedback(&self.sharing(), &token, visitor, feedback).await?)
    }
}

#[async_trait]
impl AdminPort for App {
    async fn channels(&self, caller: &Caller) -> Result<Vec<ChannelSummary>, PortError> {
        Ok(crate::notify::channels::summaries(&self.notifier(), caller).await?)
    }

    async fn test_channel(&self, caller: &Caller, name: String) -> Result<(), PortError> {
        Ok(crate::notify::channels::send_test(&self.notifier(), caller, &name).await?)
    }

    async fn audit_log(
        &self,
        caller: &Caller,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEntry>, PortError> {
        caller.require(Role::Viewer, None)?;
        db::audit::list(self.db.pool(), &filter.normalized())
            .await
            .map_err(port_error)
    }

    async fn settings(&self, caller: &Caller) -> Result<Settings, PortError> {
        caller.require(Role::Admin, None)?;
        Ok(Settings {
            version: env!("CARGO_PKG_VERSION").to_string(),
            database_backend: self.db.backend().name().to_string(),
            data_dir: self.config.data_dir.display().to_string(),
            bind: self.config.bind.to_string(),
            sources: self
                .config
                .sources
                .iter()
                .map(|(key, value, origin)| SettingSource {
                    key: (*key).to_string(),
                    value: value.clone(),
                    source: origin.to_string(),
                })
                .collect(),
            sandbox: crate::sandbox::describe(self.sandbox.status()),
            sandbox_warning: crate::sandbox::warning(self.sandbox.status()),
            limits_warning: crate::sandbox::limits_warning(self.sandbox.status()),
            blocked_networks: crate::sandbox::unreachable_networks(
                &self.config.runner_blocked_networks,
            ),
            replica: self.replica.id.clone(),
            singletons: crate::jobs::election::holders(self)
                .await
                .map_err(port_error)?,
        })
    }

    async fn register_channel(
        &self,
        caller: &Caller,
        form: app::dto::ChannelForm,
    ) -> Result<(), PortError> {
        let events = form
            .events
            .iter()
            .map(|name| {
                crate::notify::Event::parse(name)
                    .ok_or_else(|| PortError::Refused(format!("{name:?} is not an event")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The form knows no per-app rules nor wording: replacing a
        // channel from it would silently drop those.
        let existing = crate::notify::channels::registered(&self.notifier(), caller).await?;
        if existing.iter().any(|channel| channel.name == form.name) {
            return Err(PortError::Conflict(format!(
                "a channel named {} exists: remove it first, or change it with PUT /api/v1/channels/{} (which keeps what the form cannot show)",
                form.name, form.name
            )));
        }
        let settings = crate::notify::ChannelSettings {
            url_secret: form.url_secret,
            signing_secret: form.signing_secret,
            mentions: form.mentions,
            rules: if events.is_empty() {
                Vec::new()
            } else {
                vec![crate::notify::Rule {
                    events,
                    ..Default::default()
                }]
            },
            to: form.to,
            from: form.from,
            templates: Default::default(),
        };
        Ok(crate::notify::channels::put(
            &self.notifier(),
            caller,
            &form.name,
            &form.kind,
            &settings,
        )
        .await?)
    }

    async fn remove_channel(&self, caller: &Caller, name: String) -> Result<(), PortError> {
        Ok(crate::notify::channels::remove(&self.notifier(), caller, &name).await?)
    }

    async fn secrets(&self, caller: &Caller) -> Result<Vec<app::dto::SecretEntry>, PortError> {
        Ok(crate::secrets_admin::names(&self.db, caller)
            .await?
            .into_iter()
            .map(|(name, app)| app::dto::SecretEntry { name, app })
            .collect())
    }

    async fn set_secret(
        &self,
        caller: &Caller,
        name: String,
        value: String,
        app: Option<String>,
    ) -> Result<(), PortError> {
        Ok(
            crate::secrets_admin::put(&self.db, &self.vault, caller, &name, &value, app.as_deref())
                .await?,
        )
    }

    async fn delete_secret(
        &self,
        caller: &Caller,
        name: String,
        app: Option<String>,
    ) -> Result<(), PortError> {
        Ok(crate::secrets_admin::delete(&self.db, caller, &name, app.as_deref()).await?)
    }

    async fn api_tokens(&self, caller: &Caller) -> Result<Vec<app::dto::ApiToken>, PortError> {
        Ok(crate::auth::tokens::list(&self.db, caller)
            .await?
            .into_iter()
            .map(|token| app::dto::ApiToken {
                id: token.id,
                name: token.name,
                user: token.user,
                role: token.role,
                app: token.app,
                created_at: token.created_at,
                expires_at: token.expires_at,
                revoked_at: token.revoked_at,
                last_used_at: token.last_used_at,
            })
            .collect())
    }

    async fn create_api_token(
        &self,
        caller: &Caller,
        request: app::dto::ApiTokenRequest,
    ) -> Result<app::dto::CreatedApiToken, PortError> {
        let request = crate::auth::tokens::TokenRequest {
            name: &request.name,
            role: &request.role,
            app: request.app.as_deref(),
            expires: request.expires.as_deref(),
        };
        let created = crate::auth::tokens::create(&self.db, caller, &request).await?;
        Ok(app::dto::CreatedApiToken {
            id: created.id,
            token: created.token,
            expires_at: created.expires_at,
        })
    }

    async fn revoke_api_token(&self, caller: &Caller, id: i64) -> Result<(), PortError> {
        Ok(crate::auth::tokens::revoke(&self.db, caller, id).await?)
    }

    /// The pipeline repo is the admins' business: others learn only that
    /// there are problems.
    async fn config_status(&self, caller: &Caller) -> Result<ConfigStatus, PortError> {
        let latest = db::config_revisions::latest(self.db.pool())
            .await
            .map_err(port_error)?;
        let mut issues: Vec<ConfigIssue> = match &latest {
            Some(revision) => serde_json::from_str(&revision.issues)
                .map_err(|e| PortError::Failed(e.to_string()))?,
            None => Vec::new(),
        };
        // A repo that cannot be fetched is a problem of the app's `source`.
        for (app, error) in db::apps::fetch_errors(self.db.pool())
            .await
            .map_err(port_error)?
        {
            issues.push(ConfigIssue {
                file: format!("apps/{app}/app.yaml"),
                line: None,
                column: None,
                field: "source".into(),
                message: error,
            });
        }
        let admin = caller.me.can(Role::Admin, None);
        if !admin && !issues.is_empty() {
            issues = vec![ConfigIssue {
                file: String::new(),
                line: None,
                column: None,
                field: String::new(),
                message: format!("{} problem(s); an admin can see the details", issues.len()),
            }];
        }
        Ok(ConfigStatus {
            pipeline_repo: if admin {
                self.config
                    .pipeline_repo
                    .as_deref()
                    .map(crate::git::redact_source)
            } else {
                None
            },
            pipeline_branch: self.config.pipeline_branch.clone(),
            pipeline_sha: latest.as_ref().map(|r| r.pipeline_sha.clone()),
            state: latest.as_ref().map(|r| r.state.clone()),
            issues,
            checked_at: latest.as_ref().map(|r| r.created_at),
        })
    }
}

/// The dashboard's answer to a domain error, decided by its kind alone
/// (the REST API's is `ApiError::of`): the text of an internal failure goes
/// to the log, never to the page.
pub fn port_error_of(error: &impl Classified) -> PortError {
    let message = error.to_string();
    match error.kind() {
        Kind::NotFound => PortError::NotFound(message),
        Kind::Invalid => PortError::Refused(message),
        Kind::Conflict => PortError::Conflict(message),
        Kind::Gone => PortError::Gone(message),
        Kind::Forbidden | Kind::Unauthenticated => PortError::Forbidden(message),
        Kind::Unavailable => PortError::Unavailable(message),
        Kind::Internal => PortError::Failed(message),
    }
}

macro_rules! answered_by_kind {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for PortError {
            fn from(error: $error) -> Self {
                port_error_of(&error)
            }
        }
    )*};
}

answered_by_kind!(
    crate::auth::AuthError,
    crate::clusters::ClusterError,
    crate::delivery::deploy::drift::DriftError,
    crate::notify::channels::ChannelError,
    crate::delivery::ledger::LedgerError,
    crate::sharing::ShareError,
    crate::change_requests::ChangeRequestError,
    crate::approvals::ApprovalError,
    crate::lanes::LaneError,
    crate::runs::cancel::CancelError,
    crate::runs::rollout::RolloutError,
    crate::jobs::rerun::RerunError,
    crate::secrets_admin::AdminError,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the cause")]
    struct Failure(Kind);

    impl Classified for Failure {
        fn kind(&self) -> Kind {
            self.0
        }
    }

    /// The port's answer to each kind agrees with the REST API's status
    /// (`http::error`): what the person can act on is shown, failures are
    /// not.
    #[test]
    fn the_port_answers_each_kind_like_the_api() {
        let answer = |kind| port_error_of(&Failure(kind));
        assert!(matches!(answer(Kind::NotFound), PortError::NotFound(_)));
        assert!(matches!(answer(Kind::Invalid), PortError::Refused(_)));
        assert!(matches!(answer(Kind::Conflict), PortError::Conflict(_)));
        assert!(matches!(answer(Kind::Gone), PortError::Gone(_)));
        assert!(matches!(answer(Kind::Forbidden), PortError::Forbidden(_)));
        assert!(matches!(
            answer(Kind::Unauthenticated),
            PortError::Forbidden(_)
        ));
        assert!(matches!(
            answer(Kind::Unavailable),
            PortError::Unavailable(_)
        ));
        assert!(matches!(answer(Kind::Internal), PortError::Failed(_)));
    }
}
