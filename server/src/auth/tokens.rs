//! API tokens for the CLI and automation: shown once, stored as a SHA-256
//! hash, scoped to a role (and optionally an app), expiring, revocable.
//! A token never holds more than its owner: on every request its powers are
//! its own role and scope intersected with the owner's current grants, so a
//! demoted or removed owner takes their tokens down with them.

use app::dto::{Grant, Role};

use super::{AuthError, Principal, Via, random_token, sha256_hex};
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

/// Creates a token for `user_id`; returns (id, the token — shown once).
pub async fn create(
    db: &Db,
    user_id: i64,
    name: &str,
    role: Role,
    app_name: Option<&str>,
    lifetime_ms: i64,
) -> Result<(i64, String), AuthError> {
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
    let new = db::tokens::NewToken {
        user_id,
        name,
        token_hash: &sha256_hex(&token),
        role: role.as_str(),
        app_id,
        expires_at: now + lifetime_ms,
    };
    let id = db::tokens::insert(db.pool(), &new, now).await?;
    Ok((id, token))
}

/// Every token (`owner: None`) or one user's, newest first.
pub async fn list(db: &Db, owner: Option<i64>) -> Result<Vec<TokenInfo>, AuthError> {
    Ok(db::tokens::list(db.pool(), owner).await?)
}

/// The user a token belongs to.
pub async fn owner(db: &Db, id: i64) -> Result<Option<i64>, AuthError> {
    Ok(db::tokens::owner(db.pool(), id).await?)
}

/// Revokes a live token; false when it was unknown or revoked already.
pub async fn revoke(db: &Db, id: i64) -> Result<bool, AuthError> {
    Ok(db::tokens::revoke(db.pool(), id, now_millis()).await?)
}

/// A fresh trigger-hook token for an app (`gth_…`), replacing the one
/// before; only its hash is kept.
pub async fn issue_hook_token(db: &Db, app_id: i64) -> Result<String, AuthError> {
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
