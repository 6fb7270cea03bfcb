//! API tokens for the CLI and automation: shown once, stored as a SHA-256
//! hash, scoped to a role (and optionally an app), expiring, revocable.
//! A token never holds more than its owner: on every request its powers are
//! its own role and scope intersected with the owner's current grants, so a
//! demoted or removed owner takes their tokens down with them.

use app::dto::{Grant, Role};
use app::port::Caller;

use super::{AuthError, Principal, Via, random_token, sha256_hex};
use crate::config::duration::HumanDuration;
use crate::db::{self, Db, now_millis};

pub use crate::db::tokens::TokenInfo;

/// Who presents `token`, with the powers it has now.
pub async fn verify(db: &Db, token: &str) -> Result<Principal, AuthError> {
    let row = db::tokens::by_hash(db.pool(), &sha256_hex(token)).await?;
    let refused =
        || AuthError::Unauthenticated("the API token is unknown, expired or revoked".into());
    let db::tokens::Presented {
        id,
        user_id,
        name,
        role,
        app_name,
        expires_at,
        revoked_at,
    } = row.ok_or_else(refused)?;
    if revoked_at.is_some() || expires_at <= now_millis() {
        return Err(refused());
    }
    let role = Role::parse(&role).ok_or_else(refused)?;
    let owner = super::grants_of(db, user_id).await?;
    let grants = effective_grants(
        &Grant {
            role,
            app: app_name,
        },
        &owner,
    );
    if grants.is_empty() {
        return Err(AuthError::Unauthenticated(format!(
            "the API token's owner {name} has no role any more; the token grants nothing"
        )));
    }
    // Best effort: a token that works is not refused for a lost timestamp.
    let _ = db::tokens::touch(db.pool(), id, now_millis()).await;
    Ok(Principal {
        user_id,
        name,
        grants,
        auth_time: None,
        via: Via::Token { token_id: id },
        source_ip: None,
    })
}

/// What a token may do: each of its owner's grants, cut down to the
/// token's role and, when the token is for one app, to that app.
pub fn effective_grants(token: &Grant, owner: &[Grant]) -> Vec<Grant> {
    let lower = |a: Role, b: Role| if a.rank() <= b.rank() { a } else { b };
    let mut grants: Vec<Grant> = owner
        .iter()
        .filter_map(|grant| {
            let app = match (&token.app, &grant.app) {
                (None, app) => app.clone(),
                (Some(only), None) => Some(only.clone()),
                (Some(only), Some(app)) if only == app => Some(app.clone()),
                (Some(_), Some(_)) => return None,
            };
            Some(Grant {
                role: lower(token.role, grant.role),
                app,
            })
        })
        .collect();
    grants.dedup();
    grants
}

/// Tokens live at most this long.
pub const MAX_LIFETIME_DAYS: u64 = 400;

/// What someone asks for when they create a token.
pub struct TokenRequest<'a> {
    /// What it is for, e.g. `ci` or `laptop`.
    pub name: &'a str,
    pub role: &'a str,
    pub app: Option<&'a str>,
    /// How long it lives, e.g. `30d` (default 90d).
    pub expires: Option<&'a str>,
}

/// A token just created: its secret is shown once, here.
pub struct Created {
    pub id: i64,
    pub token: String,
    pub expires_at: i64,
}

/// Only an admin of every app manages other people's tokens (an admin of
/// one app manages that app, not people).
fn manages_everyone(caller: &Caller) -> bool {
    caller.me.can(Role::Admin, None)
}

/// Creates a token acting as the caller, with at most the caller's power;
/// audited.
pub async fn create(
    db: &Db,
    caller: &Caller,
    request: &TokenRequest<'_>,
) -> Result<Created, AuthError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 60 {
        return Err(AuthError::Invalid(
            "name: say what the token is for, in at most 60 characters".into(),
        ));
    }
    let role = Role::parse(request.role).ok_or_else(|| {
        AuthError::Invalid(format!(
            "role: unknown role {:?}; expected admin, developer, tester or viewer",
            request.role
        ))
    })?;
    // Nobody mints more power than they hold.
    caller
        .require(role, request.app)
        .map_err(|refused| AuthError::Forbidden(refused.to_string()))?;
    let lifetime = HumanDuration::parse(request.expires.unwrap_or("90d"))
        .map_err(|e| AuthError::Invalid(format!("expires: {e}")))?;
    if lifetime.0.as_secs() == 0 || lifetime.0.as_secs() > MAX_LIFETIME_DAYS * 86_400 {
        return Err(AuthError::Invalid(format!(
            "expires: a token lives between 1s and {MAX_LIFETIME_DAYS}d"
        )));
    }
    let lifetime_ms = i64::try_from(lifetime.0.as_millis()).unwrap_or(i64::MAX);
    let (id, token, expires_at) =
        mint(db, caller.user_id, name, role, request.app, lifetime_ms).await?;
    crate::audit::record(
        db,
        caller,
        "token.create",
        &format!("token {id} ({name})"),
        None,
    )
    .await?;
    Ok(Created {
        id,
        token,
        expires_at,
    })
}

