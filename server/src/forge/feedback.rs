//! Feedback on the forge, for apps whose app.yaml names their `forge`: a
//! commit status per stage of every run (`gantry/<env>` for the run,
//! `gantry/<env>/<step>` per step; pending, success, failure, linking to the
//! run), and one comment per forge change request — pipeline state, test
//! summary with failures, preview link, deploy state per target and the
//! logs link — created once and edited in place as its runs move. Each call
//! is retried a few times; `jobs::forge_report` sends them in the background, so a
//! forge that is down never holds a run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use app::dto::{ObjectDiff, RunState, StepState, TestReportSummary, TesterFeedback};
use tokio::sync::oneshot;

use super::api::{self, StatusState};
use crate::db;
use crate::delivery::Delivery;
use crate::gitops::schema::{AppConfig, ForgeConfig};
use crate::outbound::CallError;

/// Tries of one forge call (and, in `jobs::forge_report`, of one comment update).
pub(crate) const ATTEMPTS: u32 = 3;

/// What a run reports to: the forge settings and the API token.
struct Reporter {
    forge: ForgeConfig,
    token: String,
    client: reqwest::Client,
}

async fn reporter(app: &Delivery<'_>, app_name: &str) -> Option<Reporter> {
    let row = db::apps::find_active_by_name(app.db.pool(), app_name)
        .await
        .ok()??;
    let config: AppConfig = crate::configs::stored(&row).ok()?;
    let forge = config.forge?;
    let token = match app
        .secrets()
        .resolve(row.id, std::slice::from_ref(&forge.token_secret))
        .await
    {
        Ok(mut values) => values.pop()?.1,
        Err(error) => {
            tracing::warn!(app = %app_name, %error, "forge feedback skipped: no API token");
            return None;
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    Some(Reporter {
        forge,
        token,
        client,
    })
}

/// Why a change request's comment was not brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the forge did not say the new comment's id: {0}")]
    NoCommentId(serde_json::Value),
}

/// Sends with retries (1 s, 2 s); the answer, or the last error.
async fn send(reporter: &Reporter, call: &api::ApiCall) -> Result<serde_json::Value, CallError> {
    let mut outcome = api::send(&reporter.client, call).await;
    for attempt in 1..ATTEMPTS {
        if outcome.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        outcome = api::send(&reporter.client, call).await;
    }
    outcome
}

/// Sends one commit status (see `jobs::forge_report::status` for the order).
pub async fn send_status(
    app: &Delivery<'_>,
    run_id: i64,
    step: Option<String>,
    state: StatusState,
    description: String,
) {
    let Ok(Some((run, _))) = db::runs::detail(app.db.pool(), run_id).await else {
        return;
    };
    let Some(reporter) = reporter(app, &run.app).await else {
        return;
    };
    let context = match &step {
        Some(step) => format!("gantry/{}/{step}", run.environment),
        None => format!("gantry/{}", run.environment),
    };
    let call = api::status(
        &reporter.forge,
        &reporter.token,
        &run.commit_sha,
        state,
        &context,
        &description,
        &crate::notify::link(&app.notifier(), &format!("runs/{run_id}")),
    );
    if let Err(error) = send(&reporter, &call).await {
        tracing::warn!(run = run_id, %context, %error, "commit status not sent");
    }
}

/// The order of each run's statuses: every status waits for the one decided
/// before it for the same run. Only the newest waiter of a run is held here,
/// and only while it is not sent.
#[derive(Debug, Default)]
pub struct StatusOrder {
    newest: std::sync::Mutex<HashMap<i64, (u64, oneshot::Receiver<()>)>>,
    next: AtomicU64,
}

/// One status's place in its run's order.
#[derive(Debug)]
pub struct Turn {
    run_id: i64,
    number: u64,
    /// Resolves (or fails) once the status before is sent.
    before: Option<oneshot::Receiver<()>>,
    /// Dropped when this one is sent, which lets the next one go.
    _sent: oneshot::Sender<()>,
}

impl Turn {
    /// Waits for the status decided before this one: sent, or given up
    /// on, either way it is this one's turn.
    pub async fn wait(&mut self) {
        if let Some(before) = self.before.take() {
            let _ = before.await;
        }
    }
}

impl StatusOrder {
    /// The next place in `run_id`'s order, taken where the status is decided.
    pub fn take_turn(&self, run_id: i64) -> Turn {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let (sent, after) = oneshot::channel();
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        let before = newest
            .insert(run_id, (number, after))
            .map(|(_, receiver)| receiver);
        Turn {
            run_id,
            number,
            before,
            _sent: sent,
        }
    }

    /// Ends a turn: the next status of the run may go; a run with nothing
    /// waiting is forgotten.
    pub fn finish(&self, turn: Turn) {
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        if newest
            .get(&turn.run_id)
            .is_some_and(|(number, _)| *number == turn.number)
        {
            newest.remove(&turn.run_id);
        }
    }
}

/// The status words for a step's end.
pub fn step_state(state: StepState) -> Option<StatusState> {
    match state {
        StepState::Running => Some(StatusState::Pending),
        StepState::Succeeded | StepState::Skipped => Some(StatusState::Success),
        StepState::Failed | StepState::Cancelled => Some(StatusState::Failure),
        StepState::Pending => None,
    }
}

/// The status words for a run's end.
pub fn run_state(state: RunState) -> StatusState {
    match state {
        RunState::Succeeded => StatusState::Success,
        RunState::Queued | RunState::WaitingForApproval | RunState::Running => StatusState::Pending,
        RunState::Failed | RunState::Cancelled | RunState::Superseded => StatusState::Failure,
    }
}

/// Keeps change requests' forge comments up to date when testers leave
/// feedback (`sharing` asks through `CommentRefresh`, knowing no forge).
pub struct CommentEditor<'a> {
    pub delivery: Delivery<'a>,
    /// This replica's edits, one at a time (`Replica::forge_comments`).
    pub serial: &'a tokio::sync::Mutex<()>,
}

