//! Manifests: an app's `deploy/` folder in the pipeline repo, rendered for
//! one environment and commit. A folder with a `Chart.yaml` is a Helm
//! chart, rendered by `helm template` ([`helm`]). Otherwise every
//! `*.yaml`/`*.yml` file is a minijinja template (strict variables); when
//! `kustomization.yaml` is present the rendered folder is then built with
//! `kustomize build` (or `kubectl kustomize`). The result is validated before anything is
//! applied, labelled and annotated as Gantry's, and kept with the
//! deployment: sealed as applied, redacted for people.

use crate::error::Rejected;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The labels every object Gantry applies carries.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const APP_LABEL: &str = "gantry.dev/app";
pub const ENV_LABEL: &str = "gantry.dev/env";
pub const COMMIT_LABEL: &str = "gantry.dev/commit";
/// Orders a release's objects: each wave is applied and healthy before the
/// next (a whole number; default 0; lower first).
pub const WAVE_ANNOTATION: &str = "gantry.dev/wave";

/// Set to `"false"`, an object is not waited for (a load balancer's
/// address on a cluster that never gives one, a claim bound on first use).
pub const WAIT_ANNOTATION: &str = "gantry.dev/wait";

/// The wave of a rendered (so validated) object: Namespaces and CRDs are
/// applied before every wave, in the lowest.
pub fn wave_of(object: &Value) -> i64 {
    if matches!(
        object["kind"].as_str(),
        Some("Namespace" | "CustomResourceDefinition")
    ) {
        return i64::MIN;
    }
    object["metadata"]["annotations"][WAVE_ANNOTATION]
        .as_str()
        .and_then(|wave| wave.trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{folder} is missing: cluster targets need the app's manifests there")]
    NoManifests { folder: String },
    #[error("{file}: template error: {message}")]
    Template { file: String, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error(
        "{file} needs `kustomize` or `kubectl` on the Gantry server's PATH (Debian: apt-get install kubernetes-client)"
    )]
    NoKustomize { file: String },
    #[error("kustomize failed for {folder}: {message}")]
    Kustomize { folder: String, message: String },
    #[error(
        "{file} makes this a Helm chart: install helm (3 or 4) on the Gantry server's PATH, or set deploy.helm_path to it"
    )]
    NoHelm { file: String },
    #[error("helm could not render {folder}: {message}")]
    Helm { folder: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a template sees.
#[derive(Clone, Debug)]
pub struct RenderContext {
    pub app: String,
    pub env: String,
    pub namespace: String,
    pub branch: String,
    pub commit: String,
    pub image: Option<String>,
    pub url: Option<String>,
    /// The stack entry's variables (`REPLICAS` also sets `replicas`).
    pub variables: BTreeMap<String, String>,
    /// The pipeline-repo commit (an annotation).
    pub pipeline_sha: String,
    /// The stack entry's name (`staging`, `preview`): a chart's
    /// `values-<entry>.yaml`.
    pub stack_entry: String,
    /// The stack entry's `values:` for a chart (last, so they win).
    pub values: Option<Value>,
    /// The `helm` that renders charts.
    pub helm: PathBuf,
    /// A chart from a chart repository (`deploy/` then holds only its
    /// values files, if any).
    pub chart: Option<crate::gitops::schema::ChartSource>,
    /// What the app may create.
    pub guardrails: crate::gitops::guardrails::Guardrails,
    /// What the target clusters serve, for a chart's capability checks
    /// (`.Capabilities`); `None`: Helm's defaults.
    pub capabilities: Option<Capabilities>,
}

/// What every target cluster of an environment serves: the lowest
/// Kubernetes version among them, and the API versions all of them serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `v1.33.0` (a provider's suffix dropped, as chart constraints expect).
    pub kube_version: String,
    /// `v1`, `apps/v1`, `example.com/v1`, …
    pub api_versions: Vec<String>,
}

