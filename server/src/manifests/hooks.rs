//! Hooks: objects that are run at a point of a deploy instead of being
//! applied with the rest — a migration Job before the new version, a smoke
//! Job after it, a clean-up when a deploy fails or an environment is
//! deleted. Gantry's own annotation names the phase:
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     gantry.dev/hook: pre-deploy          # post-deploy | on-failure | pre-delete
//!     gantry.dev/hook-weight: "-1"         # lower first within a phase
//!     gantry.dev/hook-delete-policy: hook-succeeded   # default: before-hook-creation
//! ```
//!
//! A chart's Helm hooks (`helm.sh/hook`, `helm.sh/hook-weight`,
//! `helm.sh/hook-delete-policy`) mean the same: `pre-install` and
//! `pre-upgrade` are pre-deploy hooks, `post-install` and `post-upgrade`
//! post-deploy ones, `pre-rollback`/`post-rollback` run on a rollback only,
//! and `pre-delete` when the environment is deleted.
//!
//! Unlike Argo CD's sync hooks, a pre-deploy hook runs on a rollback too,
//! from the release being rolled back to: its migration is the one that
//! version expects.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::Rejected;

pub const HOOK_ANNOTATION: &str = "gantry.dev/hook";
pub const WEIGHT_ANNOTATION: &str = "gantry.dev/hook-weight";
pub const DELETE_POLICY_ANNOTATION: &str = "gantry.dev/hook-delete-policy";
const HELM_HOOK: &str = "helm.sh/hook";
const HELM_WEIGHT: &str = "helm.sh/hook-weight";
const HELM_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Before anything else is applied; a failure stops the deploy.
    PreDeploy,
    /// Once everything applied is healthy; a failure fails the deploy.
    PostDeploy,
    /// When the deploy failed (at any point), to clean up or alert.
    OnFailure,
    /// Before the environment's namespace is deleted.
    PreDelete,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreDeploy => "pre-deploy",
            Phase::PostDeploy => "post-deploy",
            Phase::OnFailure => "on-failure",
            Phase::PreDelete => "pre-delete",
        }
    }
}

/// What kind of deploy is running, for hooks that run on some only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Occasion {
    /// The first deploy to this target (nothing applied here before).
    Install,
    /// A new version over an older one.
    Upgrade,
    /// A rollback to a stored release.
    Rollback,
}

/// One hook: its phases (each with the occasions it runs on), its order in
/// the phase and what is deleted when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub phases: Vec<(Phase, BTreeSet<Occasion>)>,
    pub weight: i64,
    pub delete: DeletePolicy,
}

/// When Gantry deletes a hook object. Deleting before creating is always
/// done (a Job's template cannot change; the new run must be a new Job);
/// the others also delete it once it finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletePolicy {
    pub on_success: bool,
    pub on_failure: bool,
}

impl Hook {
    /// Whether the hook runs in `phase` on `occasion`.
    pub fn runs(&self, phase: Phase, occasion: Occasion) -> bool {
        self.phases
            .iter()
            .any(|(p, occasions)| *p == phase && occasions.contains(&occasion))
    }
}

/// Whether `object` carries a hook annotation (Gantry's or Helm's).
pub fn is_hook(object: &Value) -> bool {
    let annotations = &object["metadata"]["annotations"];
    annotations[HOOK_ANNOTATION].is_string() || annotations[HELM_HOOK].is_string()
}