#[async_trait::async_trait]
impl crate::sharing::CommentRefresh for CommentEditor<'_> {
    async fn refresh(&self, run_id: i64) {
        if let Err(error) = update_comment(&self.delivery, self.serial, run_id).await {
            tracing::warn!(run = run_id, %error, "forge comment not updated with feedback");
        }
    }
}

/// Brings the request's comment up to date with run `run_id` (the edits
/// are serialized by `comments`, so the last one carries the newest state).
pub async fn update_comment(
    app: &Delivery<'_>,
    comments: &tokio::sync::Mutex<()>,
    run_id: i64,
) -> Result<(), FeedbackError> {
    // Serialized before reading: the last edit always carries the newest
    // state (an older task must not overwrite a newer body).
    let _serial = comments.lock().await;
    let pool = app.db.pool();
    let Some(row) = db::runs::get(pool, run_id).await? else {
        return Ok(());
    };
    // A run planned from a push that raced its request's webhook was not
    // tied to the request then: it is the request's if it builds its head.
    let cr_id = match row.change_request_id {
        Some(id) => id,
        None => {
            let requests = db::change_requests::active_from(pool, row.app_id, &row.branch).await?;
            let Some(cr) = requests
                .into_iter()
                .find(|cr| cr.head_sha.as_deref() == Some(row.commit_sha.as_str()))
            else {
                return Ok(());
            };
            db::runs::set_change_request(pool, run_id, cr.id).await?;
            cr.id
        }
    };
    let Some(cr) = db::change_requests::get(pool, cr_id).await? else {
        return Ok(());
    };
    let Some((run, extra)) = db::runs::detail(pool, run_id).await? else {
        return Ok(());
    };
    let Some(reporter) = reporter(app, &run.app).await else {
        return Ok(());
    };
    if cr.origin != reporter.forge.kind {
        return Ok(());
    }
    let reports = db::steps::reports_for_run(pool, run_id).await?;
    let steps = db::steps::list(pool, run_id).await?;
    let targets = db::deployments::targets_of_run(pool, run_id).await?;
    let env = db::environments::find_for_branch(pool, row.app_id, &row.branch).await?;
    // The manifest diff only where configured: developers read it, but it
    // can be long and some teams keep it to the dashboard.
    let diff = if reporter.forge.comment_diff {
        Some(
            crate::delivery::deploy::drift::diff_for_change_request(app, cr_id)
                .await
                .map_err(|e| crate::error::shown(&e))
                .and_then(|d| {
                    d.ok_or_else(|| "the target environment has not been deployed yet".to_string())
                }),
        )
    } else {
        None
    };
    let feedback: Vec<TesterFeedback> = db::sharing::feedback_of(pool, cr_id)
        .await?
        .into_iter()
        .map(crate::sharing::feedback_view)
        .collect();
    let body = comment_body(&CommentFacts {
        change_request: cr_id,
        run_id,
        state: run.state,
        error: extra.error.as_deref(),
        commit: &run.commit_sha,
        steps: &steps
            .iter()
            .map(|s| (s.name.clone(), s.state))
            .collect::<Vec<_>>(),
        reports: &reports,
        preview: env.as_ref().and_then(|e| e.url.as_deref()),
        targets: &targets,
        logs: &crate::notify::link(&app.notifier(), &format!("runs/{run_id}")),
        diff: diff
            .as_ref()
            .map(|d| d.as_ref().map(Vec::as_slice).map_err(String::as_str)),
        page: &crate::notify::link(&app.notifier(), &format!("change-requests/{cr_id}")),
        feedback: &feedback,
    });

    let (number, comment_id) = db::change_requests::forge_comment(pool, cr_id)
        .await?
        .unwrap_or((None, None));
    let Some(number) = number else {
        return Ok(());
    };
    match comment_id {
        Some(id) => {
            let call = api::update_comment(&reporter.forge, &reporter.token, number, &id, &body);
            send(&reporter, &call).await?;
        }
        None => {
            let call = api::create_comment(&reporter.forge, &reporter.token, number, &body);
            let answer = send(&reporter, &call).await?;
            let id = api::comment_id(&answer)
                .ok_or_else(|| FeedbackError::NoCommentId(answer.clone()))?;
            db::change_requests::set_forge_comment(pool, cr_id, &id).await?;
        }
    }
    Ok(())
}

