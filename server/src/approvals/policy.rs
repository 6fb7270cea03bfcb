//! The approval policy of an environment, as `app.yaml` sets it: how many
//! people must approve, which roles may, whether the author may, whether a
//! fresh sign-in is needed, and when promotions are frozen. Both held runs
//! and change requests are judged here, so the rules cannot drift apart.
//! Pure: the time and the freshness window come in as arguments.

use crate::error::Rejected;
use app::dto::Role;
use app::port::Caller;

use std::time::Duration;

use crate::config::duration::HumanDuration;
use crate::gitops::freeze::{self, Freeze};
use crate::gitops::schema::{ApprovalPolicy, StackEntry};

/// When a sign-in counts as fresh: within `max_age` (`auth.reauth_max_age`)
/// of `now`.
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    pub max_age: Duration,
    pub now: i64,
}

/// The policy an override is judged by: `policy`'s rules (reauth and the
/// rest), decided by admins only.
pub fn admin_only(policy: ApprovalPolicy) -> ApprovalPolicy {
    ApprovalPolicy {
        roles: vec!["admin".into()],
        ..policy
    }
}

/// A change request into an environment without a policy still needs one
/// admin: only admins release.
pub fn for_change_request(entry: Option<&StackEntry>) -> ApprovalPolicy {
    entry
        .and_then(|entry| entry.approval.clone())
        .unwrap_or_else(ApprovalPolicy::one_admin)
}

/// The lowest role the policy accepts (a role includes those above it).
pub fn lowest_role(policy: &ApprovalPolicy) -> Role {
    policy
        .roles
        .iter()
        .filter_map(|r| Role::parse(r))
        .min_by_key(|r| r.rank())
        .unwrap_or(Role::Admin)
}

/// Why `caller` may not decide under `policy` on `app_name`, if they may not:
/// a missing role, or a sign-in older than `auth.reauth_max_age` where the
/// policy demands a fresh one.
pub fn refusal(
    freshness: Freshness,
    caller: &Caller,
    policy: &ApprovalPolicy,
    app_name: &str,
) -> Option<String> {
    let lowest = lowest_role(policy);
    if !caller.me.can(lowest, Some(app_name)) {
        return Some(format!(
            "approving here needs the {lowest} role on {app_name}; {} does not have it",
            caller.me.name
        ));
    }
    if policy.reauth {
        let max_age = i64::try_from(freshness.max_age.as_millis()).unwrap_or(i64::MAX);
        let fresh = caller
            .me
            .auth_time
            .is_some_and(|t| freshness.now - t <= max_age);
        if !fresh {
            let why = if caller.me.auth_time.is_none() {
                " (your sign-in did not say when you authenticated: the identity provider sent no auth_time)"
            } else {
                ""
            };
            return Some(format!(
                "this environment needs a fresh sign-in to approve (within {}){why}; sign in again at /auth/login?fresh=1",
                HumanDuration(freshness.max_age)
            ));
        }
    }
    None
}

/// Refuses an author of the change — its request's author, its pusher —
/// unless the policy allows it.
pub fn self_approval_refusal(
    caller: &Caller,
    policy: &ApprovalPolicy,
    authors: &[i64],
) -> Option<String> {
    (!policy.self_approval && authors.contains(&caller.user_id)).then(|| {
        format!(
            "{} wrote this change and cannot approve it; another approver must",
            caller.me.name
        )
    })
}

/// The freeze in force on the environment at `now`, if any.
pub fn freeze_now(entry: Option<&StackEntry>, now: i64) -> Option<Freeze> {
    entry.and_then(|entry| freeze::active(&entry.freeze, now))
}

