//! The demo's dev login: pick a name and a role, no password. Off unless
//! `auth.dev_login` is set, and configuration refuses it on a bind that is
//! not loopback.

use app::dto::{Grant, Role};

use crate::http::error::ApiError;
use crate::state::App;

pub const ISSUER: &str = "gantry-dev-login";

/// Signs `name` in with `role` (for every app); returns the user id.
pub async fn user_for(app: &App, name: &str, role: Role) -> Result<i64, ApiError> {
    if !app.config.dev_login {
        return Err(ApiError::NotFound("the dev login is off".into()));
    }
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid {
        return Err(ApiError::BadRequest(
            "a name of letters, digits, `-`, `_` or `.` (at most 40)".into(),
        ));
    }
    let user_id = super::upsert_user(app, ISSUER, name, name, None).await?;
    super::set_grants(app, user_id, "dev", &[Grant { role, app: None }]).await?;
    Ok(user_id)
}