/// Makes a token for `user_id` without asking who wants it: for
/// [`create`], and for the `gantry token create` command (whoever runs it
/// can read the database). Returns (id, the token — shown once, expiry).
pub async fn mint(
    db: &Db,
    user_id: i64,
    name: &str,
    role: Role,
    app_name: Option<&str>,
    lifetime_ms: i64,
) -> Result<(i64, String, i64), AuthError> {
    let app_id = match app_name {
        Some(app_name) => Some(
            db::apps::find_active_by_name(db.pool(), app_name)
                .await?
                .ok_or_else(|| AuthError::NotFound(format!("app {app_name} does not exist")))?
                .id,
        ),
        None => None,
    };
    let token = random_token("gat_")?;
    let now = now_millis();
    let expires_at = now + lifetime_ms;
    let new = db::tokens::NewToken {
        user_id,
        name,
        token_hash: &sha256_hex(&token),
        role: role.as_str(),
        app_id,
        expires_at,
    };
    let id = db::tokens::insert(db.pool(), &new, now).await?;
    Ok((id, token, expires_at))
}

/// The caller's tokens (a global admin's: everyone's), newest first.
pub async fn list(db: &Db, caller: &Caller) -> Result<Vec<TokenInfo>, AuthError> {
    let owner = (!manages_everyone(caller)).then_some(caller.user_id);
    Ok(db::tokens::list(db.pool(), owner).await?)
}

/// Revokes a live token of the caller's (a global admin: anyone's);
/// audited. Someone else's token answers as if it did not exist.
pub async fn revoke(db: &Db, caller: &Caller, id: i64) -> Result<(), AuthError> {
    let missing = || AuthError::NotFound(format!("no active token {id}"));
    let owner = db::tokens::owner(db.pool(), id)
        .await?
        .ok_or_else(missing)?;
    if owner != caller.user_id && !manages_everyone(caller) {
        return Err(missing());
    }
    if !db::tokens::revoke(db.pool(), id, now_millis()).await? {
        return Err(missing());
    }
    crate::audit::record(db, caller, "token.revoke", &format!("token {id}"), None).await?;
    Ok(())
}

/// A fresh trigger-hook token for an app (`gth_…`) for an admin of it,
/// replacing the one before; only its hash is kept. Audited.
pub async fn issue_hook_token(
    db: &Db,
    caller: &Caller,
    app_name: &str,
) -> Result<String, AuthError> {
    caller
        .require(Role::Admin, Some(app_name))
        .map_err(|refused| AuthError::Forbidden(refused.to_string()))?;
    let app_row = db::apps::find_active_by_name(db.pool(), app_name)
        .await?
        .ok_or_else(|| AuthError::NotFound(format!("app {app_name} does not exist")))?;
    let token = rotate_hook_token(db, app_row.id).await?;
    crate::audit::record(
        db,
        caller,
        "hook_token.issue",
        &format!("{app_name} git trigger token"),
        None,
    )
    .await?;
    Ok(token)
}

/// Replaces an app's trigger-hook token without asking who wants it (the
/// demo installs its own hook).
pub async fn rotate_hook_token(db: &Db, app_id: i64) -> Result<String, AuthError> {
    let token = random_token("gth_")?;
    db::apps::set_hook_token_hash(db.pool(), app_id, &sha256_hex(&token)).await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, app: Option<&str>) -> Grant {
        Grant {
            role,
            app: app.map(str::to_string),
        }
    }

    #[test]
    fn a_token_holds_at_most_what_its_owner_holds_now() {
        let admin_token = grant(Role::Admin, None);
        // The owner was demoted to developer: the admin token is a
        // developer token now.
        assert_eq!(
            effective_grants(&admin_token, &[grant(Role::Developer, None)]),
            [grant(Role::Developer, None)]
        );
        // Removed from every app: nothing.
        assert!(effective_grants(&admin_token, &[]).is_empty());
        // An owner scoped to one app: the token is too.
        assert_eq!(
            effective_grants(&admin_token, &[grant(Role::Admin, Some("shop"))]),
            [grant(Role::Admin, Some("shop"))]
        );
        // A token for one app cannot reach the owner's other app.
        let shop_token = grant(Role::Developer, Some("shop"));
        assert!(effective_grants(&shop_token, &[grant(Role::Admin, Some("billing"))]).is_empty());
        assert_eq!(
            effective_grants(&shop_token, &[grant(Role::Admin, None)]),
            [grant(Role::Developer, Some("shop"))]
        );
        // A viewer token of an admin stays a viewer token.
        assert_eq!(
            effective_grants(&grant(Role::Viewer, None), &[grant(Role::Admin, None)]),
            [grant(Role::Viewer, None)]
        );
    }
}
