//! Reading one app's YAML into an [`AppConfig`], or into every problem
//! found, each with its file, line, field and what was expected. Nothing is
//! partially accepted: an app's config is valid as a whole or not at all.

use crate::error::Rejected;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use app::dto::ConfigIssue;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::builds::{
    BuildPod, BuildSettings, DEFAULT_NAMESPACE, Executor, KubernetesExecutor, PodSecurity,
};
use super::guardrails::{self, AdminFile, Guardrails};
use super::image::{ImageBuild, Repository};
use super::resources::{parse_bytes, parse_cpu};
use super::schema::{
    API_VERSION, AppConfig, ApprovalPolicy, BranchMatch, CommandStep, ForgeConfig, LOCAL_TARGET,
    LocalRun, MergeStrategy, PipelineConfig, Resources, StackEntry, Step, StepNetwork,
};
use crate::config::duration::HumanDuration;
use crate::git::check_branch_name;
use crate::gitops::health_rules::{Check, Rule};

/// Roles an approval policy may name.
pub const ROLES: &[&str] = &["admin", "developer", "tester", "viewer"];
const DEFAULT_STEP_TIMEOUT: u64 = 30 * 60;
const MAX_STEP_TIMEOUT: u64 = 24 * 3600;
const DEFAULT_PREVIEW_TTL: u64 = 72 * 3600;
const DEFAULT_HEALTH_TIMEOUT: u64 = 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    #[serde(rename = "apiVersion")]
    api_version: Spanned<String>,
    source: Spanned<String>,
    stack: Option<Vec<RawStackEntry>>,
    merge: Option<Spanned<String>>,
    commit_url: Option<Spanned<String>>,
    forge: Option<RawForge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForge {
    kind: Spanned<String>,
    api: Option<Spanned<String>>,
    repo: Spanned<String>,
    token_secret: Spanned<String>,
    #[serde(default)]
    comment_diff: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStackEntry {
    env: Spanned<String>,
    branch: Option<Spanned<String>>,
    branches: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    targets: Option<Vec<Spanned<String>>>,
    url: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    ttl: Option<Spanned<HumanDuration>>,
    approval: Option<RawApproval>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<String>>,
    rollout_timeout: Option<Spanned<HumanDuration>>,
    stable_after: Option<Spanned<HumanDuration>>,
    self_heal: Option<bool>,
    #[serde(default)]
    freeze: Vec<RawFreeze>,
    values: Option<Spanned<serde_json::Value>>,
    chart: Option<RawChart>,
    promote_from: Option<Spanned<String>>,
    requires: Option<RawRequires>,
    strategy: Option<Spanned<serde_json::Value>>,
    rollout: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequires {
    verified_in: Spanned<String>,
    soak: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChart {
    repo: Spanned<String>,
    name: Spanned<String>,
    version: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreeze {
    start: Spanned<String>,
    #[serde(rename = "for")]
    duration: Spanned<HumanDuration>,
    reason: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    required: Spanned<u32>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
    #[serde(default)]
    self_approval: bool,
    #[serde(default)]
    reauth: bool,
    #[serde(default)]
    forge_merge: bool,
    #[serde(default)]
    forge_push: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(rename = "apiVersion")]
    api_version: Spanned<String>,
    image: Option<Spanned<String>>,
    steps: Spanned<Vec<RawStep>>,
    local: Option<RawLocal>,
    #[serde(default)]
    private: Vec<Spanned<String>>,
    executor: Option<Spanned<RawExecutor>>,
}

/// `executor: local` or `executor: {kubernetes: {cluster, namespace, image}}`.
enum RawExecutor {
    Local,
    Kubernetes(RawKubernetes),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    cluster: String,
    namespace: Option<String>,
    image: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetesExecutor {
    kubernetes: RawKubernetes,
}

impl<'de> Deserialize<'de> for RawExecutor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExecutorVisitor;
        impl<'de> Visitor<'de> for ExecutorVisitor {
            type Value = RawExecutor;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`local` or `{kubernetes: {cluster: <name>, namespace: <name>}}`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawExecutor, E> {
                if text == "local" {
                    Ok(RawExecutor::Local)
                } else {
                    Err(E::custom(format!(
                        "unknown executor {text:?}: an executor is `local` or `{{kubernetes: {{cluster: <name>, namespace: <name>}}}}`"
                    )))
                }
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawExecutor, M::Error> {
                RawKubernetesExecutor::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|raw| RawExecutor::Kubernetes(raw.kubernetes))
            }
        }
        deserializer.deserialize_any(ExecutorVisitor)
    }
}

/// A step is either the bare word `deploy` or a command mapping.
enum RawStep {
    Deploy,
    Command(Box<RawCommandStep>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommandStep {
    name: Option<Spanned<String>>,
    run: Option<Spanned<String>>,
    timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
    #[serde(default)]
    reports: Vec<Spanned<String>>,
    #[serde(default)]
    cache: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    resources: Option<RawResources>,
    network: Option<Spanned<String>>,
    image: Option<Spanned<RawStepImage>>,
    executor: Option<Spanned<RawExecutor>>,
    #[serde(default)]
    build: bool,
}

/// A step's `image:`: the image a command runs in on Kubernetes (a
/// reference), or the built-in image step (a mapping).
enum RawStepImage {
    Reference(String),
    Build(Box<RawImageBuild>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImageBuild {
    context: Option<Spanned<String>>,
    dockerfile: Option<Spanned<String>>,
    repository: Spanned<String>,
    credentials: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawStepImage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ImageVisitor;
        impl<'de> Visitor<'de> for ImageVisitor {
            type Value = RawStepImage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an image reference, or `{context: ., dockerfile: Dockerfile, repository: registry.example.com/shop}` to build one",
                )
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawStepImage, E> {
                Ok(RawStepImage::Reference(text.to_string()))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawStepImage, M::Error> {
                RawImageBuild::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|build| RawStepImage::Build(Box::new(build)))
            }
        }
        deserializer.deserialize_any(ImageVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    memory: Option<Spanned<String>>,
    pids: Option<Spanned<u64>>,
    cpu: Option<Spanned<String>>,
    tmp: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    run: Spanned<String>,
    health: Option<Spanned<String>>,
    health_timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    resources: Option<RawResources>,
    network: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = RawStep;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`deploy` or a step mapping with `name` and `run`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawStep, E> {
                if text == "deploy" {
                    Ok(RawStep::Deploy)
                } else {
                    Err(E::custom(format!(
                        "unknown step {text:?}: a step is `deploy` or a mapping with `name` and `run`"
                    )))
                }
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawStep, M::Error> {
                RawCommandStep::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|step| RawStep::Command(Box::new(step)))
            }
        }
        deserializer.deserialize_any(StepVisitor)
    }
}

/// Collects problems for one file.
struct Issues<'a> {
    file: &'a str,
    found: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    fn new(file: &'a str) -> Self {
        Issues {
            file,
            found: Vec::new(),
        }
    }

    fn at(&mut self, location: Location, field: impl Into<String>, message: impl Into<String>) {
        let known = location != Location::UNKNOWN;
        self.found.push(ConfigIssue {
            file: self.file.to_string(),
            line: known.then(|| location.line()),
            column: known.then(|| location.column()),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Parses YAML into `T`, turning a syntax or shape error into one issue.
fn parse<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, ConfigIssue> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(text, options).map_err(|error| {
        let location = error.location();
        let line = location.map(|l| l.line());
        let message = error.to_string();
        // Keep one line, without the position the issue carries anyway.
        let message = message.lines().next().unwrap_or_default();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(message)
            .trim()
            .to_string();
        ConfigIssue {
            file: file.to_string(),
            line,
            column: location.map(|l| l.column()),
            field: line
                .and_then(|line| key_at_line(text, line))
                .unwrap_or_default(),
            message,
        }
    })
}

/// The YAML key written on `line`, to name the field of a parse error.
fn key_at_line(text: &str, line: u64) -> Option<String> {
    let source = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let key = source
        .trim_start()
        .trim_start_matches("- ")
        .split(':')
        .next()?
        .trim();
    (!key.is_empty() && !key.contains(' ')).then(|| key.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(rename = "apiVersion")]
    api_version: Spanned<String>,
    #[serde(default)]
    apps: BTreeMap<String, Spanned<RawGuardrails>>,
    #[serde(default)]
    health: Vec<RawHealthRule>,
    builds: Option<RawBuilds>,
}

/// `builds:` of the admin file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuilds {
    #[serde(default)]
    clusters: Vec<Spanned<String>>,
    executor: Option<Spanned<RawExecutor>>,
    #[serde(default)]
    pod: RawBuildPod,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawBuildPod {
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<crate::gitops::builds::Toleration>,
    runtime_class: Option<String>,
    service_account: Option<String>,
    security: Option<Spanned<String>>,
    read_only_root: Option<bool>,
}

/// A CEL health rule, as Flux's `healthCheckExprs` are written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthRule {
    #[serde(rename = "apiVersion")]
    api_version: Spanned<String>,
    kind: Spanned<String>,
    current: Spanned<String>,
    #[serde(rename = "inProgress", alias = "in_progress")]
    in_progress: Option<Spanned<String>>,
    failed: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuardrails {
    clusters: Option<Vec<Spanned<String>>>,
    namespaces: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    cluster_kinds: Vec<Spanned<String>>,
}

/// Loads the pipeline repo's admin file ([`guardrails::FILE`]; none is the
/// defaults) and its Lua health rules (`health/<group>/<Kind>/health.lua`,
/// as `(path, text)`).
pub fn load_admin(
    text: Option<&str>,
    scripts: &[(String, String)],
) -> Result<AdminFile, Vec<ConfigIssue>> {
    let mut file = AdminFile::default();
    let mut found = Vec::new();
    for (path, script) in scripts {
        match lua_rule(path, script) {
            Ok(rule) => file.health.rules.push(rule),
            Err(issue) => found.push(issue),
        }
    }
    let Some(text) = text else {
        return if found.is_empty() {
            Ok(file)
        } else {
            Err(found)
        };
    };
    let raw: RawAdmin = parse(guardrails::FILE, text).map_err(|issue| vec![issue])?;
    let mut issues = Issues::new(guardrails::FILE);
    issues.found = found;
    if raw.api_version.value != API_VERSION {
        issues.at(
            raw.api_version.referenced,
            "apiVersion",
            format!("expected {API_VERSION}, found {:?}", raw.api_version.value),
        );
    }
    for rule in raw.health {
        if let Some(rule) = cel_rule(rule, text, &mut issues) {
            file.health.rules.push(rule);
        }
    }
    if let Some(builds) = raw.builds {
        file.builds = admin_builds(builds, &mut issues);
    }
    for (app, rails) in raw.apps {
        if app != "*" && !valid_name(&app) {
            issues.at(
                rails.referenced,
                format!("apps.{app}"),
                "an app name, or \"*\" for every app not named",
            );
        }
        let rails = rails.value;
        for pattern in rails.namespaces.iter().flatten() {
            let plain = pattern.value.replace("{app}", "a").replace('*', "a");
            let ok = !plain.is_empty()
                && plain.len() <= 63
                && plain
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                issues.at(
                    pattern.referenced,
                    format!("apps.{app}.namespaces"),
                    format!(
                        "{:?} is not a namespace pattern: lowercase letters, digits, dashes, `*` and `{{app}}`",
                        pattern.value
                    ),
                );
            }
        }
        for kind in &rails.cluster_kinds {
            let name = kind.value.rsplit('/').next().unwrap_or_default();
            if !name.starts_with(|c: char| c.is_ascii_uppercase())
                || !name.chars().all(|c| c.is_ascii_alphanumeric())
            {
                issues.at(
                    kind.referenced,
                    format!("apps.{app}.cluster_kinds"),
                    format!(
                        "{:?} is not a kind: write it as Kind or group/Kind (ClusterRole, apiextensions.k8s.io/CustomResourceDefinition)",
                        kind.value
                    ),
                );
            }
        }
        let values = |items: Option<Vec<Spanned<String>>>| {
            items.map(|items| items.into_iter().map(|i| i.value).collect())
        };
        let rule = if app == "*" {
            "apps.\"*\"".to_string()
        } else {
            format!("apps.{app}")
        };
        file.apps.insert(
            app,
            Guardrails {
                rule,
                clusters: values(rails.clusters),
                namespaces: values(rails.namespaces),
                cluster_kinds: values(Some(rails.cluster_kinds)).unwrap_or_default(),
            },
        );
    }
    if issues.found.is_empty() {
        Ok(file)
    } else {
        Err(issues.found)
    }
}

/// The admin file's `builds:`: build clusters, the default executor and
/// the build pods' settings.
fn admin_builds(raw: RawBuilds, issues: &mut Issues<'_>) -> BuildSettings {
    let mut pod = BuildPod::default();
    let security = raw
        .pod
        .security
        .map(|security| match security.value.as_str() {
            "restricted" => PodSecurity::Restricted,
            "baseline" => PodSecurity::Baseline,
            other => {
                issues.at(
                    security.referenced,
                    "builds.pod.security",
                    format!(
                        "unknown pod security level {other:?}; expected restricted or baseline"
                    ),
                );
                PodSecurity::Restricted
            }
        });
    pod.security = security.unwrap_or_default();
    pod.read_only_root = raw.pod.read_only_root.unwrap_or(true);
    pod.node_selector = raw.pod.node_selector;
    pod.tolerations = raw.pod.tolerations;
    pod.runtime_class = raw.pod.runtime_class;
    pod.service_account = raw.pod.service_account;
    for (field, name) in [
        ("builds.pod.runtime_class", &pod.runtime_class),
        ("builds.pod.service_account", &pod.service_account),
    ] {
        if let Some(name) = name
            && !dns_subdomain(name)
        {
            issues.at(
                Location::UNKNOWN,
                field,
                format!("{name:?} is not a Kubernetes name"),
            );
        }
    }
    let executor = raw
        .executor
        .map(|executor| executor_of(executor, "builds.executor", issues));
    BuildSettings {
        clusters: raw.clusters.into_iter().map(|c| c.value).collect(),
        executor,
        pod,
    }
}

/// A lowercase RFC 1123 subdomain (a Kubernetes object name).
fn dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An image reference as a pod spec takes it: not empty, no spaces.
fn check_image(image: &str) -> Result<(), Rejected> {
    if image.is_empty()
        || image.len() > 512
        || image.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Err(format!("{image:?} is not an image reference (e.g. debian:12 or registry.example.com/builder@sha256:...)").into())
    } else {
        Ok(())
    }
}

/// An `executor:` as read, checked: a Kubernetes namespace is a DNS
/// label (default `gantry-builds`), an image a reference. Whether the
/// cluster may run builds is the admin file's to say (`guarded`).
fn executor_of(raw: Spanned<RawExecutor>, field: &str, issues: &mut Issues<'_>) -> Executor {
    match raw.value {
        RawExecutor::Local => Executor::Local,
        RawExecutor::Kubernetes(kube) => {
            let namespace = kube
                .namespace
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
            if !valid_namespace(&namespace) {
                issues.at(
                    raw.referenced,
                    format!("{field}.kubernetes.namespace"),
                    format!("{namespace:?} is not a namespace name: lowercase letters, digits and dashes, at most 63"),
                );
            }
            if let Some(image) = &kube.image
                && let Err(message) = check_image(image)
            {
                issues.at(
                    raw.referenced,
                    format!("{field}.kubernetes.image"),
                    message.0,
                );
            }
            Executor::Kubernetes(KubernetesExecutor {
                cluster: kube.cluster,
                namespace,
                image: kube.image,
            })
        }
    }
}

fn valid_namespace(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && !name.contains('.') && dns_subdomain(name)
}

/// A Lua rule from `health/<group>/<Kind>/health.lua` (`_` or `core` for
/// the core group), compiled to check it.
fn lua_rule(path: &str, script: &str) -> Result<Rule, ConfigIssue> {
    let issue = |line: Option<u64>, message: String| ConfigIssue {
        file: path.to_string(),
        line,
        column: None,
        field: String::new(),
        message,
    };
    let parts: Vec<&str> = path.split('/').collect();
    let ["health", group, kind, "health.lua"] = parts.as_slice() else {
        return Err(issue(
            None,
            "a Lua health rule lives at health/<group>/<Kind>/health.lua".into(),
        ));
    };
    let group = if matches!(*group, "_" | "core") {
        ""
    } else {
        group
    };
    crate::gitops::health_rules::compile_lua(path, script)
        .map_err(|error| issue(error.line, error.message))?;
    Ok(Rule {
        group: group.to_string(),
        kind: kind.to_string(),
        file: path.to_string(),
        check: Check::Lua {
            script: script.to_string(),
        },
    })
}

/// A CEL rule of the admin file, each expression compiled to check it; an
/// error names the expression's line and column in the file.
fn cel_rule(raw: RawHealthRule, source: &str, issues: &mut Issues<'_>) -> Option<Rule> {
    let group = raw
        .api_version
        .value
        .rsplit_once('/')
        .map_or(String::new(), |(group, _)| group.to_string());
    let kind = raw.kind.value.clone();
    let mut ok = true;
    let mut check = |field: &str, text: &Spanned<String>| {
        if let Err((line, column, message)) = crate::gitops::health_rules::compile_cel(&text.value)
        {
            let at = text.referenced;
            // Where the expression starts, moved by where in it the error is
            // (a quoted scalar starts one column later).
            let quoted = source
                .lines()
                .nth(at.line().saturating_sub(1) as usize)
                .and_then(|l| l.chars().nth(at.column().saturating_sub(1) as usize))
                .is_some_and(|c| c == '"' || c == '\'');
            let start = at.column() + u64::from(quoted);
            issues.found.push(ConfigIssue {
                file: guardrails::FILE.to_string(),
                line: Some(at.line() + line - 1),
                column: Some(if line == 1 {
                    start + column - 1
                } else {
                    column
                }),
                field: format!("health.{kind}.{field}"),
                message,
            });
            ok = false;
        }
    };
    check("current", &raw.current);
    if let Some(text) = &raw.in_progress {
        check("inProgress", text);
    }
    if let Some(text) = &raw.failed {
        check("failed", text);
    }
    ok.then(|| Rule {
        group,
        kind: raw.kind.value.clone(),
        file: guardrails::FILE.to_string(),
        check: Check::Cel {
            current: raw.current.value,
            in_progress: raw.in_progress.map(|t| t.value),
            failed: raw.failed.map(|t| t.value),
        },
    })
}

/// `config` with the guardrails `admin` sets for it; refused when its
/// stack deploys to a cluster they do not allow.
pub fn guarded(mut config: AppConfig, admin: &AdminFile) -> Result<AppConfig, Vec<ConfigIssue>> {
    let rails = admin.for_app(&config.name);
    let issues: Vec<ConfigIssue> = config
        .stack
        .iter()
        .flat_map(|entry| {
            entry
                .cluster_targets()
                .filter_map(|cluster| rails.cluster_refusal(&config.name, cluster))
                .map(|message| ConfigIssue {
                    file: format!("apps/{}/app.yaml", config.name),
                    line: None,
                    column: None,
                    field: format!("stack.{}.targets", entry.env),
                    message,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let pipeline_file = format!("apps/{}/pipeline.yaml", config.name);
    let build_clusters = config
        .pipeline
        .executor
        .iter()
        .map(|executor| ("executor".to_string(), executor))
        .chain(config.pipeline.steps.iter().filter_map(|step| {
            match step {
                Step::Command(step) => step
                    .executor
                    .as_ref()
                    .map(|executor| (format!("steps.{}.executor", step.name), executor)),
                Step::Deploy => None,
            }
        }));
    let mut issues = issues;
    for (field, executor) in build_clusters {
        if let Executor::Kubernetes(kube) = executor
            && !admin.builds.allows(&kube.cluster, &kube.namespace)
        {
            let allowed = match admin.builds.clusters.as_slice() {
                [] => "none".to_string(),
                some => some.join(", "),
            };
            issues.push(ConfigIssue {
                file: pipeline_file.clone(),
                line: None,
                column: None,
                field: format!("{field}.kubernetes.cluster"),
                message: format!(
                    "\"{}/{}\" is not a build cluster and namespace: an app's code runs there, so admins list where builds may go in {}'s builds.clusters (listed: {allowed})",
                    kube.cluster,
                    kube.namespace,
                    guardrails::FILE
                ),
            });
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    config.builds = admin.builds.clone();
    config.guardrails = rails;
    config.health_rules = admin.health.clone();
    Ok(config)
}

/// Loads and validates one app. `clusters` are the registered cluster names;
/// `local` is always a valid target.
pub fn load_app(
    name: &str,
    app_yaml: Option<&str>,
    pipeline_yaml: Option<&str>,
    clusters: &[String],
) -> Result<AppConfig, Vec<ConfigIssue>> {
    let app_file = format!("apps/{name}/app.yaml");
    let pipeline_file = format!("apps/{name}/pipeline.yaml");
    let mut issues = Vec::new();
    if !valid_name(name) {
        issues.push(ConfigIssue {
            file: format!("apps/{name}"),
            line: None,
            column: None,
            field: String::new(),
            message: "an app folder name must be lowercase letters, digits and single dashes, starting with a letter, at most 30 characters".into(),
        });
    }
    let missing = |file: &str| ConfigIssue {
        file: file.to_string(),
        line: None,
        column: None,
        field: String::new(),
        message: "file is missing".into(),
    };
    let raw_app = match app_yaml {
        None => Err(missing(&app_file)),
        Some(text) => parse::<RawApp>(&app_file, text),
    };
    let raw_pipeline = match pipeline_yaml {
        None => Err(missing(&pipeline_file)),
        Some(text) => parse::<RawPipeline>(&pipeline_file, text),
    };
    let (raw_app, raw_pipeline) = match (raw_app, raw_pipeline) {
        (Ok(app), Ok(pipeline)) => (app, pipeline),
        (app, pipeline) => {
            issues.extend(app.err());
            issues.extend(pipeline.err());
            return Err(issues);
        }
    };

    let mut app_issues = Issues::new(&app_file);
    let mut pipeline_issues = Issues::new(&pipeline_file);
    let pipeline = validate_pipeline(raw_pipeline, &mut pipeline_issues);
    let merge = match &raw_app.merge {
        None => MergeStrategy::default(),
        Some(text) => MergeStrategy::parse(&text.value).unwrap_or_else(|| {
            app_issues.at(
                text.referenced,
                "merge",
                format!(
                    "unknown merge strategy {:?}; expected merge-commit or fast-forward",
                    text.value
                ),
            );
            MergeStrategy::default()
        }),
    };
    let commit_url = raw_app.commit_url.as_ref().map(|url| {
        let context = super::template::context(
            name,
            "production",
            "master",
            "0123456789abcdef",
            &BTreeMap::new(),
        );
        if let Err(message) = super::template::render(&url.value, &context) {
            app_issues.at(url.referenced, "commit_url", message);
        }
        url.value.clone()
    });
    let forge = raw_app
        .forge
        .as_ref()
        .and_then(|raw| validate_forge(raw, &mut app_issues));
    let (source, stack) = validate_app(raw_app, clusters, &mut app_issues);
    if let Some(pipeline) = &pipeline {
        let needs_local = pipeline.deploys()
            && stack
                .iter()
                .any(|entry| entry.targets.iter().any(|t| t == LOCAL_TARGET));
        if needs_local && pipeline.local.is_none() {
            pipeline_issues.at(
                Location::UNKNOWN,
                "local",
                "the stack deploys to the `local` target, so pipeline.yaml needs `local: { run: ... }`",
            );
        }
    }
    issues.extend(app_issues.found);
    issues.extend(pipeline_issues.found);
    match pipeline {
        Some(pipeline) if issues.is_empty() => Ok(AppConfig {
            name: name.to_string(),
            source,
            stack,
            pipeline,
            merge,
            commit_url,
            forge,
            guardrails: Guardrails::default(),
            health_rules: Default::default(),
            builds: Default::default(),
        }),
        _ => Err(issues),
    }
}

/// The forge Gantry reports to: its kind, API base, repository and token.
fn validate_forge(raw: &RawForge, issues: &mut Issues<'_>) -> Option<ForgeConfig> {
    let Some(kind) = crate::gitops::schema::Forge::parse(&raw.kind.value) else {
        issues.at(
            raw.kind.referenced,
            "forge.kind",
            format!(
                "unknown forge {:?}; expected github, gitlab or gitea",
                raw.kind.value
            ),
        );
        return None;
    };
    let api = match (&raw.api, kind) {
        (Some(api), _) => {
            if url::Url::parse(&api.value).is_err() {
                issues.at(
                    api.referenced,
                    "forge.api",
                    format!("{:?} is not a URL", api.value),
                );
                return None;
            }
            api.value.trim_end_matches('/').to_string()
        }
        (None, crate::gitops::schema::Forge::GitHub) => "https://api.github.com".to_string(),
        (None, _) => {
            issues.at(
                raw.kind.referenced,
                "forge.api",
                "GitLab and Gitea need `api` (e.g. https://gitlab.example.com/api/v4)",
            );
            return None;
        }
    };
    if raw.repo.value.trim().is_empty() {
        issues.at(
            raw.repo.referenced,
            "forge.repo",
            "name the repository (owner/name)",
        );
        return None;
    }
    Some(ForgeConfig {
        kind: kind.as_str().to_string(),
        api,
        repo: raw.repo.value.trim().to_string(),
        token_secret: raw.token_secret.value.clone(),
        comment_diff: raw.comment_diff,
    })
}

fn validate_app(
    raw: RawApp,
    clusters: &[String],
    issues: &mut Issues<'_>,
) -> (String, Vec<StackEntry>) {
    check_api_version(&raw.api_version, issues);
    let source = raw.source.value.trim().to_string();
    if let Err(message) = check_source(&source) {
        issues.at(raw.source.referenced, "source", message);
    }
    let Some(raw_stack) = raw.stack else {
        return (source, default_stack());
    };
    if raw_stack.is_empty() {
        issues.at(
            raw.source.referenced,
            "stack",
            "the stack is empty; omit `stack` for the default one",
        );
    }
    let mut seen = BTreeSet::new();
    let mut stack = Vec::new();
    // `promote_from` and `requires.verified_in`, checked once the whole
    // stack is known.
    let mut upstreams: Vec<(usize, &str, Spanned<String>)> = Vec::new();
    for (index, entry) in raw_stack.into_iter().enumerate() {
        let field = |name: &str| format!("stack[{index}].{name}");
        let env = entry.env.value.clone();
        if !valid_name(&env) {
            issues.at(
                entry.env.referenced,
                field("env"),
                format!("{env:?} is not a valid environment name: lowercase letters, digits and single dashes, starting with a letter, at most 30 characters"),
            );
        } else if !seen.insert(env.clone()) {
            issues.at(
                entry.env.referenced,
                field("env"),
                format!("duplicate environment name {env:?}"),
            );
        }
        let branches = match (&entry.branch, &entry.branches) {
            (Some(branch), None) => {
                if let Err(message) = check_branch_name(&branch.value) {
                    issues.at(branch.referenced, field("branch"), message);
                }
                BranchMatch::Exact(branch.value.clone())
            }
            (None, Some(pattern)) => {
                let probe = pattern.value.replace('*', "x");
                if pattern.value.is_empty() || check_branch_name(&probe).is_err() {
                    issues.at(
                        pattern.referenced,
                        field("branches"),
                        format!("{:?} is not a branch pattern", pattern.value),
                    );
                }
                BranchMatch::Glob(pattern.value.clone())
            }
            (Some(branch), Some(_)) => {
                issues.at(branch.referenced, field("branch"), "set either `branch` (one environment) or `branches` (a preview per branch), not both");
                BranchMatch::Exact(branch.value.clone())
            }
            (None, None) => {
                issues.at(
                    entry.env.referenced,
                    field("branch"),
                    "each stack entry needs `branch` or `branches`",
                );
                BranchMatch::Exact(String::new())
            }
        };
        let targets = match (entry.target, entry.targets) {
            (Some(one), None) => vec![one],
            (None, Some(many)) if !many.is_empty() => many,
            (None, Some(_)) => {
                issues.at(
                    entry.env.referenced,
                    field("targets"),
                    "`targets` must name at least one target",
                );
                Vec::new()
            }
            (None, None) => Vec::new(),
            (Some(one), Some(_)) => {
                issues.at(
                    one.referenced,
                    field("target"),
                    "set either `target` or `targets`, not both",
                );
                vec![one]
            }
        };
        let mut target_names = Vec::new();
        for target in &targets {
            let name = target.value.trim();
            if name != LOCAL_TARGET && !clusters.iter().any(|c| c == name) {
                let known = if clusters.is_empty() {
                    "none".to_string()
                } else {
                    clusters.join(", ")
                };
                issues.at(
                    target.referenced,
                    field("target"),
                    format!("{name:?} is not a registered cluster (registered: {known}); use `local` or register it first"),
                );
            } else if target_names.iter().any(|t| t == name) {
                issues.at(
                    target.referenced,
                    field("targets"),
                    format!("target {name:?} is listed twice"),
                );
            }
            target_names.push(name.to_string());
        }
        if target_names.is_empty() {
            target_names.push(LOCAL_TARGET.to_string());
        }
        let ttl_seconds = match (&entry.ttl, branches.is_preview()) {
            (Some(ttl), true) => Some(ttl.value.as_secs()),
            (Some(ttl), false) => {
                issues.at(
                    ttl.referenced,
                    field("ttl"),
                    "`ttl` applies only to preview entries (`branches:`)",
                );
                None
            }
            (None, true) => Some(DEFAULT_PREVIEW_TTL),
            (None, false) => None,
        };
        let approval = entry.approval.map(|raw| {
            let required = raw.required.value;
            if !(1..=10).contains(&required) {
                issues.at(
                    raw.required.referenced,
                    field("approval.required"),
                    "expected a number of approvals from 1 to 10",
                );
            }
            let mut roles = Vec::new();
            for role in raw.roles {
                if ROLES.contains(&role.value.as_str()) {
                    roles.push(role.value);
                } else {
                    issues.at(
                        role.referenced,
                        field("approval.roles"),
                        format!(
                            "unknown role {:?}; expected one of {}",
                            role.value,
                            ROLES.join(", ")
                        ),
                    );
                }
            }
            if roles.is_empty() {
                roles.push("admin".to_string());
            }
            let forge_push = match raw.forge_push {
                Some(push) if push.value && required != 1 => {
                    issues.at(
                        push.referenced,
                        field("approval.forge_push"),
                        format!(
                            "a push is one person's approval: forge_push needs `required: 1` (this entry requires {required})"
                        ),
                    );
                    false
                }
                Some(push) if push.value && !raw.self_approval => {
                    issues.at(
                        push.referenced,
                        field("approval.forge_push"),
                        "a push counted as an approval is its pusher's own: forge_push needs `self_approval: true`",
                    );
                    false
                }
                Some(push) => push.value,
                None => false,
            };
            ApprovalPolicy {
                required,
                roles,
                self_approval: raw.self_approval,
                reauth: raw.reauth,
                forge_merge: raw.forge_merge,
                forge_push,
            }
        });
        for (template, name) in [(&entry.url, "url"), (&entry.namespace, "namespace")] {
            if let Some(template) = template
                && let Err(message) = check_template(&template.value)
            {
                issues.at(template.referenced, field(name), message);
            }
        }
        let mut variables = BTreeMap::new();
        for (key, value) in entry.variables {
            if let Err(message) = check_env_name(&key) {
                issues.at(
                    value.referenced,
                    field(&format!("variables.{key}")),
                    message,
                );
            }
            variables.insert(key, value.value);
        }
        let rollout_timeout_seconds = match &entry.rollout_timeout {
            Some(timeout) if timeout.value.as_secs() > 3600 => {
                issues.at(
                    timeout.referenced,
                    field("rollout_timeout"),
                    "a rollout may take at most 1h",
                );
                3600
            }
            Some(timeout) => timeout.value.as_secs(),
            None => super::schema::DEFAULT_ROLLOUT_TIMEOUT,
        };
        let stable_after_seconds = match &entry.stable_after {
            Some(soak) if soak.value.as_secs() > 7 * 24 * 3600 => {
                issues.at(
                    soak.referenced,
                    field("stable_after"),
                    "a release should be judged stable within 7d",
                );
                7 * 24 * 3600
            }
            Some(soak) => soak.value.as_secs(),
            None => super::schema::DEFAULT_STABLE_AFTER.as_secs(),
        };
        // Helm values: a mapping, handed to the chart as they are.
        let values = match entry.values {
            Some(values) if !values.value.is_object() => {
                issues.at(
                    values.referenced,
                    field("values"),
                    "Helm values must be a mapping (key: value)",
                );
                None
            }
            other => other.map(|values| values.value),
        };
        let chart = entry.chart.and_then(|chart| {
            let mut ok = true;
            // https, or plain http to this machine (a mirror beside
            // Gantry); never credentials in the address (Helm repeats it).
            let repo = url::Url::parse(&chart.repo.value).ok();
            let acceptable = repo.as_ref().is_some_and(|url| {
                let here = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                (url.scheme() == "https" || (url.scheme() == "http" && here))
                    && url.username().is_empty()
                    && url.password().is_none()
            });
            if !acceptable {
                issues.at(
                    chart.repo.referenced,
                    field("chart.repo"),
                    format!(
                        "{:?} is not the https address of a chart repository (plain http only to this machine; no credentials in the address)",
                        chart.repo.value
                    ),
                );
                ok = false;
            }
            // Never `-…` (a flag to helm) nor `.`/`..` (a local path).
            let plain = |text: &str| {
                text.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
            };
            if !plain(&chart.name.value) {
                issues.at(
                    chart.name.referenced,
                    field("chart.name"),
                    format!("{:?} is not a chart name", chart.name.value),
                );
                ok = false;
            }
            // A range would let a deploy pick up a chart nobody reviewed.
            if !plain(&chart.version.value)
                || chart.version.value.starts_with(['^', '~', '>', '<', '='])
            {
                issues.at(
                    chart.version.referenced,
                    field("chart.version"),
                    format!(
                        "{:?} is not an exact chart version (pin one, e.g. 1.2.3)",
                        chart.version.value
                    ),
                );
                ok = false;
            }
            ok.then_some(super::schema::ChartSource {
                repo: chart.repo.value,
                name: chart.name.value,
                version: chart.version.value,
            })
        });
        let mut freeze = Vec::new();
        for (n, window) in entry.freeze.into_iter().enumerate() {
            if let Err(message) = super::freeze::parse_schedule(&window.start.value) {
                issues.at(
                    window.start.referenced,
                    field(&format!("freeze[{n}].start")),
                    message,
                );
            }
            if window.duration.value.as_secs() == 0 {
                issues.at(
                    window.duration.referenced,
                    field(&format!("freeze[{n}].for")),
                    "a freeze must last longer than 0s",
                );
            }
            if window.reason.value.trim().is_empty() {
                issues.at(
                    window.reason.referenced,
                    field(&format!("freeze[{n}].reason")),
                    "say why the environment is frozen; people who are blocked read it",
                );
            }
            freeze.push(super::freeze::FreezeWindow {
                start: window.start.value,
                duration_seconds: window.duration.value.as_secs(),
                reason: window.reason.value.trim().to_string(),
            });
        }
        let promote_from = entry.promote_from.map(|upstream| {
            upstreams.push((index, "promote_from", upstream.clone()));
            upstream.value
        });
        let requires = entry.requires.map(|raw| {
            upstreams.push((index, "requires.verified_in", raw.verified_in.clone()));
            let soak_seconds = match &raw.soak {
                Some(soak) if soak.value.as_secs() > 30 * 24 * 3600 => {
                    issues.at(
                        soak.referenced,
                        field("requires.soak"),
                        "a soak may last at most 30d",
                    );
                    30 * 24 * 3600
                }
                Some(soak) => soak.value.as_secs(),
                None => 0,
            };
            super::schema::Requirement {
                verified_in: raw.verified_in.value,
                soak_seconds,
            }
        });
        let strategy = match entry.strategy {
            None => super::strategy::Strategy::Rolling,
            Some(raw) => match super::strategy::parse(&raw.value) {
                Ok(strategy) => {
                    if let Some(plan) = strategy.walked() {
                        for (at, message) in super::strategy::fits_targets(
                            &plan,
                            &target_names,
                            branches.is_preview(),
                        ) {
                            issues.at(raw.referenced, field(&format!("strategy.{at}")), message);
                        }
                    }
                    strategy
                }
                Err(problems) => {
                    for (at, message) in problems {
                        let name = if at.is_empty() {
                            "strategy".to_string()
                        } else {
                            format!("strategy.{at}")
                        };
                        issues.at(raw.referenced, field(&name), message);
                    }
                    super::strategy::Strategy::Rolling
                }
            },
        };
        let rings = entry.rollout.and_then(|raw| {
            if branches.is_preview() {
                issues.at(raw.referenced, field("rollout"), "a preview has one target's worth of one version: rings are for fixed environments (`branch:`)");
                return None;
            }
            match super::rings::parse(&raw.value, &target_names) {
                Ok(rings) => Some(rings),
                Err(problems) => {
                    for (at, message) in problems {
                        let name = if at.is_empty() {
                            "rollout".to_string()
                        } else {
                            format!("rollout.{at}")
                        };
                        issues.at(raw.referenced, field(&name), message);
                    }
                    None
                }
            }
        });
        stack.push(StackEntry {
            strategy,
            rings,
            promote_from,
            requires,
            env,
            branches,
            targets: target_names,
            url: entry.url.map(|s| s.value),
            namespace: entry.namespace.map(|s| s.value),
            ttl_seconds,
            approval,
            variables,
            rollout_timeout_seconds,
            stable_after_seconds,
            self_heal: entry.self_heal.unwrap_or(false),
            freeze,
            values,
            chart,
        });
    }
    // What soaked is what is promoted: one upstream for both.
    for (index, entry) in stack.iter().enumerate() {
        if let (Some(from), Some(requires)) = (&entry.promote_from, &entry.requires)
            && from != &requires.verified_in
        {
            issues.at(
                Location::UNKNOWN,
                format!("stack[{index}].requires.verified_in"),
                format!(
                    "{:?} differs from promote_from {from:?}: the build promoted must be the one verified; name the same environment",
                    requires.verified_in
                ),
            );
        }
    }
    for (index, name, upstream) in upstreams {
        let fixed = |env: &str| {
            stack
                .iter()
                .any(|e| e.env == env && !e.branches.is_preview())
        };
        let own = &stack[index];
        let problem = if upstream.value == own.env {
            Some(format!(
                "{:?} is this entry itself; name the environment artifacts come from (e.g. staging)",
                upstream.value
            ))
        } else if own.branches.is_preview() {
            Some(
                "a preview builds its own branch; promotion is for fixed environments (`branch:`)"
                    .to_string(),
            )
        } else if !fixed(&upstream.value) {
            let known: Vec<&str> = stack
                .iter()
                .filter(|e| !e.branches.is_preview() && e.env != own.env)
                .map(|e| e.env.as_str())
                .collect();
            Some(format!(
                "{:?} is not an environment of this stack with a `branch:` (known: {})",
                upstream.value,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            issues.at(
                upstream.referenced,
                format!("stack[{index}].{name}"),
                problem,
            );
        }
    }
    let previews: Vec<&StackEntry> = stack.iter().filter(|e| e.branches.is_preview()).collect();
    for exact in stack.iter().filter(|e| !e.branches.is_preview()) {
        // A preview for `preview-x` must not collide with a fixed environment.
        if previews
            .iter()
            .any(|p| exact.env.starts_with(&format!("{}-", p.env)))
        {
            issues.at(Location::UNKNOWN, "stack", format!("environment {:?} could collide with the previews named after a glob entry; rename one", exact.env));
        }
    }
    (source, stack)
}

fn validate_pipeline(raw: RawPipeline, issues: &mut Issues<'_>) -> Option<PipelineConfig> {
    check_api_version(&raw.api_version, issues);
    let executor = raw
        .executor
        .map(|executor| executor_of(executor, "executor", issues));
    if let Some(image) = &raw.image
        && let Err(message) = check_template(&image.value)
    {
        issues.at(image.referenced, "image", message);
    }
    if raw.steps.value.is_empty() {
        issues.at(
            raw.steps.referenced,
            "steps",
            "a pipeline needs at least one step",
        );
    }
    let mut names = BTreeSet::new();
    let mut steps = Vec::new();
    for (index, step) in raw.steps.value.into_iter().enumerate() {
        let field = |name: &str| format!("steps[{index}].{name}");
        match step {
            RawStep::Deploy => {
                if !names.insert("deploy".to_string()) {
                    issues.at(
                        raw.steps.referenced,
                        format!("steps[{index}]"),
                        "`deploy` appears more than once",
                    );
                }
                steps.push(Step::Deploy);
            }
            RawStep::Command(mut step) => {
                let (image, image_build) = match step.image.take() {
                    Some(Spanned {
                        value: RawStepImage::Build(build),
                        referenced,
                        ..
                    }) => (None, Some((build, referenced))),
                    Some(Spanned {
                        value: RawStepImage::Reference(reference),
                        referenced,
                        defined,
                    }) => (
                        Some(Spanned {
                            value: reference,
                            referenced,
                            defined,
                        }),
                        None,
                    ),
                    None => (None, None),
                };
                let image_build =
                    image_build.map(|(build, _)| image_step(*build, &mut step, &field, issues));
                let name_at = step
                    .name
                    .as_ref()
                    .map_or(raw.steps.referenced, |n| n.referenced);
                let name = match (&step.name, &image_build) {
                    (Some(name), _) => name.value.clone(),
                    (None, Some(_)) => crate::gitops::image::DEFAULT_NAME.to_string(),
                    (None, None) => {
                        issues.at(name_at, field("name"), "a step needs a `name`");
                        String::new()
                    }
                };
                let run = match (step.run, &image_build) {
                    (_, Some(build)) => Spanned {
                        value: build.script(),
                        referenced: name_at,
                        defined: name_at,
                    },
                    (Some(run), None) => run,
                    (None, None) => {
                        issues.at(name_at, field("run"), "a step needs a `run` command (or is `- deploy`, or builds an image with `image: {repository: …}`)");
                        Spanned {
                            value: "true".to_string(),
                            referenced: name_at,
                            defined: name_at,
                        }
                    }
                };
                if name.is_empty() {
                } else if !valid_step_name(&name) {
                    issues.at(name_at, field("name"), format!("{name:?} is not a valid step name: lowercase letters, digits, `-`, `_` or `.`, at most 63 characters"));
                } else if name == "deploy" {
                    issues.at(
                        name_at,
                        field("name"),
                        "`deploy` is the built-in deploy step; write it as `- deploy`",
                    );
                } else if !names.insert(name.clone()) {
                    issues.at(
                        name_at,
                        field("name"),
                        format!("duplicate step name {name:?}"),
                    );
                }
                if run.value.trim().is_empty() {
                    issues.at(run.referenced, field("run"), "the command is empty");
                }
                let timeout_seconds = match &step.timeout {
                    Some(timeout) if timeout.value.as_secs() > MAX_STEP_TIMEOUT => {
                        issues.at(
                            timeout.referenced,
                            field("timeout"),
                            "a step may run at most 24h",
                        );
                        MAX_STEP_TIMEOUT
                    }
                    Some(timeout) => timeout.value.as_secs(),
                    None => DEFAULT_STEP_TIMEOUT,
                };
                let secrets = secret_names(&step.secrets, &field("secrets"), issues);
                let mut reports = Vec::new();
                for report in &step.reports {
                    if let Err(message) = check_relative_path(&report.value) {
                        issues.at(report.referenced, field("reports"), message);
                    }
                    reports.push(report.value.clone());
                }
                let mut cache = Vec::new();
                for folder in &step.cache {
                    if let Err(message) = check_cache_folder(&folder.value) {
                        issues.at(folder.referenced, field("cache"), message);
                    }
                    cache.push(folder.value.trim_end_matches('/').to_string());
                }
                let env = env_map(step.env, &field("env"), issues);
                let resources = resources(step.resources, &field("resources"), issues);
                let network = network(step.network, &field("network"), issues);
                let executor = step
                    .executor
                    .map(|executor| executor_of(executor, &field("executor"), issues));
                if let Some(image) = &image
                    && let Err(message) = check_image(&image.value)
                {
                    issues.at(image.referenced, field("image"), message.0);
                }
                steps.push(Step::Command(CommandStep {
                    image: image.map(|image| image.value),
                    executor,
                    // An image step builds the artifact by definition.
                    build: step.build || image_build.is_some(),
                    image_build,
                    name,
                    run: run.value,
                    timeout_seconds,
                    secrets,
                    reports,
                    cache,
                    env,
                    resources,
                    network,
                }));
            }
        }
    }
    let local = raw.local.map(|local| {
        if local.run.value.trim().is_empty() {
            issues.at(local.run.referenced, "local.run", "the command is empty");
        }
        let health = match local.health {
            Some(health) if !health.value.starts_with('/') => {
                issues.at(
                    health.referenced,
                    "local.health",
                    "expected a path starting with /, e.g. /healthz",
                );
                health.value
            }
            Some(health) => health.value,
            None => "/".to_string(),
        };
        LocalRun {
            run: local.run.value,
            health,
            health_timeout_seconds: local
                .health_timeout
                .map(|t| t.value.as_secs())
                .unwrap_or(DEFAULT_HEALTH_TIMEOUT),
            secrets: secret_names(&local.secrets, "local.secrets", issues),
            env: env_map(local.env, "local.env", issues),
            resources: resources(local.resources, "local.resources", issues),
            network: match local.network {
                Some(text) if text.value == "none" => {
                    issues.at(
                        text.referenced,
                        "local.network",
                        "a local app must be reachable: use `default` or `host`",
                    );
                    StepNetwork::Default
                }
                other => network(other, "local.network", issues),
            },
        }
    });
    let private = raw
        .private
        .into_iter()
        .filter_map(|path| {
            let clean = path.value.trim().trim_end_matches('/').to_string();
            let escapes = clean.is_empty()
                || clean.starts_with('/')
                || clean.split('/').any(|part| part.is_empty() || part == "." || part == "..");
            if escapes {
                issues.at(
                    path.referenced,
                    "private",
                    format!(
                        "{:?} is not a path inside the app's pipeline folder (e.g. `scripts/release-keys.sh`)",
                        path.value
                    ),
                );
                None
            } else {
                Some(clean)
            }
        })
        .collect();
    Some(PipelineConfig {
        image: raw.image.map(|s| s.value),
        steps,
        local,
        private,
        executor,
    })
}

/// `resources:`, each missing value at its documented default.
fn resources(raw: Option<RawResources>, field: &str, issues: &mut Issues<'_>) -> Resources {
    let mut resources = Resources::default();
    let Some(raw) = raw else {
        return resources;
    };
    let mut size = |value: Option<Spanned<String>>, name: &str, into: &mut u64| {
        if let Some(value) = value {
            match parse_bytes(&value.value) {
                Ok(bytes) => *into = bytes,
                Err(message) => issues.at(value.referenced, format!("{field}.{name}"), message),
            }
        }
    };
    size(raw.memory, "memory", &mut resources.memory_bytes);
    size(raw.tmp, "tmp", &mut resources.tmp_bytes);
    if let Some(pids) = raw.pids {
        if (8..=1_000_000).contains(&pids.value) {
            resources.pids = pids.value;
        } else {
            issues.at(
                pids.referenced,
                format!("{field}.pids"),
                "expected a number of processes from 8 to 1000000",
            );
        }
    }
    if let Some(cpu) = raw.cpu {
        match parse_cpu(&cpu.value) {
            Ok(millis) => resources.cpu_millis = millis,
            Err(message) => issues.at(cpu.referenced, format!("{field}.cpu"), message),
        }
    }
    if resources.memory_bytes < 16 << 20 {
        issues.at(
            Location::UNKNOWN,
            format!("{field}.memory"),
            "at least 16Mi: less cannot start a shell",
        );
    }
    resources
}

fn network(raw: Option<Spanned<String>>, field: &str, issues: &mut Issues<'_>) -> StepNetwork {
    let Some(raw) = raw else {
        return StepNetwork::Default;
    };
    StepNetwork::parse(&raw.value).unwrap_or_else(|| {
        issues.at(
            raw.referenced,
            field,
            format!(
                "unknown network {:?}: expected `default` (internet, no host services), `none` or `host`",
                raw.value
            ),
        );
        StepNetwork::Default
    })
}

fn default_stack() -> Vec<StackEntry> {
    let entry = |env: &str, branches: BranchMatch| StackEntry {
        env: env.to_string(),
        ttl_seconds: branches.is_preview().then_some(DEFAULT_PREVIEW_TTL),
        branches,
        targets: vec![LOCAL_TARGET.to_string()],
        url: None,
        namespace: None,
        approval: None,
        variables: BTreeMap::new(),
        rollout_timeout_seconds: super::schema::DEFAULT_ROLLOUT_TIMEOUT,
        stable_after_seconds: super::schema::DEFAULT_STABLE_AFTER.as_secs(),
        self_heal: false,
        freeze: Vec::new(),
        values: None,
        chart: None,
        promote_from: None,
        requires: None,
        strategy: super::strategy::Strategy::Rolling,
        rings: None,
    };
    // Staging is protected like production (the seed: "releases to staging
    // and production need an admin's approval"); a team that wants an open
    // staging writes its stack without `approval` on it.
    vec![
        entry("preview", BranchMatch::Glob("*".into())),
        StackEntry {
            approval: Some(ApprovalPolicy::one_admin()),
            ..entry("staging", BranchMatch::Exact("latest".into()))
        },
        StackEntry {
            approval: Some(ApprovalPolicy::one_admin()),
            ..entry("production", BranchMatch::Exact("master".into()))
        },
    ]
}

fn check_api_version(version: &Spanned<String>, issues: &mut Issues<'_>) {
    if version.value != API_VERSION {
        issues.at(
            version.referenced,
            "apiVersion",
            format!("expected {API_VERSION:?}, found {:?}", version.value),
        );
    }
}

/// The built-in image step, checked: paths inside the checkout, a
/// repository with its registry, a secret name for the credentials — and
/// nothing that would give the build more than a command step gets.
fn image_step(
    build: RawImageBuild,
    step: &mut RawCommandStep,
    field: &dyn Fn(&str) -> String,
    issues: &mut Issues<'_>,
) -> ImageBuild {
    let mut path = |raw: Option<Spanned<String>>, name: &str, default: String| match raw {
        Some(path) => {
            if let Err(message) = check_relative_path(&path.value) {
                issues.at(path.referenced, field(&format!("image.{name}")), message);
            }
            path.value.trim_end_matches('/').to_string()
        }
        None => default,
    };
    let context = path(build.context, "context", ".".to_string());
    let default_dockerfile = match context.as_str() {
        "." => "Dockerfile".to_string(),
        context => format!("{context}/Dockerfile"),
    };
    let dockerfile = path(build.dockerfile, "dockerfile", default_dockerfile);
    let repository = match Repository::parse(&build.repository.value) {
        Ok(repository) => repository,
        Err(message) => {
            issues.at(
                build.repository.referenced,
                field("image.repository"),
                message.0,
            );
            Repository {
                registry: "registry.invalid".to_string(),
                name: "invalid".to_string(),
            }
        }
    };
    let credentials = build.credentials.map(|secret| {
        if let Err(message) = check_env_name(&secret.value) {
            issues.at(
                secret.referenced,
                field("image.credentials"),
                format!("secret {:?}: {message}", secret.value),
            );
        }
        secret.value
    });
    if let Some(first) = step.secrets.first() {
        issues.at(first.referenced, field("secrets"), "an image step gets no secrets: its build runs the checkout's Dockerfile; name the registry's secret in `image.credentials` (Gantry pushes, the build never sees it)");
    }
    if let Some(executor) = &step.executor {
        issues.at(
            executor.referenced,
            field("executor"),
            "an image step is built in this host's sandbox: it takes no `executor`",
        );
    }
    if let Some(run) = &step.run {
        issues.at(run.referenced, field("run"), "an image step is built by Gantry: it takes no `run` (write a command step for anything else)");
    }
    if let Some(network) = step.network.as_ref().filter(|n| n.value != "default") {
        // `none` leaves it no base image; `host` would hand the build —
        // root of its namespace — the host's loopback and metadata.
        issues.at(
            network.referenced,
            field("network"),
            "an image step builds on its own network (`default`): it fetches base images there and reaches nothing of the host's",
        );
    }
    ImageBuild {
        context,
        dockerfile,
        repository,
        credentials,
    }
}

fn secret_names(raw: &[Spanned<String>], field: &str, issues: &mut Issues<'_>) -> Vec<String> {
    let mut names = Vec::new();
    for secret in raw {
        if let Err(message) = check_env_name(&secret.value) {
            issues.at(
                secret.referenced,
                field,
                format!("secret {:?}: {message}", secret.value),
            );
        }
        names.push(secret.value.clone());
    }
    names
}

fn env_map(
    raw: BTreeMap<String, Spanned<String>>,
    field: &str,
    issues: &mut Issues<'_>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (key, value) in raw {
        if let Err(message) = check_env_name(&key) {
            issues.at(value.referenced, format!("{field}.{key}"), message);
        }
        env.insert(key, value.value);
    }
    env
}

/// Names for environments and apps: they appear in hostnames
/// (`<env>--<app>.localhost`), namespaces and paths.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=30).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !name.contains("--")
        && !name.ends_with('-')
}

fn valid_step_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && !name.starts_with('.')
}

/// Environment variable names a step may set or receive.
fn check_env_name(name: &str) -> Result<(), Rejected> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(
            format!("{name:?} is not a variable name: uppercase letters, digits and `_`").into(),
        );
    }
    if name.starts_with("GANTRY_") || name == "PORT" || name == "PATH" || name == "HOME" {
        return Err(format!("{name:?} is reserved for Gantry").into());
    }
    Ok(())
}

fn check_source(source: &str) -> Result<(), Rejected> {
    if source.is_empty() {
        return Err("`source` must name the app's git repository".into());
    }
    let has_scheme = ["file://", "http://", "https://", "ssh://", "git://"]
        .iter()
        .any(|s| source.starts_with(s));
    let scp_like = !source.contains("://") && source.contains('@') && source.contains(':');
    if has_scheme || scp_like || source.starts_with('/') {
        Ok(())
    } else {
        Err(format!("{source:?} is not a git URL or an absolute path").into())
    }
}

fn check_relative_path(path: &str) -> Result<(), Rejected> {
    let escapes = path.starts_with('/') || path.split('/').any(|part| part == "..");
    if path.is_empty() || escapes {
        Err(format!("{path:?} must be a path inside the checkout (relative, without ..)").into())
    } else {
        Ok(())
    }
}

/// A `cache:` folder: a plain path inside the checkout (no `.`, `..` or
/// root), never the checkout itself.
fn check_cache_folder(path: &str) -> Result<(), Rejected> {
    let path = path.trim_end_matches('/');
    let plain = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if plain {
        Ok(())
    } else {
        Err(format!(
            "{path:?} must be a folder inside the checkout, like node_modules or vendor/bundle (relative, without . or ..)"
        )
        .into())
    }
}

fn check_template(template: &str) -> Result<(), Rejected> {
    let env = minijinja::Environment::new();
    env.template_from_str(template)
        .map(|_| ())
        .map_err(|error| Rejected(format!("template error: {error}")))
}

#[cfg(test)]
mod tests;