/// What the comment says.
pub struct CommentFacts<'a> {
    pub change_request: i64,
    pub run_id: i64,
    pub state: RunState,
    pub error: Option<&'a str>,
    pub commit: &'a str,
    pub steps: &'a [(String, StepState)],
    pub reports: &'a [TestReportSummary],
    pub preview: Option<&'a str>,
    /// (target, state, detail) of the run's deployment.
    pub targets: &'a [(String, String, Option<String>)],
    pub logs: &'a str,
    /// The manifest diff of merging the request (`comment_diff: true`), or
    /// why there is none.
    pub diff: Option<Result<&'a [ObjectDiff], &'a str>>,
    /// The change request's page in the dashboard.
    pub page: &'a str,
    /// What testers said, oldest first.
    pub feedback: &'a [TesterFeedback],
}

/// Testers' verdicts, newest last; long comments cut, the page has them.
fn feedback_section(feedback: &[TesterFeedback]) -> String {
    const SHOWN: usize = 20;
    let mut out = String::from("\n**Tester feedback:**\n");
    let skipped = feedback.len().saturating_sub(SHOWN);
    if skipped > 0 {
        out.push_str(&format!("- … {skipped} earlier\n"));
    }
    for entry in &feedback[skipped..] {
        let mark = match entry.verdict.as_str() {
            "works" => "✅ works",
            "broken" => "❌ broken",
            _ => "📝 note",
        };
        let mut comment: String = entry.comment.replace(['\r', '\n'], " ");
        if comment.chars().count() > 300 {
            comment = comment.chars().take(300).collect::<String>() + "…";
        }
        let at = entry
            .commit_sha
            .as_deref()
            .map(|sha| format!(" on `{}`", &sha[..sha.len().min(7)]))
            .unwrap_or_default();
        let dash = if comment.is_empty() { "" } else { " — " };
        out.push_str(&format!("- {mark} · {}{at}{dash}{comment}\n", entry.author));
    }
    out
}

/// Forges cap a comment near 64 KiB (GitHub: 65,536 characters); the diff
/// gets what is left after the summary, the page has the whole of it.
const DIFF_BUDGET: usize = 50_000;

