//! Running a finished run's commit again, on a developer's word: the same
//! planning as a push of that head, so approvals, freezes and forks hold
//! the new run exactly as they would hold a push — a re-run never deploys
//! what no approval covers. Only the branch's current head can be run
//! again: an older commit going live is a rollback, which has its own
//! guarded path (Releases). Audited here, whichever surface asked.

use app::dto::{Role, RunState};
use app::port::Caller;

use super::plan::{Cause, Planned, plan_head};
use crate::db;
use crate::error::{Classified, Kind};
use crate::state::App;

#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("{0}")]
    Forbidden(String),
    /// The run cannot be run again as it stands; the text says why and
    /// what to do instead.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Flow(#[from] super::FlowError),
    #[error("database: {0}")]
    Db(#[from] db::QueryError),
}

impl Classified for RerunError {
    fn kind(&self) -> Kind {
        match self {
            RerunError::NotFound(_) => Kind::NotFound,
            RerunError::Forbidden(_) => Kind::Forbidden,
            RerunError::Refused(_) => Kind::Conflict,
            RerunError::Flow(error) => error.kind(),
            RerunError::Db(error) => error.kind(),
        }
    }
}

/// Plans run `id`'s commit again for a developer (or above) of its app.
/// Returns the new run's id: queued, or held for approval like a push.
pub async fn rerun(app: &App, caller: &Caller, id: i64) -> Result<i64, RerunError> {
    let pool = app.db.pool();
    let run = db::runs::get(pool, id)
        .await?
        .ok_or(RerunError::NotFound(id))?;
    let app_name = db::apps::get(pool, run.app_id)
        .await?
        .map(|a| a.name)
        .ok_or(RerunError::NotFound(id))?;
    caller
        .require(Role::Developer, Some(&app_name))
        .map_err(|refused| RerunError::Forbidden(refused.to_string()))?;
    // An app gone from the pipeline repo deploys nothing more.
    if db::apps::find_active_by_name(pool, &app_name)
        .await?
        .is_none()
    {
        return Err(RerunError::Refused(format!(
            "{app_name} was removed from the pipeline repo: its runs do not run again"
        )));
    }
    if let Some(why) = refusal(&run) {
        return Err(RerunError::Refused(why));
    }
    let head = db::branch_heads::list(pool, run.app_id)
        .await?
        .remove(&run.branch);
    match head {
        Some(head) if head == run.commit_sha => {}
        Some(head) => {
            return Err(RerunError::Refused(format!(
                "{} has moved on to {}: re-run its newest run instead (to bring back an older commit, roll back on the Releases page)",
                run.branch,
                app::format::short_sha(&head)
            )));
        }
        None => {
            return Err(RerunError::Refused(format!(
                "the branch {} is gone",
                run.branch
            )));
        }
    }
    let cause = Cause::Rerun {
        by: caller.me.name.clone(),
    };
    let new_id = match plan_head(app, run.app_id, &run.branch, &run.commit_sha, &cause).await? {
        Planned::Run(new_id) => new_id,
        Planned::Nothing(why) => return Err(RerunError::Refused(why.to_string())),
    };
    crate::audit::record(
        &app.db,
        caller,
        "run.rerun",
        &format!("{app_name} run {id} as run {new_id}"),
        None,
    )
    .await?;
    Ok(new_id)
}

/// Why a run cannot be run again, judged on the run alone.
fn refusal(run: &db::runs::RunRow) -> Option<String> {
    let id = run.id;
    if run.trigger == crate::delivery::ledger::rollback::TRIGGER {
        return Some(format!(
            "run {id} is a rollback: roll back again on the Releases page"
        ));
    }
    match run.state {
        RunState::Failed | RunState::Cancelled | RunState::Succeeded => None,
        RunState::Superseded => Some(format!(
            "run {id} was superseded by a newer run of its environment: re-run that one"
        )),
        state => Some(format!(
            "run {id} is {state}: wait for it to end, or cancel it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: RunState, trigger: &str) -> db::runs::RunRow {
        db::runs::RunRow {
            id: 7,
            app_id: 1,
            environment_id: 1,
            branch: "master".into(),
            commit_sha: "4f2a9c1e0b7d4c3a2f1e0d9c8b7a6f5e4d3c2b1a".into(),
            pipeline_sha: "0000000000000000000000000000000000000001".into(),
            state,
            trigger: trigger.into(),
            attempt: 1,
            cancel_requested: 0,
            commit_message: None,
            commit_author: None,
            change_request_id: None,
            created_at: 0,
            from_fork: None,
            pushed_by_user_id: None,
            artifact_id: None,
            promoted_from: None,
        }
    }

    #[test]
    fn only_an_ended_run_of_a_push_runs_again() {
        for state in [RunState::Failed, RunState::Cancelled, RunState::Succeeded] {
            assert_eq!(refusal(&run(state, "push")), None, "{state}");
        }
        for state in [
            RunState::Queued,
            RunState::Running,
            RunState::WaitingForApproval,
        ] {
            let why = refusal(&run(state, "push")).unwrap_or_default();
            assert!(why.contains("wait for it to end"), "{state}: {why}");
        }
        let superseded = refusal(&run(RunState::Superseded, "push")).unwrap_or_default();
        assert!(superseded.contains("superseded"), "{superseded}");
        let rollback = refusal(&run(RunState::Failed, "rollback")).unwrap_or_default();
        assert!(rollback.contains("roll back again"), "{rollback}");
    }
}
