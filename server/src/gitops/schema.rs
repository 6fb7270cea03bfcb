//! The validated configuration of one app, as read from the pipeline repo
//! (`apps/<app>/app.yaml` + `apps/<app>/pipeline.yaml`, `apiVersion:
//! gantry.dev/v1`). Stored as JSON with the app; everything downstream
//! (planner, runner, deployer) reads these types, never the YAML.

use crate::error::Rejected;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::resources::{Resources, StepNetwork};

pub const API_VERSION: &str = "gantry.dev/v1";

/// The target name of the embedded process runtime.
pub const LOCAL_TARGET: &str = "local";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppConfig {
    pub name: String,
    /// Where the app's source lives: any git URL, or an absolute path.
    pub source: String,
    /// Matched in order; exact `branch` entries win over `branches` globs.
    pub stack: Vec<StackEntry>,
    pub pipeline: PipelineConfig,
    /// How approved change requests are merged.
    #[serde(default)]
    pub merge: MergeStrategy,
    /// Template for a commit's page on the forge (`{{ commit }}`), linked
    /// from release changelogs.
    #[serde(default)]
    pub commit_url: Option<String>,
    /// The forge Gantry reports commit statuses and change-request comments
    /// to, and merges forge requests through.
    #[serde(default)]
    pub forge: Option<ForgeConfig>,
    /// What the pipeline repo's admin file lets it do.
    #[serde(default)]
    pub guardrails: super::guardrails::Guardrails,
    /// The pipeline repo's health rules (the admin file's and `health/`).
    #[serde(default)]
    pub health_rules: crate::gitops::health_rules::RuleSet,
    /// Where builds may run, and how, as the admin file says.
    #[serde(default)]
    pub builds: super::builds::BuildSettings,
}

impl AppConfig {
    /// Where `step` runs: its own executor, else the pipeline's, else the
    /// admin file's default, else `fallback` (the server's `builds.executor`).
    pub fn executor_of(
        &self,
        step: &CommandStep,
        fallback: &super::builds::Executor,
    ) -> super::builds::Executor {
        // An image is built in this host's sandbox: a build pod would need
        // a builder image and privileges no cluster should give it.
        if step.image_build.is_some() {
            return super::builds::Executor::Local;
        }
        step.executor
            .clone()
            .or_else(|| self.pipeline.executor.clone())
            .or_else(|| self.builds.executor.clone())
            .unwrap_or_else(|| fallback.clone())
    }
}

/// The forges an app's `forge:` section may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    GitLab,
    Gitea,
}

impl Forge {
    pub const ALL: [Forge; 3] = [Forge::GitHub, Forge::GitLab, Forge::Gitea];

    pub fn parse(text: &str) -> Option<Forge> {
        Forge::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// The name in URLs, the inbox and change requests' `origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::Gitea => "gitea",
        }
    }

    /// The admin-registered secret the forge's webhooks are checked with.
    pub fn secret_name(self) -> &'static str {
        match self {
            Forge::GitHub => "GITHUB_WEBHOOK_SECRET",
            Forge::GitLab => "GITLAB_WEBHOOK_TOKEN",
            Forge::Gitea => "GITEA_WEBHOOK_SECRET",
        }
    }
}

/// `forge:` in app.yaml.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeConfig {
    /// github, gitlab or gitea.
    pub kind: String,
    /// The API base: `https://api.github.com`, `https://gitlab.example.com/api/v4`,
    /// `https://gitea.example.com/api/v1`.
    pub api: String,
    /// `owner/name` (GitLab: the project's path or id).
    pub repo: String,
    /// The registered secret holding the API token.
    pub token_secret: String,
    /// Put the manifest diff in change-request comments (developers read
    /// them; off by default).
    #[serde(default)]
    pub comment_diff: bool,
}

/// How approved change requests are merged (git owns the mechanics).
pub use crate::git::MergeStrategy;

