//! Runs and their steps, test reports, held runs and what a run would
//! change on its clusters.

use super::*;

/// One pipeline run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunSummary {
    pub id: i64,
    pub app: String,
    pub environment: String,
    pub branch: String,
    pub commit_sha: String,
    pub state: RunState,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// When its first step started (`None`: it never started).
    #[serde(default)]
    pub started_at: Option<UnixMillis>,
    /// What started it: `push`, `hook`, `poll`, `change_request`,
    /// `rollback`, `promote`, …
    #[serde(default)]
    pub trigger: String,
    /// The first line of its commit's message (the author's words: shown,
    /// never trusted).
    #[serde(default)]
    pub commit_message: Option<String>,
    /// Who made it happen, as sign-in knows them: the admin who asked for a
    /// rollback or promotion, or the Gantry user a forge said pushed the
    /// commit. Never the commit's author line.
    #[serde(default)]
    pub actor: Option<String>,
    /// Why it ended without success, in one line (for testers and above).
    #[serde(default)]
    pub reason: Option<String>,
    /// The newer run that took its place, for a superseded run.
    #[serde(default)]
    pub superseded_by: Option<i64>,
}

/// Which runs the runs list shows: every filter is optional and exact
/// (names as the pages show them); `before` pages back from a run id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct RunQuery {
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    /// A run state (`failed`, `running`, `waiting_for_approval`, …).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    /// A person, as the Actor column shows them.
    #[serde(default)]
    pub actor: Option<String>,
    /// Only runs older than this run id (the `older` of the previous page).
    #[serde(default)]
    pub before: Option<i64>,
}

impl RunQuery {
    /// The query with blank filters dropped and the rest trimmed (a form
    /// sends every field, filled or not).
    pub fn cleaned(self) -> RunQuery {
        let clean = |field: Option<String>| {
            field
                .map(|text| text.trim().to_string())
                .filter(|text| !text.is_empty())
        };
        RunQuery {
            app: clean(self.app),
            environment: clean(self.environment),
            state: clean(self.state),
            branch: clean(self.branch),
            actor: clean(self.actor),
            before: self.before,
        }
    }

    /// The query as an address's query string, percent-encoded (empty for
    /// no filter): the runs page's links and the API's `Link` header.
    pub fn query_string(&self) -> String {
        let encode = crate::format::percent_encode;
        [
            ("app", self.app.as_deref().map(encode)),
            ("environment", self.environment.as_deref().map(encode)),
            ("state", self.state.as_deref().map(encode)),
            ("branch", self.branch.as_deref().map(encode)),
            ("actor", self.actor.as_deref().map(encode)),
            ("before", self.before.map(|b| b.to_string())),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| format!("{key}={v}")))
        .collect::<Vec<_>>()
        .join("&")
    }

    /// Whether any filter (paging apart) is set.
    pub fn is_filtered(&self) -> bool {
        [
            &self.app,
            &self.environment,
            &self.state,
            &self.branch,
            &self.actor,
        ]
        .iter()
        .any(|f| f.is_some())
    }
}

/// Runs a page of the runs list holds, at most.
pub const RUNS_PER_PAGE: u32 = 50;

/// One page of runs, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunsPage {
    pub runs: Vec<RunSummary>,
    /// Pass as `before` for the next (older) page; `None`: this is the last.
    pub older: Option<i64>,
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StepSummary {
    pub id: i64,
    pub position: i64,
    pub name: String,
    pub state: StepState,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// Bytes of output the step printed (stored up to the log limit).
    pub log_bytes: i64,
    pub log_truncated: bool,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    /// `host` when an admin let the step onto the host's network.
    #[serde(default)]
    pub network: Option<String>,
}

/// A failed test case from a JUnit report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TestCaseFailure {
    pub suite: String,
    pub case: String,
    pub message: String,
}

/// The totals of one JUnit report, failures listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TestReportSummary {
    /// The step that produced it.
    pub step: String,
    /// The report file, relative to the checkout.
    pub name: String,
    pub passed: i64,
    pub failed: i64,
    pub skipped: i64,
    pub failures: Vec<TestCaseFailure>,
}

/// One start of a run. A run whose replica died, lost the database or
/// restarted is taken over and resumes as its next attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunAttempt {
    /// 1 for the first start.
    pub attempt: i64,
    /// The replica (runner id) that ran it.
    pub replica: String,
    /// The position of the first step it ran, and that step's name.
    pub from_step: i64,
    pub from_step_name: Option<String>,
    pub started_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// Why it ended without ending the run.
    pub interrupted: Option<String>,
}

