//! Guardrails per app, from the pipeline repo's admin file (`gantry.yaml`
//! at its root), as Argo CD's AppProject sets them: which clusters an app
//! may deploy to, which namespaces, and which cluster-scoped kinds it may
//! create (none unless listed: a ClusterRole or a webhook configuration
//! reaches beyond the app).
//!
//! ```yaml
//! apiVersion: gantry.dev/v1
//! apps:
//!   "*":                      # every app not named below
//!     namespaces: ["{app}-*"]
//!   shop:
//!     clusters: [dev, prod-eu]
//!     namespaces: ["shop-*"]
//!     cluster_kinds: [CustomResourceDefinition]
//! ```
//!
//! An app's own entry replaces the `"*"` one. Without the file, or without
//! an entry for an app, it may use every cluster and namespace and create
//! no cluster-scoped kind (its environment's own Namespace is always its).

use serde::{Deserialize, Serialize};

/// The file, at the pipeline repo's root.
pub const FILE: &str = "gantry.yaml";

/// What one app may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guardrails {
    /// The key of the rule in the file (`apps.shop`, `apps."*"`), for
    /// messages; empty when no rule applies.
    #[serde(default)]
    pub rule: String,
    /// Clusters it may deploy to; `None`: any.
    #[serde(default)]
    pub clusters: Option<Vec<String>>,
    /// Namespace patterns (`*` stands for any characters, `{app}` for the
    /// app's name); `None`: any.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// Cluster-scoped kinds it may create, as `Kind` or `group/Kind`.
    #[serde(default)]
    pub cluster_kinds: Vec<String>,
}

/// Kinds that are cluster-scoped on every Kubernetes: refused when the
/// manifests are rendered, naming their file. Others (custom resources)
/// are known to be once the cluster's discovery says so.
pub const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "CSIDriver",
    "CSINode",
    "ClusterTrustBundle",
    "CustomResourceDefinition",
    "DeviceClass",
    "FlowSchema",
    "IngressClass",
    "IPAddress",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "ResourceSlice",
    "RuntimeClass",
    "ServiceCIDR",
    "StorageClass",
    "StorageVersionMigration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
    "VolumeAttributesClass",
];

impl Guardrails {
    fn named(&self, field: &str) -> String {
        format!("{FILE} {}.{field}", self.rule)
    }

    /// Why `app` may not deploy to `cluster`, if it may not.
    pub fn cluster_refusal(&self, app: &str, cluster: &str) -> Option<String> {
        let allowed = self.clusters.as_ref()?;
        (!allowed.iter().any(|c| c == cluster)).then(|| {
            format!(
                "{app} may not deploy to cluster {cluster}: {} allows {}",
                self.named("clusters"),
                list(allowed)
            )
        })
    }

    /// Why `app` may not deploy into `namespace`, if it may not.
    pub fn namespace_refusal(&self, app: &str, namespace: &str) -> Option<String> {
        let allowed = self.namespaces.as_ref()?;
        let fits = allowed
            .iter()
            .any(|pattern| glob(&pattern.replace("{app}", app), namespace));
        (!fits).then(|| {
            format!(
                "{app} may not deploy into namespace {namespace}: {} allows {}",
                self.named("namespaces"),
                list(allowed)
            )
        })
    }

    /// Why `app` may not create the cluster-scoped `group`/`kind` named
    /// `name`, if it may not. `namespace` is the environment's (its own
    /// Namespace is the app's).
    pub fn kind_refusal(
        &self,
        app: &str,
        group: &str,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Option<String> {
        if kind == "Namespace" && name == namespace {
            return None;
        }
        let allowed = self
            .cluster_kinds
            .iter()
            .any(|k| k == kind || *k == format!("{group}/{kind}"));
        (!allowed).then(|| {
            let rule = if self.rule.is_empty() {
                format!("{FILE} has no guardrails for {app}, and by default an app creates no cluster-scoped kind")
            } else if self.cluster_kinds.is_empty() {
                format!("{} lists none", self.named("cluster_kinds"))
            } else {
                format!("{} allows {}", self.named("cluster_kinds"), list(&self.cluster_kinds))
            };
            format!("{kind}/{name} is cluster-scoped and {app} may not create it: {rule}")
        })
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
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

/// Every app's guardrails, as read from the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminFile {
    pub apps: std::collections::BTreeMap<String, Guardrails>,
    /// The health rules, CEL ones from the file and Lua ones beside it.
    pub health: crate::gitops::health_rules::RuleSet,
    /// Where and how builds run (`builds:`).
    pub builds: super::builds::BuildSettings,
}

impl AdminFile {
    /// What applies to `app`: its own entry, else `"*"`, else the defaults.
    pub fn for_app(&self, app: &str) -> Guardrails {
        self.apps
            .get(app)
            .or_else(|| self.apps.get("*"))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Guardrails {
        Guardrails {
            rule: "apps.shop".into(),
            clusters: Some(vec!["dev".into()]),
            namespaces: Some(vec!["{app}-*".into()]),
            cluster_kinds: vec!["apiextensions.k8s.io/CustomResourceDefinition".into()],
        }
    }

    #[test]
    fn patterns_match_as_globs() {
        assert!(glob("shop-*", "shop-staging"));
        assert!(!glob("shop-*", "shopping"));
        assert!(glob("*-preview-*", "shop-preview-x"));
        assert!(!glob("*-preview-*", "shop-staging"));
        assert!(glob("kube-system", "kube-system"));
        assert!(!glob("a*a", "a"));
    }

    #[test]
    fn each_rule_names_itself_when_it_refuses() {
        let rails = shop();
        assert_eq!(rails.cluster_refusal("shop", "dev"), None);
        let why = rails.cluster_refusal("shop", "prod-us").unwrap();
        assert!(
            why.contains("gantry.yaml apps.shop.clusters allows dev"),
            "{why}"
        );
        assert_eq!(rails.namespace_refusal("shop", "shop-staging"), None);
        let why = rails.namespace_refusal("shop", "kube-system").unwrap();
        assert!(
            why.contains("namespace kube-system") && why.contains("{app}-*"),
            "{why}"
        );
        assert_eq!(
            rails.kind_refusal(
                "shop",
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "widgets.example.com",
                "shop-staging"
            ),
            None
        );
        let why = rails
            .kind_refusal(
                "shop",
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "reader",
                "shop-staging",
            )
            .unwrap();
        assert!(
            why.contains("ClusterRole/reader is cluster-scoped")
                && why
                    .contains("cluster_kinds allows apiextensions.k8s.io/CustomResourceDefinition"),
            "{why}"
        );
        // Its own namespace is the app's; another is not.
        let none = Guardrails::default();
        assert_eq!(
            none.kind_refusal("shop", "", "Namespace", "shop-staging", "shop-staging"),
            None
        );
        let why = none
            .kind_refusal("shop", "", "Namespace", "billing", "shop-staging")
            .unwrap();
        assert!(why.contains("no guardrails for shop"), "{why}");
    }

    #[test]
    fn an_app_without_an_entry_gets_the_default_one() {
        let mut file = AdminFile::default();
        assert_eq!(file.for_app("shop"), Guardrails::default());
        file.apps.insert(
            "*".into(),
            Guardrails {
                rule: "apps.\"*\"".into(),
                ..Guardrails::default()
            },
        );
        file.apps.insert("shop".into(), shop());
        assert_eq!(file.for_app("shop"), shop());
        assert_eq!(file.for_app("billing").rule, "apps.\"*\"");
    }
}
