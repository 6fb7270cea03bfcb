//! API tokens for the CLI and automation: shown once, stored as a SHA-256
//! hash, scoped to a role (and optionally an app), expiring, revocable.
//! A token never holds more than its owner: on every request its powers are
//! its own role and scope intersected with the owner's current grants, so a
//! demoted or removed owner takes their tokens down with them.

use app::dto::{Grant, Role};

use super::{Principal, Via, random_token, sha256_hex};
use crate::db::now_millis;
use crate::http::error::ApiError;
use crate::state::App;

/// A token as listed (never the secret).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub user: String,
    pub role: String,
    pub app: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Presented {
    id: i64,
    user_id: i64,
    name: String,
    role: String,
    app_name: Option<String>,
    expires_at: i64,
    revoked_at: Option<i64>,
}

pub async fn verify(app: &App, token: &str) -> Result<Principal, ApiError> {
    let row: Option<Presented> = sqlx::query_as(
        "SELECT t.id, t.user_id, u.display_name AS name, t.role, a.name AS app_name, t.expires_at,
                t.revoked_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN apps a ON a.id = t.app_id
         WHERE t.token_hash = $1",
    )
    .bind(sha256_hex(token))
    .fetch_optional(app.db.pool())
    .await?;
    let refused = || ApiError::Unauthorized("the API token is unknown, expired or revoked".into());
    let Presented {
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
    let owner = super::grants_of(app, user_id).await?;
    let grants = effective_grants(
        &Grant {
            role,
            app: app_name,
        },
        &owner,
    );
    if grants.is_empty() {
        return Err(ApiError::Unauthorized(format!(
            "the API token's owner {name} has no role any more; the token grants nothing"
        )));
    }
    let _ = sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now_millis())
        .execute(app.db.pool())
        .await;
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
    app: &App,
    user_id: i64,
    name: &str,
    role: Role,
    app_name: Option<&str>,
    lifetime_ms: i64,
) -> Result<(i64, String), ApiError> {
    let app_id: Option<i64> = match app_name {
        Some(app_name) => Some(
            sqlx::query_scalar("SELECT id FROM apps WHERE name = $1 AND removed_at IS NULL")
                .bind(app_name)
                .fetch_optional(app.db.pool())
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("app {app_name} does not exist")))?,
        ),
        None => None,
    };
    let token = random_token("gat_")?;
    let now = now_millis();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_hash, role, app_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(user_id)
    .bind(name)
    .bind(sha256_hex(&token))
    .bind(role.as_str())
    .bind(app_id)
    .bind(now)
    .bind(now + lifetime_ms)
    .fetch_one(app.db.pool())
    .await?;
    Ok((id, token))
}

/// Every token (`owner: None`) or one user's, newest first.
pub async fn list(app: &App, owner: Option<i64>) -> Result<Vec<TokenInfo>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.name, u.display_name AS \"user\", t.role, a.name AS app, t.created_at,
                t.expires_at, t.revoked_at, t.last_used_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN apps a ON a.id = t.app_id
         WHERE $1 IS NULL OR t.user_id = $1
         ORDER BY t.id DESC",
    )
    .bind(owner)
    .fetch_all(app.db.pool())
    .await?)
}

/// The user a token belongs to.
pub async fn owner(app: &App, id: i64) -> Result<Option<i64>, ApiError> {
    Ok(
        sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(app.db.pool())
            .await?,
    )
}

pub async fn revoke(app: &App, id: i64) -> Result<bool, ApiError> {
    let result =
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now_millis())
            .execute(app.db.pool())
            .await?;
    Ok(result.rows_affected() == 1)
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