fn diff_section(diff: Result<&[ObjectDiff], &str>, page: &str) -> String {
    let objects = match diff {
        Err(why) => return format!("\n**Manifest diff:** not available — {why}\n"),
        Ok(objects) => objects,
    };
    // Developers and fork authors read the comment: a Secret, even
    // redacted to digests, stays on Gantry's admin-only page.
    let (secrets, changed): (Vec<&ObjectDiff>, Vec<&ObjectDiff>) = objects
        .iter()
        .filter(|d| d.change != "unchanged")
        .partition(|d| d.object.starts_with("secret/"));
    let secrets_note = match secrets.len() {
        0 => String::new(),
        n => format!(
            "{n} Secret{} would change too: not shown here; admins see it on [the change request's page]({page}).\n",
            if n == 1 { "" } else { "s" }
        ),
    };
    if changed.is_empty() {
        let what = if secrets.is_empty() {
            "no cluster object"
        } else {
            "no other cluster object"
        };
        return format!("\n**Manifest diff:** merging changes {what}\n{secrets_note}");
    }
    let mut out = format!(
        "\n<details><summary><b>Manifest diff:</b> merging changes {} object{}</summary>\n\n",
        changed.len(),
        if changed.len() == 1 { "" } else { "s" }
    );
    let mut used = 0;
    for (shown, object) in changed.iter().enumerate() {
        let block = format!(
            "`{} · {}` ({})\n```diff\n{}\n```\n",
            object.target,
            object.object,
            object.change,
            object.diff.trim_end()
        );
        if used + block.len() > DIFF_BUDGET {
            out.push_str(&format!(
                "… {} more object(s) not shown; the whole diff is on [the change request's page]({page}).\n",
                changed.len() - shown
            ));
            break;
        }
        used += block.len();
        out.push_str(&block);
    }
    out.push_str(&secrets_note);
    out.push_str("\n</details>\n");
    out
}