/// One line of the environment stack: which branches deploy where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackEntry {
    /// The environment name, or for glob entries the prefix of each
    /// branch's own environment (`preview` → `preview-feature-x`).
    pub env: String,
    pub branches: BranchMatch,
    pub targets: Vec<String>,
    /// Template for the environment's URL (default: the local proxy URL).
    pub url: Option<String>,
    /// Template for the Kubernetes namespace.
    pub namespace: Option<String>,
    /// Previews only: destroyed this long after their last deploy.
    pub ttl_seconds: Option<u64>,
    pub approval: Option<ApprovalPolicy>,
    /// Extra variables for steps (as environment) and templates.
    pub variables: BTreeMap<String, String>,
    /// How long cluster targets may take to roll out.
    #[serde(default = "default_rollout_timeout")]
    pub rollout_timeout_seconds: u64,
    /// How long every target must stay healthy before a release here is
    /// stable (the rollback target).
    #[serde(default = "default_stable_after")]
    pub stable_after_seconds: u64,
    /// Re-apply the last deployment when drift is found.
    #[serde(default)]
    pub self_heal: bool,
    /// When promotions into the environment are blocked.
    #[serde(default)]
    pub freeze: Vec<super::freeze::FreezeWindow>,
    /// Helm values for a chart, over its `values.yaml` and
    /// `values-<env>.yaml`.
    #[serde(default)]
    pub values: Option<serde_json::Value>,
    /// A chart from a chart repository (instead of one in `deploy/`).
    #[serde(default)]
    pub chart: Option<ChartSource>,
    /// Build once: runs here deploy the artifact this environment verified
    /// (its build steps skipped, its outputs and image reused) when there
    /// is one; otherwise they build as any run does.
    #[serde(default)]
    pub promote_from: Option<String>,
    /// What an artifact must have passed before it deploys here.
    #[serde(default)]
    pub requires: Option<Requirement>,
    /// How a deploy replaces what runs: `rolling` or a `canary`.
    #[serde(default)]
    pub strategy: super::strategy::Strategy,
    /// Several clusters rolled out ring by ring (`rollout: {rings}`).
    #[serde(default)]
    pub rings: Option<super::rings::Rings>,
}

/// `requires: {verified_in: staging, soak: 30m}`: a run here is held until
/// its artifact has been live and healthy in `verified_in` for `soak`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub verified_in: String,
    #[serde(default)]
    pub soak_seconds: u64,
}

/// A chart in a chart repository, at a pinned version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartSource {
    /// The repository's address (`https://charts.example.com`).
    pub repo: String,
    pub name: String,
    /// An exact version: a deploy never floats to a newer chart.
    pub version: String,
}

pub const DEFAULT_ROLLOUT_TIMEOUT: u64 = 300;
/// The soak before a release is stable, unless `stable_after` says.
pub const DEFAULT_STABLE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

fn default_stable_after() -> u64 {
    DEFAULT_STABLE_AFTER.as_secs()
}

fn default_rollout_timeout() -> u64 {
    DEFAULT_ROLLOUT_TIMEOUT
}

impl StackEntry {
    /// The Kubernetes namespace of environment `env` of `app`: the entry's
    /// template, or `<app>-<env>`.
    pub fn namespace_for(&self, app: &str, env: &str, branch: &str) -> Result<String, Rejected> {
        let namespace = match &self.namespace {
            Some(template) => {
                let context = super::template::context(app, env, branch, "", &self.variables);
                super::template::render(template, &context)?
            }
            None => format!("{app}-{env}"),
        };
        let valid = (1..=63).contains(&namespace.len())
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !namespace.starts_with('-')
            && !namespace.ends_with('-');
        if valid {
            Ok(namespace)
        } else {
            Err(format!("namespace {namespace:?} is not a valid Kubernetes namespace name").into())
        }
    }

