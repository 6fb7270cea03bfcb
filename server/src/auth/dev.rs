//! The demo's dev login: pick a name and a role, no password. Off unless
//! `auth.dev_login` is set, and configuration refuses it on a bind that is
//! not loopback.

use app::dto::{Grant, Role};

use super::AuthError;
use crate::db::Db;

pub const ISSUER: &str = "gantry-dev-login";

/// Signs `name` in with `role` (for every app) when the dev login is
/// `enabled`; returns the user id.
pub async fn user_for(db: &Db, enabled: bool, name: &str, role: Role) -> Result<i64, AuthError> {
    if !enabled {
        return Err(AuthError::NotFound("the dev login is off".into()));
    }
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid {
        return Err(AuthError::Invalid(
            "a name of letters, digits, `-`, `_` or `.` (at most 40)".into(),
        ));
    }
    let user_id = super::upsert_user(db, ISSUER, name, name, None).await?;
    super::set_grants(db, user_id, "dev", &[Grant { role, app: None }]).await?;
    Ok(user_id)
}
