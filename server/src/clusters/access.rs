//! What Gantry needs a cluster's credentials to allow — create and delete
//! the environments' namespaces, apply (read, and prune) the kinds it
//! deploys there, read events — asked of the cluster itself with
//! `SelfSubjectAccessReview`, so registering or checking a cluster says
//! what is missing instead of the first deploy failing on it.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::core::GroupVersionKind;

/// One permission Gantry needs: `verb` on `resource` of API `group`, in
/// every namespace, and what for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub verb: &'static str,
    pub group: String,
    pub resource: String,
    pub why: &'static str,
}

impl Need {
    fn core(verb: &'static str, resource: &str, why: &'static str) -> Need {
        Need {
            verb,
            group: String::new(),
            resource: resource.into(),
            why,
        }
    }

    /// `patch deployments.apps (to apply them)`.
    pub fn describe(&self) -> String {
        let resource = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        format!("{} {resource} ({})", self.verb, self.why)
    }
}

/// What every cluster needs, whatever is deployed to it.
fn always() -> Vec<Need> {
    vec![
        Need::core("create", "namespaces", "to create environments' namespaces"),
        Need::core("patch", "namespaces", "to apply environments' namespaces"),
        Need::core("delete", "namespaces", "to tear down previews"),
        Need::core("list", "events", "to show why a rollout is stuck"),
    ]
}

/// What deploying objects of a kind needs (served as `resource` in `group`).
fn for_kind(group: &str, resource: &str) -> Vec<Need> {
    [
        ("patch", "to apply them"),
        ("get", "to wait for their rollout"),
        ("delete", "to prune them"),
    ]
    .into_iter()
    .map(|(verb, why)| Need {
        verb,
        group: group.into(),
        resource: resource.into(),
        why,
    })
    .collect()
}

/// The kinds (apiVersion, kind) of the objects in rendered manifests.
/// Manifests come from app repositories: an apiVersion or kind that could
/// not name an API (`../../api/v1`, `a?b`) is left out rather than put
/// into a discovery URL.
pub fn kinds_in(manifests: &[serde_json::Value]) -> BTreeSet<(String, String)> {
    manifests
        .iter()
        .filter_map(|object| {
            let api_version = object["apiVersion"].as_str()?;
            let kind = object["kind"].as_str()?;
            (names_an_api(api_version, kind)).then(|| (api_version.to_string(), kind.to_string()))
        })
        .collect()
}

/// `group/version` (or a core `version`) and a kind, in the characters
/// Kubernetes allows for them.
fn names_an_api(api_version: &str, kind: &str) -> bool {
    let dns_label = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let (group_ok, version) = match api_version.split_once('/') {
        Some((group, version)) => (
            group.len() <= 253 && group.split('.').all(dns_label),
            version,
        ),
        None => (true, api_version),
    };
    let version_ok = version.len() <= 63
        && !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let kind_ok =
        !kind.is_empty() && kind.len() <= 63 && kind.bytes().all(|b| b.is_ascii_alphanumeric());
    group_ok && version_ok && kind_ok
}

/// What the credentials lack of what Gantry needs with `kinds` in use, one
/// sentence each (a kind the cluster does not serve is said too). `Err`
/// when the cluster could not be asked.
pub async fn missing(
    client: &kube::Client,
    kinds: &BTreeSet<(String, String)>,
) -> Result<Vec<String>, kube::Error> {
    let mut needs: BTreeSet<Need> = always().into_iter().collect();
    let mut unserved = Vec::new();
    for (api_version, kind) in kinds {
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version.as_str()),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((resource, _)) => needs.extend(for_kind(group, &resource.plural)),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                unserved.push(format!(
                    "{kind} ({api_version}): the cluster does not serve this kind"
                ));
            }
            Err(kube::Error::Discovery(_)) => {
                unserved.push(format!(
                    "{kind} ({api_version}): the cluster does not serve this kind"
                ));
            }
            Err(error) => return Err(error),
        }
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut lacking = Vec::new();
    for need in needs {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(need.verb.to_string()),
                    group: Some(need.group.clone()),
                    resource: Some(need.resource.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = reviews.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|status| status.allowed) {
            lacking.push(need.describe());
        }
    }
    lacking.extend(unserved);
    Ok(lacking)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_read_as_rbac_names_them() {
        let need = &for_kind("apps", "deployments")[0];
        assert_eq!(need.describe(), "patch deployments.apps (to apply them)");
        assert_eq!(
            always()[2].describe(),
            "delete namespaces (to tear down previews)"
        );
        let kinds = kinds_in(&[
            serde_json::json!({ "apiVersion": "apps/v1", "kind": "Deployment" }),
            serde_json::json!({ "apiVersion": "apps/v1", "kind": "Deployment" }),
            serde_json::json!({ "kind": "NoVersion" }),
        ]);
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            [("apps/v1".to_string(), "Deployment".to_string())]
        );
    }

    #[test]
    fn an_app_repo_cannot_steer_discovery_elsewhere() {
        let hostile = [
            ("../../api/v1", "Secret"),
            ("apps/v1/../../../api", "Deployment"),
            ("apps/v1?watch=true", "Deployment"),
            ("apps/v1", "Deployment/../x"),
            ("a..b/v1", "Widget"),
            ("/v1", "Widget"),
            ("apps/", "Deployment"),
        ];
        let manifests: Vec<serde_json::Value> = hostile
            .iter()
            .map(|(api_version, kind)| serde_json::json!({ "apiVersion": api_version, "kind": kind }))
            .collect();
        assert!(
            kinds_in(&manifests).is_empty(),
            "{:?}",
            kinds_in(&manifests)
        );
        let fine = [("v1", "ConfigMap"), ("example.com/v1beta1", "Widget")];
        let manifests: Vec<serde_json::Value> = fine
            .iter()
            .map(|(api_version, kind)| serde_json::json!({ "apiVersion": api_version, "kind": kind }))
            .collect();
        assert_eq!(kinds_in(&manifests).len(), 2);
    }
}
