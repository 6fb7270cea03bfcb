//! The approval policy of an environment, as `app.yaml` sets it: how many
//! people must approve, which roles may, whether the author may, whether a
//! fresh sign-in is needed, and when promotions are frozen. Both held runs
//! and change requests are judged here, so the rules cannot drift apart.

use app::dto::Role;
use app::port::Caller;

use crate::config::duration::HumanDuration;
use crate::db::now_millis;
use crate::gitops::freeze::{self, Freeze};
use crate::gitops::schema::{ApprovalPolicy, StackEntry};
use crate::state::App;

/// A change request into an environment without a policy still needs one
/// admin: only admins release.
pub fn for_change_request(entry: Option<&StackEntry>) -> ApprovalPolicy {
    entry
        .and_then(|entry| entry.approval.clone())
        .unwrap_or_else(|| ApprovalPolicy {
            required: 1,
            roles: vec!["admin".into()],
            self_approval: false,
            reauth: false,
        })
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
    app: &App,
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
        let max_age = app.config.reauth_max_age.as_millis() as i64;
        let fresh = caller
            .me
            .auth_time
            .is_some_and(|t| now_millis() - t <= max_age);
        if !fresh {
            let why = if caller.me.auth_time.is_none() {
                " (your sign-in did not say when you authenticated: the identity provider sent no auth_time)"
            } else {
                ""
            };
            return Some(format!(
                "this environment needs a fresh sign-in to approve (within {}){why}; sign in again at /auth/login?fresh=1",
                HumanDuration(app.config.reauth_max_age)
            ));
        }
    }
    None
}

/// Refuses the author of the change, unless the policy allows it.
pub fn self_approval_refusal(
    caller: &Caller,
    policy: &ApprovalPolicy,
    author_user_id: Option<i64>,
) -> Option<String> {
    (!policy.self_approval && author_user_id == Some(caller.user_id)).then(|| {
        format!(
            "{} wrote this change and cannot approve it; another approver must",
            caller.me.name
        )
    })
}

/// The freeze in force on the environment now, if any.
pub fn freeze_now(entry: Option<&StackEntry>) -> Option<Freeze> {
    entry.and_then(|entry| freeze::active(&entry.freeze, now_millis()))
}

/// An override needs a reason people can read later.
pub fn override_reason(reason: &str) -> Result<&str, String> {
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