    pub fn cluster_targets(&self) -> impl Iterator<Item = &String> {
        self.targets.iter().filter(|t| *t != LOCAL_TARGET)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchMatch {
    /// One branch, one environment.
    Exact(String),
    /// Any branch matching the glob (`*` matches anything, `/` included)
    /// gets its own environment: a preview.
    Glob(String),
}

impl BranchMatch {
    pub fn matches(&self, branch: &str) -> bool {
        match self {
            BranchMatch::Exact(name) => name == branch,
            BranchMatch::Glob(pattern) => glob_match(pattern, branch),
        }
    }

    pub fn is_preview(&self) -> bool {
        matches!(self, BranchMatch::Glob(_))
    }
}

/// Who must approve a run before it deploys to the environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    pub required: u32,
    pub roles: Vec<String>,
    /// May the author of a change approve it? (default: no)
    #[serde(default)]
    pub self_approval: bool,
    /// Approvers must have signed in within `auth.reauth_max_age`.
    #[serde(default)]
    pub reauth: bool,
    /// A merge made on the forge into this branch counts as its merger's
    /// approval (the seed's model: only admins may merge on the forge),
    /// when the merger maps to a Gantry user the policy accepts.
    #[serde(default)]
    pub forge_merge: bool,
    /// A push to this branch counts as its pusher's approval of what it
    /// adds, when a forge reports the pusher and the account maps to a
    /// Gantry user the policy accepts (only with `required: 1`).
    #[serde(default)]
    pub forge_push: bool,
}

impl ApprovalPolicy {
    /// One admin's approval, nobody approving their own change: what
    /// Gantry asks where nothing else is written (only admins release).
    pub fn one_admin() -> ApprovalPolicy {
        ApprovalPolicy {
            required: 1,
            roles: vec!["admin".into()],
            self_approval: false,
            reauth: false,
            forge_merge: false,
            forge_push: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// Template for `GANTRY_IMAGE`, e.g. `registry.example.com/shop:{{ commit }}`.
    pub image: Option<String>,
    pub steps: Vec<Step>,
    pub local: Option<LocalRun>,
    /// Paths of the app's pipeline folder that steps never see (besides
    /// `deploy/` and `app.yaml`, which they never do), relative to it.
    #[serde(default)]
    pub private: Vec<String>,
    /// Where its command steps run (a step may say otherwise).
    #[serde(default)]
    pub executor: Option<super::builds::Executor>,
}

/// What of the app's pipeline folder steps never see at `/pipeline`: the
/// manifests (`deploy/`, which Gantry alone renders), the environments
/// (`app.yaml`), and what `pipeline.yaml` lists as `private`.
pub const HIDDEN_FROM_STEPS: [&str; 2] = ["deploy", "app.yaml"];

impl PipelineConfig {
    /// The paths of the app's pipeline folder steps are not given.
    pub fn hidden_from_steps(&self) -> Vec<String> {
        HIDDEN_FROM_STEPS
            .iter()
            .map(|path| path.to_string())
            .chain(self.private.iter().cloned())
            .collect()
    }

    pub fn deploys(&self) -> bool {
        self.steps.iter().any(|step| matches!(step, Step::Deploy))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// A pipeline has a handful of steps: boxing the command would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Render and apply to the environment's targets, wait until healthy.
    Deploy,
    Command(CommandStep),
}

impl Step {
    pub fn name(&self) -> &str {
        match self {
            Step::Deploy => "deploy",
            Step::Command(step) => &step.name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandStep {
    pub name: String,
    /// Run by `sh -c` in the app checkout.
    pub run: String,
    pub timeout_seconds: u64,
    /// Names of registered secrets, injected as environment variables.
    pub secrets: Vec<String>,
    /// JUnit XML files (relative to the checkout) to read after the step.
    pub reports: Vec<String>,
    /// Folders of the checkout kept between the app's runs (dependency
    /// caches: `node_modules`, `.cargo-home`), opt-in.
    #[serde(default)]
    pub cache: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// What the step may use in its sandbox.
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub network: StepNetwork,
    /// The image it runs in, on the Kubernetes executor.
    #[serde(default)]
    pub image: Option<String>,
    /// Where it runs, when not where the pipeline's steps do.
    #[serde(default)]
    pub executor: Option<super::builds::Executor>,
    /// It builds the artifact: skipped where an environment promotes one
    /// that was verified upstream (`promote_from`).
    #[serde(default)]
    pub build: bool,
    /// The built-in `image` step: Gantry builds this image in the step's
    /// sandbox and pushes it (`run` is the build Gantry wrote).
    #[serde(default)]
    pub image_build: Option<super::image::ImageBuild>,
}

/// How the `local` target runs the app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalRun {
    /// Run by `sh -c` in the deployed checkout, with `$PORT` set.
    pub run: String,
    /// Path answered with 2xx once the app is up.
    pub health: String,
    pub health_timeout_seconds: u64,
    pub secrets: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Resources,
    /// `default` or `host` (a local app must be reachable).
    #[serde(default)]
    pub network: StepNetwork,
}

/// `*` matches any run of characters (including `/`); everything else is
/// literal. Enough for branch patterns like `*`, `feature/*`, `*-hotfix`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_branch_names() {
        assert!(glob_match("*", "feature/hello"));
        assert!(glob_match("feature/*", "feature/hello/world"));
        assert!(!glob_match("feature/*", "bugfix/x"));
        assert!(glob_match("*-hotfix", "v2-hotfix"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-c-b"));
        assert!(glob_match("latest", "latest"));
        assert!(!glob_match("latest", "latest2"));
    }
}