/// The hook `object` is, if it is one; an annotation Gantry cannot read is
/// refused with the object's name and the values it takes.
pub fn of(object: &Value) -> Result<Option<Hook>, Rejected> {
    let annotations = &object["metadata"]["annotations"];
    let name = format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("object"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    );
    let text = |key: &str| annotations[key].as_str().map(str::trim);
    let (phases, weight_key, policy_key) = match (text(HOOK_ANNOTATION), text(HELM_HOOK)) {
        (Some(gantry), _) => (
            gantry_phases(gantry, &name)?,
            WEIGHT_ANNOTATION,
            DELETE_POLICY_ANNOTATION,
        ),
        (None, Some(helm)) => (helm_phases(helm, &name)?, HELM_WEIGHT, HELM_DELETE_POLICY),
        (None, None) => return Ok(None),
    };
    // A hook is deleted before each run: a namespace (with everything in
    // it) never is.
    if object["kind"] == "Namespace" {
        return Err(format!(
            "{name}: a Namespace cannot be a hook (running a hook deletes its last object first)"
        )
        .into());
    }
    let weight = match text(weight_key) {
        None | Some("") => 0,
        Some(weight) => weight.parse().map_err(|_| {
            Rejected(format!("{name}: annotation {weight_key} is {weight:?}; it must be a whole number in quotes (\"-1\", \"0\", \"5\")"))
        })?,
    };
    let mut delete = DeletePolicy::default();
    for policy in text(policy_key).unwrap_or_default().split(',') {
        match policy.trim() {
            "" | "before-hook-creation" => {}
            "hook-succeeded" => delete.on_success = true,
            "hook-failed" => delete.on_failure = true,
            other => {
                return Err(format!(
                    "{name}: annotation {policy_key} has {other:?}; it takes before-hook-creation, hook-succeeded and hook-failed (comma-separated)"
                ).into());
            }
        }
    }
    Ok(Some(Hook {
        phases,
        weight,
        delete,
    }))
}

fn every() -> BTreeSet<Occasion> {
    [Occasion::Install, Occasion::Upgrade, Occasion::Rollback].into()
}

fn gantry_phases(value: &str, name: &str) -> Result<Vec<(Phase, BTreeSet<Occasion>)>, Rejected> {
    let mut phases = Vec::new();
    for phase in value.split(',').map(str::trim) {
        let phase = match phase {
            "pre-deploy" => Phase::PreDeploy,
            "post-deploy" => Phase::PostDeploy,
            "on-failure" => Phase::OnFailure,
            "pre-delete" => Phase::PreDelete,
            other => {
                return Err(format!(
                    "{name}: annotation {HOOK_ANNOTATION} is {other:?}; it takes pre-deploy, post-deploy, on-failure or pre-delete"
                ).into());
            }
        };
        phases.push((phase, every()));
    }
    Ok(phases)
}

