//! Who may do what: the emulated credentials may do everything except the
//! permissions a test denies ([`Denied`]). Denied requests are refused with
//! 403 as RBAC refuses them, and `SelfSubjectAccessReview` (what `kubectl
//! auth can-i` and Gantry's cluster check ask) answers from the same list.

use serde_json::{Value, json};

use crate::resources::Resource;
use crate::store::ApiError;

/// The user the emulator's kubeconfig authenticates as.
pub const USER: &str = "emulator";

/// One permission the credentials lack: `verb` on `resource` (plural) in
/// API `group` (empty for the core group), in every namespace. `"*"`
/// matches any verb or resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

impl Denied {
    pub fn new(verb: &str, group: &str, resource: &str) -> Denied {
        Denied {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
        }
    }

    fn covers(&self, verb: &str, group: &str, resource: &str) -> bool {
        (self.verb == "*" || self.verb == verb)
            && self.group == group
            && (self.resource == "*" || self.resource == resource)
    }
}

/// Whether `verb` on `group`/`resource` is allowed.
pub fn allowed(denied: &[Denied], verb: &str, group: &str, resource: &str) -> bool {
    !denied.iter().any(|d| d.covers(verb, group, resource))
}

/// The 403 a real server sends, worded as RBAC words it.
pub fn forbidden(verb: &str, resource: &Resource, namespace: &str, name: Option<&str>) -> ApiError {
    let what = match name {
        Some(name) => format!("{} \"{name}\"", resource.qualified()),
        None => resource.qualified(),
    };
    let scope = if namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{namespace}\"")
    };
    ApiError {
        code: 403,
        reason: "Forbidden",
        message: format!(
            "{what} is forbidden: User \"{USER}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
            resource.plural, resource.group
        ),
    }
}

/// Answers a `SelfSubjectAccessReview`: the review, with `status.allowed`.
/// Non-resource requests (`/healthz`) are always allowed.
pub fn review(denied: &[Denied], request: &Value) -> Result<Value, ApiError> {
    let spec = &request["spec"];
    let attributes = &spec["resourceAttributes"];
    let allowed = if attributes.is_object() {
        let field = |name: &str| attributes[name].as_str().unwrap_or_default();
        if field("verb").is_empty() {
            return Err(ApiError::invalid(
                "spec.resourceAttributes.verb: Required value",
            ));
        }
        allowed(denied, field("verb"), field("group"), field("resource"))
    } else if spec["nonResourceAttributes"].is_object() {
        true
    } else {
        return Err(ApiError::invalid(
            "spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    // RBAC gives no reason when it does not allow (kubectl prints "no").
    let status = json!({ "allowed": allowed });
    Ok(json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": { "creationTimestamp": null },
        "spec": spec,
        "status": status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_verb_is_refused_and_reviewed_as_such() {
        let denied = [Denied::new("delete", "", "namespaces")];
        assert!(!allowed(&denied, "delete", "", "namespaces"));
        assert!(allowed(&denied, "create", "", "namespaces"));
        assert!(allowed(&denied, "delete", "apps", "namespaces"));
        let answer = review(
            &denied,
            &json!({ "spec": { "resourceAttributes": { "verb": "delete", "resource": "namespaces" } } }),
        )
        .unwrap();
        assert_eq!(answer["status"]["allowed"], json!(false));
    }

    #[test]
    fn a_wildcard_denies_every_verb() {
        let denied = [Denied::new("*", "", "events")];
        assert!(!allowed(&denied, "list", "", "events"));
        assert!(!allowed(&denied, "watch", "", "events"));
        assert!(allowed(&denied, "list", "events.k8s.io", "events"));
    }
}