/// The comment's Markdown (snapshot-tested).
pub fn comment_body(facts: &CommentFacts<'_>) -> String {
    let short = &facts.commit[..facts.commit.len().min(7)];
    let mut out = format!(
        "### Gantry · run {} · `{short}`\n\n**Pipeline:** {}",
        facts.run_id, facts.state
    );
    if let Some(error) = facts.error {
        out.push_str(&format!(" — {error}"));
    }
    out.push_str("\n\n| step | state |\n|---|---|\n");
    for (name, state) in facts.steps {
        out.push_str(&format!("| {name} | {state} |\n"));
    }
    let (passed, failed, skipped) = facts.reports.iter().fold((0, 0, 0), |(p, f, s), r| {
        (p + r.passed, f + r.failed, s + r.skipped)
    });
    if !facts.reports.is_empty() {
        out.push_str(&format!(
            "\n**Tests:** {passed} passed, {failed} failed, {skipped} skipped\n"
        ));
        for report in facts.reports {
            for failure in &report.failures {
                out.push_str(&format!(
                    "- ✗ `{}::{}` — {}\n",
                    failure.suite, failure.case, failure.message
                ));
            }
        }
    }
    if let Some(preview) = facts.preview {
        out.push_str(&format!("\n**Preview:** {preview}\n"));
    }
    if !facts.targets.is_empty() {
        out.push_str("\n**Deploy:** ");
        out.push_str(
            &facts
                .targets
                .iter()
                .map(|(target, state, _)| format!("{target} {state}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
    }
    if !facts.feedback.is_empty() {
        out.push_str(&feedback_section(facts.feedback));
    }
    if let Some(diff) = facts.diff {
        out.push_str(&diff_section(diff, facts.page));
    }
    out.push_str(&format!(
        "\n[Logs]({})\n\n<!-- gantry:change-request:{} -->\n",
        facts.logs, facts.change_request
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::dto::TestCaseFailure;

    #[test]
    fn the_comment_says_where_the_request_stands() {
        let reports = vec![TestReportSummary {
            step: "unit".into(),
            name: "reports/junit.xml".into(),
            passed: 11,
            failed: 1,
            skipped: 0,
            failures: vec![TestCaseFailure {
                suite: "checkout".into(),
                case: "applies_discounts".into(),
                message: "expected 90, got 100".into(),
            }],
        }];
        let body = comment_body(&CommentFacts {
            change_request: 4,
            run_id: 42,
            state: RunState::Failed,
            error: Some("step unit failed (exit 1)"),
            commit: "4f2a9c1e0b",
            steps: &[
                ("build".into(), StepState::Succeeded),
                ("unit".into(), StepState::Failed),
                ("deploy".into(), StepState::Skipped),
            ],
            reports: &reports,
            preview: Some("http://preview-feature-x--shop.localhost:3000/"),
            targets: &[("local".into(), "succeeded".into(), None)],
            logs: "http://gantry.example.com/runs/42",
            diff: None,
            page: "http://gantry.example.com/change-requests/4",
            feedback: &[
                TesterFeedback {
                    id: 1,
                    author: "Lin".into(),
                    via_share_link: true,
                    verdict: "broken".into(),
                    comment: "The cart forgets\nthe coupon".into(),
                    commit_sha: Some("4f2a9c1e0b".into()),
                    created_at: 0,
                },
                TesterFeedback {
                    id: 2,
                    author: "ada".into(),
                    via_share_link: false,
                    verdict: "works".into(),
                    comment: String::new(),
                    commit_sha: None,
                    created_at: 0,
                },
            ],
        });
        insta::assert_snapshot!(body);
    }

    #[test]
    fn the_manifest_diff_is_shown_where_configured_and_kept_within_bounds() {
        let diffs = vec![
            ObjectDiff {
                target: "dev".into(),
                object: "deployment/web in shop-staging".into(),
                change: "update".into(),
                diff: "-    image: shop:1\n+    image: shop:2\n".into(),
            },
            ObjectDiff {
                target: "dev".into(),
                object: "service/web in shop-staging".into(),
                change: "unchanged".into(),
                diff: String::new(),
            },
            ObjectDiff {
                target: "dev".into(),
                object: "secret/db in shop-staging".into(),
                change: "update".into(),
                diff: "-  password: <redacted sha256:0a1b2c3d4e5f>\n+  password: <redacted sha256:99aa88bb77cc>\n".into(),
            },
        ];
        let facts = |diff| CommentFacts {
            change_request: 4,
            run_id: 42,
            state: RunState::Succeeded,
            error: None,
            commit: "4f2a9c1e0b",
            steps: &[],
            reports: &[],
            preview: None,
            targets: &[],
            logs: "http://gantry.example.com/runs/42",
            diff,
            page: "http://gantry.example.com/change-requests/4",
            feedback: &[],
        };
        let shown = comment_body(&facts(Some(Ok(&diffs))));
        // A Secret is counted, never shown, not even as digests.
        assert!(
            !shown.contains("redacted") && !shown.contains("secret/db"),
            "{shown}"
        );
        assert!(shown.contains("1 Secret would change too"), "{shown}");
        insta::assert_snapshot!(shown);
        let why = comment_body(&facts(Some(Err(
            "the target environment has not been deployed yet",
        ))));
        assert!(
            why.contains("**Manifest diff:** not available — the target environment"),
            "{why}"
        );
        let same = comment_body(&facts(Some(Ok(&diffs[1..2]))));
        assert!(same.contains("merging changes no cluster object"), "{same}");

        // Many large objects: the comment stays under the forges' limit and
        // points at the page.
        let big: Vec<ObjectDiff> = (0..40)
            .map(|i| ObjectDiff {
                target: "dev".into(),
                object: format!("configmap/c{i} in shop"),
                change: "update".into(),
                diff: "+ x\n".repeat(1_000),
            })
            .collect();
        let long = comment_body(&facts(Some(Ok(&big))));
        assert!(long.len() < 60_000, "{}", long.len());
        assert!(long.contains("more object(s) not shown"), "truncated");
        assert!(long.contains("(http://gantry.example.com/change-requests/4)"));
        assert!(
            long.trim_end().ends_with("-->"),
            "the marker survives truncation"
        );
    }

    #[tokio::test]
    async fn a_runs_statuses_go_in_the_order_they_were_decided() {
        let order = std::sync::Arc::new(StatusOrder::default());
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let turns: Vec<Turn> = (0..3).map(|_| order.take_turn(7)).collect();
        let other_run = order.take_turn(8);
        assert!(other_run.before.is_none(), "another run does not wait");
        // Started last first (this runtime polls tasks in spawn order):
        // each still waits for the one decided before it.
        let mut tasks = Vec::new();
        for (decided, mut turn) in turns.into_iter().enumerate().rev() {
            let (order, sent) = (order.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                if let Some(before) = turn.before.take() {
                    let _ = before.await;
                }
                sent.lock().unwrap().push(decided);
                order.finish(turn);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        order.finish(other_run);
        assert_eq!(*sent.lock().unwrap(), vec![0, 1, 2]);
        assert!(
            order.newest.lock().unwrap().is_empty(),
            "nothing is kept once sent"
        );
    }
}