fn helm_phases(value: &str, name: &str) -> Result<Vec<(Phase, BTreeSet<Occasion>)>, Rejected> {
    let mut phases: Vec<(Phase, BTreeSet<Occasion>)> = Vec::new();
    for hook in value.split(',').map(str::trim) {
        let (phase, occasion) = match hook {
            "pre-install" => (Phase::PreDeploy, Occasion::Install),
            // A rollback is an upgrade to an older version: what the chart
            // runs before an upgrade (its migration) runs before it too.
            "pre-upgrade" => (Phase::PreDeploy, Occasion::Upgrade),
            "pre-rollback" => (Phase::PreDeploy, Occasion::Rollback),
            "post-install" => (Phase::PostDeploy, Occasion::Install),
            "post-upgrade" => (Phase::PostDeploy, Occasion::Upgrade),
            "post-rollback" => (Phase::PostDeploy, Occasion::Rollback),
            "pre-delete" => (Phase::PreDelete, Occasion::Install),
            "post-delete" => {
                return Err(format!(
                    "{name}: Helm hook post-delete cannot run: the namespace it would run in is gone by then; use pre-delete"
                ).into());
            }
            "test" | "test-success" | "test-failure" => {
                return Err(format!(
                    "{name}: a `helm test` hook ({hook}) is not part of a deploy; Gantry renders with --skip-tests, so this one is not under templates/tests/"
                ).into());
            }
            other => {
                return Err(format!(
                    "{name}: annotation {HELM_HOOK} has {other:?}, which is not a Helm hook"
                )
                .into());
            }
        };
        let mut occasions: BTreeSet<Occasion> = match occasion {
            // A pre-delete hook runs whenever the environment goes.
            _ if phase == Phase::PreDelete => every(),
            Occasion::Upgrade => [Occasion::Upgrade, Occasion::Rollback].into(),
            other => [other].into(),
        };
        match phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, existing)) => existing.append(&mut occasions),
            None => phases.push((phase, occasions)),
        }
    }
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(annotations: Value) -> Value {
        json!({ "kind": "Job", "metadata": { "name": "migrate", "annotations": annotations } })
    }

    #[test]
    fn gantry_hooks_run_on_every_occasion_of_their_phase() {
        let hook = of(&object(json!({ HOOK_ANNOTATION: "pre-deploy", WEIGHT_ANNOTATION: "-2", DELETE_POLICY_ANNOTATION: "hook-succeeded" })))
            .unwrap()
            .unwrap();
        assert_eq!(hook.weight, -2);
        assert!(hook.delete.on_success && !hook.delete.on_failure);
        for occasion in [Occasion::Install, Occasion::Upgrade, Occasion::Rollback] {
            assert!(hook.runs(Phase::PreDeploy, occasion));
            assert!(!hook.runs(Phase::PostDeploy, occasion));
        }
        assert_eq!(
            of(&json!({ "kind": "Service", "metadata": { "name": "web" } })),
            Ok(None)
        );
    }

    #[test]
    fn helm_hooks_map_to_phases_and_occasions() {
        let hook = of(&object(json!({ HELM_HOOK: "pre-install,pre-upgrade", HELM_WEIGHT: "5", HELM_DELETE_POLICY: "before-hook-creation,hook-failed" })))
            .unwrap()
            .unwrap();
        assert_eq!(hook.weight, 5);
        assert!(hook.delete.on_failure && !hook.delete.on_success);
        assert!(hook.runs(Phase::PreDeploy, Occasion::Install));
        assert!(hook.runs(Phase::PreDeploy, Occasion::Upgrade));
        assert!(
            hook.runs(Phase::PreDeploy, Occasion::Rollback),
            "a rollback runs the migration of the version it goes to"
        );
        let install_only = of(&object(json!({ HELM_HOOK: "post-install" })))
            .unwrap()
            .unwrap();
        assert!(install_only.runs(Phase::PostDeploy, Occasion::Install));
        assert!(!install_only.runs(Phase::PostDeploy, Occasion::Upgrade));
        let rollback_only = of(&object(json!({ HELM_HOOK: "pre-rollback" })))
            .unwrap()
            .unwrap();
        assert!(rollback_only.runs(Phase::PreDeploy, Occasion::Rollback));
        assert!(!rollback_only.runs(Phase::PreDeploy, Occasion::Upgrade));
    }

    #[test]
    fn an_unreadable_hook_annotation_is_refused_by_name() {
        let refused = |annotations: Value| of(&object(annotations)).unwrap_err().0;
        let why = refused(json!({ HOOK_ANNOTATION: "during" }));
        assert!(
            why.contains("Job/migrate") && why.contains("\"during\"") && why.contains("pre-deploy"),
            "{why}"
        );
        let why = refused(json!({ HOOK_ANNOTATION: "pre-deploy", WEIGHT_ANNOTATION: "soon" }));
        assert!(
            why.contains(WEIGHT_ANNOTATION) && why.contains("whole number"),
            "{why}"
        );
        let namespace = json!({ "kind": "Namespace", "metadata": { "name": "shop-staging", "annotations": { HOOK_ANNOTATION: "pre-deploy" } } });
        assert!(of(&namespace).unwrap_err().0.contains("cannot be a hook"));
        let why = refused(json!({ HELM_HOOK: "post-delete" }));
        assert!(why.contains("pre-delete"), "{why}");
        let why = refused(json!({ HELM_HOOK: "pre-install", HELM_DELETE_POLICY: "never" }));
        assert!(
            why.contains("\"never\"") && why.contains("hook-succeeded"),
            "{why}"
        );
    }
}