/// An override needs a reason people can read later.
pub fn override_reason(reason: &str) -> Result<&str, Rejected> {
    let reason = reason.trim();
    if reason.chars().count() < 5 {
        Err(
            "an override needs a reason (at least 5 characters); it is kept in the audit log"
                .into(),
        )
    } else {
        Ok(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::dto::{Grant, Me};

    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn caller(id: i64, role: Role, app: Option<&str>, auth_time: Option<i64>) -> Caller {
        Caller {
            user_id: id,
            me: Me {
                name: format!("user{id}"),
                grants: vec![Grant {
                    role,
                    app: app.map(str::to_string),
                }],
                csrf: String::new(),
                auth_time,
            },
            via_token: false,
            source_ip: None,
        }
    }

    fn policy(roles: &[&str], reauth: bool, self_approval: bool) -> ApprovalPolicy {
        ApprovalPolicy {
            required: 2,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            self_approval,
            reauth,
            forge_merge: false,
            forge_push: false,
        }
    }

    fn within_an_hour() -> Freshness {
        Freshness {
            max_age: Duration::from_secs(3600),
            now: NOW,
        }
    }

    #[test]
    fn a_request_into_an_environment_without_a_policy_needs_one_admin() {
        let default = for_change_request(None);
        assert_eq!((default.required, lowest_role(&default)), (1, Role::Admin));
        assert!(!default.self_approval && !default.reauth);
    }

    #[test]
    fn the_lowest_listed_role_decides_and_unknown_roles_mean_admin() {
        assert_eq!(
            lowest_role(&policy(&["admin", "tester"], false, false)),
            Role::Tester
        );
        assert_eq!(lowest_role(&policy(&["nobody"], false, false)), Role::Admin);
    }

    #[test]
    fn a_role_below_the_policy_or_on_another_app_is_refused() {
        let testers = policy(&["tester"], false, false);
        assert_eq!(
            refusal(
                within_an_hour(),
                &caller(1, Role::Tester, Some("shop"), None),
                &testers,
                "shop"
            ),
            None
        );
        assert_eq!(
            refusal(
                within_an_hour(),
                &caller(1, Role::Admin, None, None),
                &testers,
                "shop"
            ),
            None
        );
        let viewer = refusal(
            within_an_hour(),
            &caller(1, Role::Viewer, None, None),
            &testers,
            "shop",
        );
        assert!(viewer.is_some_and(|why| why.contains("needs the tester role on shop")));
        let elsewhere = refusal(
            within_an_hour(),
            &caller(1, Role::Admin, Some("billing"), None),
            &testers,
            "shop",
        );
        assert!(elsewhere.is_some());
    }

    #[test]
    fn a_fresh_sign_in_is_one_within_the_window_and_needs_an_auth_time() {
        let fresh_only = policy(&["admin"], true, false);
        let at = |auth_time| caller(1, Role::Admin, None, auth_time);
        assert_eq!(
            refusal(within_an_hour(), &at(Some(NOW - HOUR)), &fresh_only, "shop"),
            None
        );
        let stale = refusal(
            within_an_hour(),
            &at(Some(NOW - HOUR - 1)),
            &fresh_only,
            "shop",
        );
        assert!(stale.is_some_and(|why| why.contains("fresh sign-in") && why.contains("1h")));
        let unknown = refusal(within_an_hour(), &at(None), &fresh_only, "shop");
        assert!(unknown.is_some_and(|why| why.contains("sent no auth_time")));
        // Without `reauth`, an old sign-in is fine.
        assert_eq!(
            refusal(
                within_an_hour(),
                &at(None),
                &policy(&["admin"], false, false),
                "shop"
            ),
            None
        );
    }

    #[test]
    fn the_author_may_not_approve_unless_the_policy_says_so() {
        let author = caller(7, Role::Admin, None, None);
        assert!(self_approval_refusal(&author, &policy(&["admin"], false, false), &[7]).is_some());
        assert!(self_approval_refusal(&author, &policy(&["admin"], false, true), &[7]).is_none());
        assert!(self_approval_refusal(&author, &policy(&["admin"], false, false), &[8]).is_none());
        assert!(self_approval_refusal(&author, &policy(&["admin"], false, false), &[]).is_none());
        // The request's author and the pusher are both authors.
        assert!(
            self_approval_refusal(&author, &policy(&["admin"], false, false), &[3, 7]).is_some()
        );
    }

    #[test]
    fn an_override_needs_a_readable_reason() {
        assert!(override_reason("  ok  ").is_err());
        assert_eq!(
            override_reason("  hotfix for the outage "),
            Ok("hotfix for the outage")
        );
    }
}