impl RenderContext {
    fn values(&self) -> BTreeMap<String, String> {
        let mut values = crate::gitops::template::context(
            &self.app,
            &self.env,
            &self.branch,
            &self.commit,
            &self.variables,
        );
        values.insert("namespace".into(), self.namespace.clone());
        values.insert("image".into(), self.image.clone().unwrap_or_default());
        values.insert("url".into(), self.url.clone().unwrap_or_default());
        values.insert(
            "replicas".into(),
            self.variables
                .get("REPLICAS")
                .cloned()
                .unwrap_or_else(|| "1".into()),
        );
        values
    }
}

/// Rendered, validated, labelled objects, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub objects: Vec<Value>,
}

/// A reference to an applied object (what prune works from).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectRef {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(
                f,
                "{}/{} in {ns}",
                self.kind.to_ascii_lowercase(),
                self.name
            ),
            None => write!(f, "{}/{}", self.kind.to_ascii_lowercase(), self.name),
        }
    }
}

impl ObjectRef {
    pub fn of(object: &Value) -> ObjectRef {
        ObjectRef {
            api_version: object["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            kind: object["kind"].as_str().unwrap_or_default().to_string(),
            namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

impl Rendered {
    /// Multi-document YAML of `objects` (the exact manifests).
    pub fn to_yaml(objects: &[Value]) -> String {
        objects
            .iter()
            .map(|object| serde_saphyr::to_string(object).unwrap_or_else(|_| object.to_string()))
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// The same, with every Secret value replaced by a digest: what people
    /// see (the API, the dashboard, diffs).
    pub fn redacted(&self) -> Vec<Value> {
        self.objects.iter().map(redact).collect()
    }

    /// Parses what [`Rendered::to_yaml`] wrote.
    pub fn from_yaml(text: &str) -> Result<Rendered, Rejected> {
        let objects: Vec<Value> =
            serde_saphyr::from_str_multiple(text).map_err(|e| e.to_string())?;
        Ok(Rendered {
            objects: objects.into_iter().filter(|o| !o.is_null()).collect(),
        })
    }
}

/// A Secret's `data` and `stringData` values become `<redacted sha256:…>`.
pub fn redact(object: &Value) -> Value {
    let mut object = object.clone();
    if object["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
                for value in map.values_mut() {
                    let digest = Sha256::digest(value.as_str().unwrap_or_default().as_bytes());
                    let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
                    *value = json!(format!("<redacted sha256:{short}>"));
                }
            }
        }
    }
    object
}

/// Renders `<deploy_dir>` for one environment. `folder` names it in errors
/// (e.g. `apps/shop/deploy`).
pub fn render(
    deploy_dir: &Path,
    folder: &str,
    context: &RenderContext,
) -> Result<Rendered, ManifestError> {
    if context.chart.is_none() && !deploy_dir.is_dir() {
        return Err(ManifestError::NoManifests {
            folder: format!("{folder}/"),
        });
    }
    let objects = if context.chart.is_some() || helm::is_chart(deploy_dir) {
        chart_objects(deploy_dir, folder, context)?
    } else {
        template_objects(deploy_dir, folder, context)?
    };
    checked(objects, folder, context)
}

/// A chart's objects, each with the chart file and document it came from.
fn chart_objects(
    deploy_dir: &Path,
    folder: &str,
    context: &RenderContext,
) -> Result<Vec<(String, usize, Value)>, ManifestError> {
    let mut objects = Vec::new();
    for document in helm::template(deploy_dir, folder, context)? {
        let docs: Vec<Value> = serde_saphyr::from_str_multiple(&document.text).map_err(|e| {
            ManifestError::Invalid {
                file: document.file.clone(),
                message: e.to_string(),
            }
        })?;
        for (index, object) in docs.into_iter().enumerate() {
            objects.push((document.file.clone(), index + 1, object));
        }
    }
    Ok(objects)
}

/// The objects of a folder of templates (and a kustomization).
fn template_objects(
    deploy_dir: &Path,
    folder: &str,
    context: &RenderContext,
) -> Result<Vec<(String, usize, Value)>, ManifestError> {
    let mut files = Vec::new();
    collect_yaml(deploy_dir, deploy_dir, &mut files)?;
    let values = context.values();
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let mut rendered_files = Vec::new();
    for relative in &files {
        let path = deploy_dir.join(relative);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let file = format!("{folder}/{}", relative.display());
        let output = env
            .render_str(&text, &values)
            .map_err(|e| ManifestError::Template {
                file: file.clone(),
                message: e.to_string(),
            })?;
        rendered_files.push((relative.clone(), file, output));
    }

    let kustomization = rendered_files.iter().find(|(relative, _, _)| {
        relative.parent().is_none_or(|p| p.as_os_str().is_empty())
            && matches!(
                relative.file_name().and_then(|n| n.to_str()),
                Some("kustomization.yaml" | "kustomization.yml")
            )
    });
    let mut objects: Vec<(String, usize, Value)> = Vec::new();
    if let Some((_, kustomization_file, _)) = kustomization {
        let output = kustomize(&rendered_files, kustomization_file, folder)?;
        let docs: Vec<Value> =
            serde_saphyr::from_str_multiple(&output).map_err(|e| ManifestError::Invalid {
                file: format!("{folder} (kustomize output)"),
                message: e.to_string(),
            })?;
        objects.extend(
            docs.into_iter()
                .enumerate()
                .map(|(i, doc)| (format!("{folder} (kustomize output)"), i + 1, doc)),
        );
    } else {
        for (_, file, output) in &rendered_files {
            let docs: Vec<Value> =
                serde_saphyr::from_str_multiple(output).map_err(|e| ManifestError::Invalid {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
            objects.extend(
                docs.into_iter()
                    .enumerate()
                    .map(|(i, doc)| (file.clone(), i + 1, doc)),
            );
        }
    }
    Ok(objects)
}

/// Validates, labels and orders rendered objects.
fn checked(
    objects: Vec<(String, usize, Value)>,
    folder: &str,
    context: &RenderContext,
) -> Result<Rendered, ManifestError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (file, index, object) in objects {
        if object.is_null() {
            continue;
        }
        let place = |message: Rejected| ManifestError::Invalid {
            file: file.clone(),
            message: format!("document {index}: {message}"),
        };
        let object = validate(object, context).map_err(place)?;
        let reference = ObjectRef::of(&object);
        let group = reference
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default();
        if crate::gitops::guardrails::CLUSTER_SCOPED.contains(&reference.kind.as_str())
            && let Some(why) = context.guardrails.kind_refusal(
                &context.app,
                &group,
                &reference.kind,
                &reference.name,
                &context.namespace,
            )
        {
            return Err(place(why.into()));
        }
        // Written with the environment's namespace or without it, one object.
        let namespace = reference
            .namespace
            .clone()
            .filter(|ns| *ns != context.namespace);
        if !seen.insert((
            group,
            reference.kind.clone(),
            namespace,
            reference.name.clone(),
        )) {
            return Err(place(format!("{reference} is defined twice").into()));
        }
        out.push(object);
    }
    if out.is_empty() {
        return Err(ManifestError::Invalid {
            file: format!("{folder}/"),
            message: "no Kubernetes objects in the manifests".into(),
        });
    }
    // Namespaces and CRDs before everything (what lives in them may be in
    // any wave), then the rest by wave.
    out.sort_by_key(|o| match o["kind"].as_str() {
        Some("Namespace") => (0, i64::MIN),
        Some("CustomResourceDefinition") => (1, i64::MIN),
        _ => (2, wave_of(o)),
    });
    Ok(Rendered { objects: out })
}

fn collect_yaml(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ManifestError::Io { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io(dir))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_yaml(root, &path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

fn kustomize(
    files: &[(PathBuf, String, String)],
    kustomization_file: &str,
    folder: &str,
) -> Result<String, ManifestError> {
    let dir = tempfile::tempdir().map_err(|source| ManifestError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    for (relative, _, text) in files {
        let path = dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ManifestError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
    }
    let target = dir.path().display().to_string();
    let attempts: [(&str, Vec<&str>); 2] = [
        ("kustomize", vec!["build", &target]),
        ("kubectl", vec!["kustomize", &target]),
    ];
    for (program, args) in attempts {
        let mut command = std::process::Command::new(program);
        command.args(&args);
        match process::output(command, process::RENDER_TIMEOUT) {
            Ok(output) if output.status.success() => {
                return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
            }
            Ok(output) => {
                return Err(ManifestError::Kustomize {
                    folder: folder.to_string(),
                    message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(ManifestError::Kustomize {
                    folder: folder.to_string(),
                    message: error.to_string(),
                });
            }
        }
    }
    Err(ManifestError::NoKustomize {
        file: kustomization_file.to_string(),
    })
}

fn valid_subdomain(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

/// Checks one object and marks it as Gantry's.
fn validate(mut object: Value, context: &RenderContext) -> Result<Value, Rejected> {
    if !object.is_object() {
        return Err("expected a mapping (a Kubernetes object)".into());
    }
    let api_version = object["apiVersion"]
        .as_str()
        .ok_or("`apiVersion` is missing")?
        .to_string();
    if api_version.is_empty() || api_version.split('/').count() > 2 {
        return Err(format!("`apiVersion` {api_version:?} is not group/version or version").into());
    }
    let kind = object["kind"]
        .as_str()
        .ok_or("`kind` is missing")?
        .to_string();
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or("`metadata.name` is missing")?
        .to_string();
    if !valid_subdomain(&name) {
        return Err(format!("metadata.name {name:?} is not a lowercase RFC 1123 name").into());
    }
    if kind != "Namespace"
        && let Some(namespace) = object["metadata"]["namespace"].as_str()
        && namespace != context.namespace
    {
        return Err(format!(
            "{kind}/{name} sets namespace {namespace:?}; objects of this environment go to {:?} (leave `namespace` out)",
            context.namespace
        ).into());
    }
    if !object["metadata"]["labels"].is_object() && !object["metadata"]["labels"].is_null() {
        return Err("`metadata.labels` must be a mapping".into());
    }
    let labels = object["metadata"]
        .as_object_mut()
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
        .ok_or("`metadata` must be a mapping")?;
    labels[MANAGED_BY] = json!("gantry");
    labels[APP_LABEL] = json!(context.app);
    labels[ENV_LABEL] = json!(context.env);
    labels[COMMIT_LABEL] = json!(context.commit);
    let annotations = object["metadata"]
        .as_object_mut()
        .map(|m| m.entry("annotations").or_insert_with(|| json!({})))
        .ok_or("`metadata` must be a mapping")?;
    if !annotations.is_object() {
        return Err("`metadata.annotations` must be a mapping".into());
    }
    if let Some(wave) = annotations.get(WAVE_ANNOTATION)
        && wave
            .as_str()
            .and_then(|w| w.trim().parse::<i64>().ok())
            .is_none()
    {
        return Err(format!(
            "{kind}/{name}: annotation {WAVE_ANNOTATION} is {wave}; it must be a whole number in quotes (\"-1\", \"0\", \"2\")"
        )
        .into());
    }
    hooks::of(&object)?;
    let annotations = &mut object["metadata"]["annotations"];
    annotations["gantry.dev/commit"] = json!(context.commit);
    annotations["gantry.dev/pipeline-sha"] = json!(context.pipeline_sha);
    annotations["gantry.dev/branch"] = json!(context.branch);
    Ok(object)
}

pub mod helm;
pub mod hooks;
mod process;

#[cfg(test)]
mod tests;
