//! What Gantry needs a cluster's credentials to allow — create and delete
//! the environments' namespaces, apply (read, and prune) the kinds it
//! deploys there, read events — asked of the cluster itself with
//! `SelfSubjectAccessReview`, so registering or checking a cluster says
//! what is missing instead of the first deploy failing on it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::core::GroupVersion;

/// How many kinds one check looks at: app repositories choose the kinds,
/// and a check must end in bounded time whatever they choose.
pub const MAX_KINDS: usize = 64;
/// How long one discovery or review may take.
const PER_REQUEST: Duration = Duration::from_secs(5);
/// Reviews asked at once.
const PARALLEL: usize = 8;

/// One permission Gantry needs: `verb` on `resource` of API `group`, in
/// every namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    verb: &'static str,
    group: String,
    resource: String,
}

/// What a permission is for, and (for kinds from manifests) which
/// environments' manifests need it.
#[derive(Clone, Debug, Default)]
struct Purpose {
    why: &'static str,
    used_by: BTreeSet<String>,
}

impl Permission {
    fn new(verb: &'static str, group: &str, resource: &str) -> Permission {
        Permission {
            verb,
            group: group.into(),
            resource: resource.into(),
        }
    }

    /// `patch deployments.apps (to apply them; for shop/production)`.
    fn describe(&self, purpose: &Purpose) -> String {
        let resource = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let mut users: Vec<&str> = purpose.used_by.iter().map(String::as_str).take(3).collect();
        let more = purpose.used_by.len().saturating_sub(users.len());
        let more = format!("{more} more");
        if purpose.used_by.len() > users.len() {
            users.push(&more);
        }
        if users.is_empty() {
            format!("{} {resource} ({})", self.verb, purpose.why)
        } else {
            format!(
                "{} {resource} ({}; for {})",
                self.verb,
                purpose.why,
                users.join(", ")
            )
        }
    }
}

/// What every cluster needs, whatever is deployed to it.
fn always() -> Vec<(Permission, &'static str)> {
    vec![
        (
            Permission::new("create", "", "namespaces"),
            "to create environments' namespaces",
        ),
        (
            Permission::new("patch", "", "namespaces"),
            "to apply environments' namespaces",
        ),
        (
            Permission::new("get", "", "namespaces"),
            "to see a namespace is gone",
        ),
        (
            Permission::new("delete", "", "namespaces"),
            "to tear down previews",
        ),
        (
            Permission::new("list", "", "events"),
            "to show why a rollout is stuck",
        ),
    ]
}

/// What deploying objects of a kind needs (served as `resource` in
/// `group`): a server-side apply that creates an object is authorized as
/// `create` as well as `patch`.
fn for_kind(group: &str, resource: &str) -> Vec<(Permission, &'static str)> {
    [
        ("create", "to create them"),
        ("patch", "to apply them"),
        ("get", "to wait for their rollout"),
        ("delete", "to prune them"),
    ]
    .into_iter()
    .map(|(verb, why)| (Permission::new(verb, group, resource), why))
    .collect()
}

/// The kinds in use: (apiVersion, kind) → the environments (`app/env`)
/// whose manifests have objects of it.
pub type KindsInUse = BTreeMap<(String, String), BTreeSet<String>>;