/// What a run builds: its app's source tree at the run's commit, built by
/// the pipeline commit (one artifact, whichever commit holds that tree).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunArtifact {
    pub id: i64,
    /// The git tree id of the app's files.
    pub source_tree: String,
    pub pipeline_sha: String,
}

/// One output a run's step declared through `$GANTRY_OUTPUTS` (masked as
/// the step's log is).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunOutput {
    pub name: String,
    pub value: String,
    /// The step that declared it last.
    pub step: String,
}

/// Everything the run page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunDetail {
    pub run: RunSummary,
    pub pipeline_sha: String,
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    pub trigger: String,
    pub error: Option<String>,
    pub steps: Vec<StepSummary>,
    pub reports: Vec<TestReportSummary>,
    /// The fork the commit comes from: built without secrets, after an
    /// admin allowed it.
    #[serde(default)]
    pub from_fork: Option<String>,
    /// What weakens this run's isolation, for a banner (sandboxing turned
    /// off, a step on the host's network).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Its starts, first first (more than one after a take-over).
    #[serde(default)]
    pub attempts: Vec<RunAttempt>,
    /// For a run held for approval: the commits it would take live that no
    /// approval covers yet (approving the run covers them).
    #[serde(default)]
    pub uncovered: Option<UncoveredCommits>,
    /// Who pushed its commit, where a forge said and the account maps to a
    /// Gantry user (never from commit metadata).
    #[serde(default)]
    pub pushed_by: Option<String>,
    /// What it builds (none for a rollback, or a run from before
    /// artifacts were recorded).
    #[serde(default)]
    pub artifact: Option<RunArtifact>,
    /// What its steps declared, by name (the run's own: two runs of one
    /// artifact may declare different things).
    #[serde(default)]
    pub outputs: Vec<RunOutput>,
    /// Its artifact's standing: where it was verified, whether it was
    /// rejected, what the environment requires of it.
    #[serde(default)]
    pub promotion: Option<super::ArtifactStatus>,
    /// Its deploy's canary, while it runs and once it ended.
    #[serde(default)]
    pub rollout: Option<RolloutView>,
}

/// A canary as its run page shows it, live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RolloutView {
    /// `running`, `paused` (by an admin), `waiting` (at a `pause: {}`, for
    /// an admin's promote), `promoted` or `aborted`.
    pub phase: String,
    /// The step it is at, from 1 (0: starting).
    pub step: u32,
    pub steps: u32,
    /// The canary's share of requests, in percent.
    pub weight: u8,
    /// What the current step does, in words.
    pub doing: String,
    /// Each analysis check so far: the canary's figures beside the stable
    /// version's, against the thresholds, and the verdict.
    pub checks: Vec<String>,
    /// Why it was aborted.
    pub reason: Option<String>,
    /// `canary`, `blue_green`, or empty for a rollout ring by ring.
    #[serde(default)]
    pub kind: String,
    /// A rollout ring by ring: each ring's targets and where it stands.
    #[serde(default)]
    pub rings: Vec<RingView>,
}

/// One ring of a rollout across clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RingView {
    pub targets: Vec<String>,
    /// `waiting`, `rolling out`, `soaking` (its pause and analysis before
    /// the next ring), `done`, `aborted`, `returned to stable` or
    /// `not reached`.
    pub state: String,
}

/// The commits a deployment would take live that no approval covers
/// (user guide, docs/src/approvals.md, "What an approval covers"), newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UncoveredCommits {
    /// How many there are (at least this many when `more`).
    pub total: i64,
    pub more: bool,
    /// The first hundred of them.
    pub commits: Vec<ChangelogCommit>,
    /// Set when the commit does not descend from what the environment
    /// runs (this commit): deploying it would go back (a rewind), which
    /// waits for an approval whatever covers it.
    #[serde(default)]
    pub rewinds_from: Option<String>,
}

/// A run held until enough people approve it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PendingApproval {
    pub run_id: i64,
    pub app: String,
    pub environment: String,
    pub commit_sha: String,
    pub requested_at: UnixMillis,
    /// The commits approving it covers that nothing covers yet.
    #[serde(default)]
    pub uncovered: Option<UncoveredCommits>,
    /// Its artifact: where it was verified and for how long, and what the
    /// environment requires of it (a hold's reason).
    #[serde(default)]
    pub promotion: Option<super::ArtifactStatus>,
}

/// What a run would change on one object of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ObjectDiff {
    pub target: String,
    /// `kind/name` (and namespace).
    pub object: String,
    /// `create`, `update`, `unchanged` or `delete` (prune).
    pub change: String,
    /// Unified diff of the object's YAML (Secrets redacted).
    pub diff: String,
}

/// A run that was just planned (a re-run): queued, or held for approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunStarted {
    pub run_id: i64,
}
