//! Where command steps run: `executor:` in `pipeline.yaml` (for the
//! pipeline, or one step), and what admins decide in `gantry.yaml`'s
//! `builds:` — which clusters may run builds, the default executor, and
//! the build pods' scheduling and security settings (an app cannot set
//! those: its code would choose its own sandbox).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a command step runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// In a sandbox on the Gantry replica that runs the run.
    Local,
    /// As a pod on a registered cluster.
    Kubernetes(KubernetesExecutor),
}

/// `executor: {kubernetes: {cluster, namespace, image}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesExecutor {
    pub cluster: String,
    pub namespace: String,
    /// The image of steps that name none.
    pub image: Option<String>,
}

/// The namespace build pods go to when the executor names none.
pub const DEFAULT_NAMESPACE: &str = "gantry-builds";

/// `gantry.yaml`'s `builds:` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSettings {
    /// Where apps may build (besides the default executor's place):
    /// `<cluster>` (namespace `gantry-builds`) or `<cluster>/<namespace>`.
    pub clusters: Vec<String>,
    /// The executor of apps whose pipeline names none.
    pub executor: Option<Executor>,
    pub pod: BuildPod,
}

impl BuildSettings {
    /// Whether an app may run builds in `namespace` of `cluster`: an entry
    /// of `clusters` is `<cluster>` (its `gantry-builds` namespace) or
    /// `<cluster>/<namespace>`; the admins' default executor's place is
    /// allowed too. An app never picks another namespace of a build
    /// cluster: its NetworkPolicies, quotas and pod security labels are
    /// the build namespace's.
    pub fn allows(&self, cluster: &str, namespace: &str) -> bool {
        self.clusters.iter().any(|entry| {
            let (c, n) = entry.split_once('/').unwrap_or((entry, DEFAULT_NAMESPACE));
            c == cluster && n == namespace
        }) || matches!(&self.executor, Some(Executor::Kubernetes(k)) if k.cluster == cluster && k.namespace == namespace)
    }
}

/// The pod settings only admins set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildPod {
    pub node_selector: BTreeMap<String, String>,
    /// Kubernetes tolerations, as written in a pod spec.
    pub tolerations: Vec<Toleration>,
    pub runtime_class: Option<String>,
    /// The service account build pods run as (its token is never mounted).
    pub service_account: Option<String>,
    pub security: PodSecurity,
    /// Steps' root filesystem read-only (their workspace, home and /tmp
    /// stay writable). Off for images whose tools write elsewhere.
    pub read_only_root: bool,
}

/// A pod toleration (`key`, `operator`, `value`, `effect`,
/// `tolerationSeconds`), as a pod spec writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl Default for BuildPod {
    fn default() -> Self {
        BuildPod {
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            runtime_class: None,
            service_account: None,
            security: PodSecurity::Restricted,
            read_only_root: true,
        }
    }
}

/// The Pod Security Standards level build pods meet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodSecurity {
    /// Non-root, no capabilities, no privilege escalation, RuntimeDefault
    /// seccomp.
    #[default]
    Restricted,
    /// The image's own user (root, maybe); still no privilege escalation
    /// and no host namespaces.
    Baseline,
}