/// Adds the kinds of `manifests`, used by `user`. Manifests come from app
/// repositories: an apiVersion or kind that could not name an API
/// (`../../api/v1`, `a?b`) is left out rather than put into a discovery
/// URL.
pub fn add_kinds(kinds: &mut KindsInUse, user: &str, manifests: &[serde_json::Value]) {
    for object in manifests {
        let (Some(api_version), Some(kind)) =
            (object["apiVersion"].as_str(), object["kind"].as_str())
        else {
            continue;
        };
        if names_an_api(api_version, kind) {
            kinds
                .entry((api_version.to_string(), kind.to_string()))
                .or_default()
                .insert(user.to_string());
        }
    }
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
/// sentence each, sorted; a kind the cluster does not serve, or that could
/// not be looked up, is said too, each on its own. `Err` only when the
/// cluster answers no access review at all.
pub async fn missing(
    client: &kube::Client,
    kinds: &KindsInUse,
) -> Result<Vec<String>, kube::Error> {
    let mut needs: BTreeMap<Permission, Purpose> = BTreeMap::new();
    let mut add = |permission: Permission, why: &'static str, users: Option<&BTreeSet<String>>| {
        let purpose = needs.entry(permission).or_insert_with(|| Purpose {
            why,
            used_by: BTreeSet::new(),
        });
        if let Some(users) = users {
            purpose.used_by.extend(users.iter().cloned());
        }
    };
    for (permission, why) in always() {
        add(permission, why, None);
    }
    let mut notes = Vec::new();
    if kinds.len() > MAX_KINDS {
        notes.push(format!(
            "{} kinds in use were not checked (a check looks at {MAX_KINDS})",
            kinds.len() - MAX_KINDS
        ));
    }
    // Discovery once per group version.
    let mut served: BTreeMap<String, Result<Vec<(String, String)>, LookupError>> = BTreeMap::new();
    for ((api_version, kind), users) in kinds.iter().take(MAX_KINDS) {
        if !served.contains_key(api_version) {
            served.insert(api_version.clone(), discover(client, api_version).await);
        }
        match &served[api_version] {
            Ok(resources) => match resources.iter().find(|(k, _)| k == kind) {
                Some((_, plural)) => {
                    let group = api_version.split_once('/').map_or("", |(g, _)| g);
                    for (permission, why) in for_kind(group, plural) {
                        add(permission, why, Some(users));
                    }
                }
                None => notes.push(format!(
                    "{kind} ({api_version}): the cluster does not serve this kind"
                )),
            },
            Err(error) => notes.push(format!("{kind} ({api_version}): {error}")),
        }
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    // Owned, so the reviews' futures borrow nothing (they run in handlers).
    let asks: Vec<(Permission, String)> = needs
        .iter()
        .map(|(permission, purpose)| (permission.clone(), permission.describe(purpose)))
        .collect();
    let answers: Vec<(String, Result<bool, kube::Error>)> = futures_util::stream::iter(asks)
        .map(|(permission, description)| {
            let reviews = reviews.clone();
            async move { (description, allowed(&reviews, &permission).await) }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut lacking = Vec::new();
    let mut failed = None;
    for (description, answer) in answers {
        match answer {
            Ok(true) => {}
            Ok(false) => lacking.push(description),
            Err(error) => failed = Some(error),
        }
    }
    if lacking.is_empty()
        && let Some(error) = failed
    {
        return Err(error);
    }
    lacking.extend(notes);
    Ok(lacking)
}

/// Why the kinds of a group version could not be looked up (said on the
/// kind's own line of the check).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LookupError(String);

/// The kinds a group version serves: (kind, plural).
async fn discover(
    client: &kube::Client,
    api_version: &str,
) -> Result<Vec<(String, String)>, LookupError> {
    let version: GroupVersion = api_version
        .parse()
        .map_err(|_| LookupError("not a valid apiVersion".to_string()))?;
    match tokio::time::timeout(
        PER_REQUEST,
        kube::discovery::oneshot::pinned_group(client, &version),
    )
    .await
    {
        Ok(Ok(group)) => Ok(group
            .versioned_resources(&version.version)
            .into_iter()
            .map(|(resource, _)| (resource.kind, resource.plural))
            .collect()),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Ok(Vec::new()),
        Ok(Err(error)) => Err(LookupError(format!("could not be looked up: {error}"))),
        Err(_) => Err(LookupError(format!(
            "could not be looked up: no answer within {}s",
            PER_REQUEST.as_secs()
        ))),
    }
}

/// Whether the credentials may do `permission`, in every namespace.
async fn allowed(
    reviews: &Api<SelfSubjectAccessReview>,
    permission: &Permission,
) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(permission.verb.to_string()),
                group: Some(permission.group.clone()),
                resource: Some(permission.resource.clone()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    match tokio::time::timeout(PER_REQUEST, reviews.create(&PostParams::default(), &review)).await {
        Ok(answer) => Ok(answer?.status.is_some_and(|status| status.allowed)),
        Err(_) => Err(kube::Error::Service(
            format!(
                "no answer to an access review within {}s",
                PER_REQUEST.as_secs()
            )
            .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_of(pairs: &[(&str, &str)]) -> KindsInUse {
        let manifests: Vec<serde_json::Value> = pairs
            .iter()
            .map(|(api_version, kind)| serde_json::json!({ "apiVersion": api_version, "kind": kind }))
            .collect();
        let mut kinds = KindsInUse::new();
        add_kinds(&mut kinds, "shop/preview", &manifests);
        kinds
    }

    #[test]
    fn needs_read_as_rbac_names_them_with_who_needs_them() {
        let (permission, why) = for_kind("apps", "deployments").remove(1);
        let mut purpose = Purpose {
            why,
            used_by: BTreeSet::new(),
        };
        assert_eq!(
            permission.describe(&purpose),
            "patch deployments.apps (to apply them)"
        );
        for user in ["shop/a", "shop/b", "shop/c", "shop/d", "shop/e"] {
            purpose.used_by.insert(user.into());
        }
        assert_eq!(
            permission.describe(&purpose),
            "patch deployments.apps (to apply them; for shop/a, shop/b, shop/c, 2 more)"
        );
        let kinds = kinds_of(&[
            ("apps/v1", "Deployment"),
            ("apps/v1", "Deployment"),
            ("", "NoVersion"),
        ]);
        assert_eq!(
            kinds.keys().cloned().collect::<Vec<_>>(),
            [("apps/v1".to_string(), "Deployment".to_string())]
        );
    }

    #[test]
    fn an_app_repo_cannot_steer_discovery_elsewhere() {
        let hostile = kinds_of(&[
            ("../../api/v1", "Secret"),
            ("apps/v1/../../../api", "Deployment"),
            ("apps/v1?watch=true", "Deployment"),
            ("apps/v1", "Deployment/../x"),
            ("a..b/v1", "Widget"),
            ("/v1", "Widget"),
            ("apps/", "Deployment"),
        ]);
        assert!(hostile.is_empty(), "{hostile:?}");
        assert_eq!(
            kinds_of(&[("v1", "ConfigMap"), ("example.com/v1beta1", "Widget")]).len(),
            2
        );
    }
}
