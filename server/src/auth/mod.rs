//! Identity and permission. A request is made by a [`Principal`]: a person
//! signed in (a session cookie, from OIDC or the demo's dev login) or an API
//! token. What a principal may do comes from its grants: a [`Role`] for
//! every app or for one. Handlers ask with [`Principal::require`]; nothing
//! in the browser decides.

pub mod dev;
pub mod oidc;
pub mod store;
pub mod tokens;

use app::dto::{Grant, Me, Role};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use sha2::{Digest, Sha256};
use tower_sessions::Session;

use crate::db::now_millis;
use crate::http::error::ApiError;
use crate::state::{App, AppState};

/// Session keys.
pub const USER_ID: &str = "user_id";
pub const LOGIN_AT: &str = "login_at";
pub const AUTH_TIME: &str = "auth_time";
pub const CSRF: &str = "csrf";

/// The header (or, in forms, the field `csrf`) carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    Session { csrf: String },
    Token { token_id: i64 },
}

/// Who makes a request, and what they may do.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: i64,
    pub name: String,
    pub grants: Vec<Grant>,
    /// When the person last authenticated with the identity provider.
    pub auth_time: Option<i64>,
    pub via: Via,
    /// Where the request came from (first `X-Forwarded-For` hop, else the
    /// peer address), for the audit log.
    pub source_ip: Option<String>,
}

impl Principal {
    pub fn can(&self, role: Role, app: Option<&str>) -> bool {
        self.me().can(role, app)
    }

    /// Refuses (403) unless a grant gives at least `role` on `app`.
    pub fn require(&self, role: Role, app: Option<&str>) -> Result<(), ApiError> {
        if self.can(role, app) {
            return Ok(());
        }
        let scope = app.map(|a| format!(" on app {a}")).unwrap_or_default();
        Err(ApiError::Forbidden(format!(
            "this needs the {role} role{scope}; {} does not have it",
            self.name
        )))
    }

    pub fn me(&self) -> Me {
        Me {
            name: self.name.clone(),
            grants: self.grants.clone(),
            csrf: match &self.via {
                Via::Session { csrf } => csrf.clone(),
                Via::Token { .. } => String::new(),
            },
            auth_time: self.auth_time,
        }
    }

    /// Checks a CSRF token sent with a change (sessions only: an API token
    /// is not sent by the browser on its own, so it needs none).
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), ApiError> {
        match &self.via {
            Via::Token { .. } => Ok(()),
            Via::Session { csrf } if sent.is_some_and(|sent| constant_time_eq(sent, csrf)) => {
                Ok(())
            }
            Via::Session { .. } => Err(ApiError::Forbidden("missing or invalid CSRF token".into())),
        }
    }
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Hex SHA-256 (what the database keeps of tokens).
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh random token with a readable prefix.
pub fn random_token(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0_u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(format!(
        "{prefix}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// The grants of a user, from their role bindings.
pub async fn grants_of(app: &App, user_id: i64) -> Result<Vec<Grant>, sqlx::Error> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT b.role, a.name FROM role_bindings b LEFT JOIN apps a ON a.id = b.app_id WHERE b.user_id = $1 ORDER BY b.id",
    )
    .bind(user_id)
    .fetch_all(app.db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(role, app)| Role::parse(&role).map(|role| Grant { role, app }))
        .collect())
}

async fn user_name(app: &App, user_id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT display_name FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(app.db.pool())
        .await
}

/// Who made the request, if anyone: an API token (`Authorization: Bearer`)
/// or a signed-in session within its absolute lifetime.
pub async fn authenticate(parts: &Parts, app: &App) -> Result<Option<Principal>, ApiError> {
    if let Some(bearer) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let mut principal = tokens::verify(app, bearer.trim()).await?;
        principal.source_ip = source_ip(parts, &app.config.trusted_proxies);
        return Ok(Some(principal));
    }
    let Some(session) = parts.extensions.get::<Session>() else {
        return Ok(None);
    };
    let user_id: Option<i64> = session
        .get(USER_ID)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(user_id) = user_id else {
        return Ok(None);
    };
    let login_at: i64 = session
        .get(LOGIN_AT)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .unwrap_or(0);
    if now_millis() - login_at > app.config.session_max.as_millis() as i64 {
        // Past the absolute lifetime: signed out, whatever the activity.
        let _ = session.flush().await;
        return Ok(None);
    }
    let csrf: String = session
        .get(CSRF)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .unwrap_or_default();
    let auth_time: Option<i64> = session
        .get(AUTH_TIME)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(name) = user_name(app, user_id).await? else {
        let _ = session.flush().await;
        return Ok(None);
    };
    Ok(Some(Principal {
        user_id,
        name,
        grants: grants_of(app, user_id).await?,
        auth_time,
        via: Via::Session { csrf },
        source_ip: source_ip(parts, &app.config.trusted_proxies),
    }))
}

/// Where the request came from, for the audit log: the TCP peer, unless the
/// peer is one of `server.trusted_proxies` — then the nearest hop of
/// `X-Forwarded-For` that is not a trusted proxy. A client can write any
/// `X-Forwarded-For` it likes, so the header means nothing from others.
pub fn source_ip(parts: &Parts, trusted: &[crate::config::IpNet]) -> Option<String> {
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    client_ip(peer, &forwarded, trusted)
}

/// The pure part of [`source_ip`].
pub fn client_ip(
    peer: Option<std::net::IpAddr>,
    forwarded: &[&str],
    trusted: &[crate::config::IpNet],
) -> Option<String> {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer?;
    // Right to left: each trusted hop vouches for the one before it.
    for hop in forwarded.iter().rev() {
        if !is_trusted(client) {
            break;
        }
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => client = ip,
            Err(_) => break,
        }
    }
    Some(client.to_string())
}

/// Starts a session for `user_id`: a new session id (no fixation), a new
/// CSRF token, and the time of authentication.
pub async fn sign_in(
    session: &Session,
    user_id: i64,
    auth_time: Option<i64>,
) -> Result<(), ApiError> {
    let fail = |e: tower_sessions::session::Error| ApiError::Internal(e.to_string());
    session.cycle_id().await.map_err(fail)?;
    session.insert(USER_ID, user_id).await.map_err(fail)?;
    session.insert(LOGIN_AT, now_millis()).await.map_err(fail)?;
    match auth_time {
        Some(auth_time) => session.insert(AUTH_TIME, auth_time).await.map_err(fail)?,
        None => {
            session.remove::<i64>(AUTH_TIME).await.map_err(fail)?;
        }
    }
    session
        .insert(CSRF, random_token("")?)
        .await
        .map_err(fail)?;
    Ok(())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    /// Authenticated, and for changes made with a session cookie, carrying
    /// the session's CSRF token in `X-CSRF-Token`.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, state).await?.ok_or_else(|| {
            ApiError::Unauthorized(
                "sign in, or send an API token as `Authorization: Bearer <token>`".into(),
            )
        })?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            principal.check_csrf(parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))?;
        }
        Ok(principal)
    }
}

/// Someone who may or may not be signed in: share links open for both.
/// A signed-in visitor's changes carry the CSRF token like any other.
pub struct Visitor(pub Option<Principal>);

impl FromRequestParts<AppState> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, state).await?;
        if let Some(principal) = &principal
            && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        {
            principal.check_csrf(parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))?;
        }
        Ok(Visitor(principal))
    }
}

/// Finds or creates the user of an identity, updating name and e-mail.
pub async fn upsert_user(
    app: &App,
    issuer: &str,
    subject: &str,
    name: &str,
    email: Option<&str>,
) -> Result<i64, sqlx::Error> {
    let now = now_millis();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (issuer, subject, email, display_name, created_at, last_login_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (issuer, subject) DO UPDATE SET email = $3, display_name = $4, last_login_at = $5
         RETURNING id",
    )
    .bind(issuer)
    .bind(subject)
    .bind(email)
    .bind(name)
    .bind(now)
    .fetch_one(app.db.pool())
    .await?;
    Ok(id)
}

/// Replaces the user's grants from one source (e.g. the OIDC groups claim
/// at each sign-in) with `grants`. Unknown apps in grants are skipped.
pub async fn set_grants(
    app: &App,
    user_id: i64,
    source: &str,
    grants: &[Grant],
) -> Result<(), sqlx::Error> {
    let mut tx = app.db.begin().await?;
    sqlx::query("DELETE FROM role_bindings WHERE user_id = $1 AND source = $2")
        .bind(user_id)
        .bind(source)
        .execute(&mut *tx)
        .await?;
    for grant in grants {
        let app_id: Option<i64> = match &grant.app {
            Some(name) => match sqlx::query_scalar("SELECT id FROM apps WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(id) => Some(id),
                None => continue,
            },
            None => None,
        };
        sqlx::query("INSERT INTO role_bindings (user_id, role, app_id, created_at, source) VALUES ($1, $2, $3, $4, $5)")
            .bind(user_id)
            .bind(grant.role.as_str())
            .bind(app_id)
            .bind(now_millis())
            .bind(source)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Adds one grant to a user's grants from `source`, keeping the others
/// (the CLI gives the operator's user the role of each token it creates).
pub async fn add_grant(
    app: &App,
    user_id: i64,
    source: &str,
    grant: &Grant,
) -> Result<(), sqlx::Error> {
    let mut grants: Vec<Grant> = sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT b.role, a.name FROM role_bindings b LEFT JOIN apps a ON a.id = b.app_id
         WHERE b.user_id = $1 AND b.source = $2 ORDER BY b.id",
    )
    .bind(user_id)
    .bind(source)
    .fetch_all(app.db.pool())
    .await?
    .into_iter()
    .filter_map(|(role, app)| Role::parse(&role).map(|role| Grant { role, app }))
    .collect();
    if !grants.contains(grant) {
        grants.push(grant.clone());
    }
    set_grants(app, user_id, source, &grants).await
}

/// A caller standing for Gantry itself acting on a person's behalf (the
/// demo's first approval): a user of issuer `gantry-system`.
pub async fn system_caller(
    app: &App,
    name: &str,
    role: Role,
) -> Result<app::port::Caller, sqlx::Error> {
    let user_id = upsert_user(app, "gantry-system", name, name, None).await?;
    let grants = vec![Grant { role, app: None }];
    set_grants(app, user_id, "system", &grants).await?;
    Ok(app::port::Caller {
        user_id,
        me: Me {
            name: name.to_string(),
            grants,
            csrf: String::new(),
            auth_time: Some(now_millis()),
        },
        via_token: true,
        source_ip: None,
    })
}

/// Grants from the values of the roles claim: `admin`, `developer`,
/// `tester`, `viewer`, optionally scoped as `<app>:<role>`; a `gantry-`
/// prefix is accepted (`gantry-admin`). Other values are ignored.
pub fn grants_from_claim(values: &[String]) -> Vec<Grant> {
    values
        .iter()
        .filter_map(|value| {
            let value = value.trim().strip_prefix("gantry-").unwrap_or(value.trim());
            match value.split_once(':') {
                Some((app, role)) => Role::parse(role).map(|role| Grant {
                    role,
                    app: Some(app.to_string()),
                }),
                None => Role::parse(value).map(|role| Grant { role, app: None }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_map_to_grants() {
        let grants = grants_from_claim(&[
            "gantry-admin".into(),
            "shop:developer".into(),
            "everyone".into(),
            "tester".into(),
        ]);
        assert_eq!(
            grants,
            vec![
                Grant {
                    role: Role::Admin,
                    app: None
                },
                Grant {
                    role: Role::Developer,
                    app: Some("shop".into())
                },
                Grant {
                    role: Role::Tester,
                    app: None
                },
            ]
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = [crate::config::IpNet::parse("10.0.0.0/8").expect("net")];
        let ip = |text: &str| Some(text.parse().expect("ip"));
        // A client that writes the header itself gains nothing.
        assert_eq!(
            client_ip(ip("203.0.113.7"), &["1.2.3.4"], &proxies).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            client_ip(ip("203.0.113.7"), &["1.2.3.4"], &[]).as_deref(),
            Some("203.0.113.7")
        );
        // Behind the proxy: the hop the proxy saw, not what the client wrote.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["1.2.3.4", "198.51.100.9"], &proxies).as_deref(),
            Some("198.51.100.9")
        );
        // Two trusted proxies in a row.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["198.51.100.9", "10.0.0.3"], &proxies).as_deref(),
            Some("198.51.100.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["junk"], &proxies).as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(client_ip(None, &["1.2.3.4"], &proxies), None);
    }

    #[test]
    fn roles_include_the_ones_below_and_scopes_hold() {
        let me = Me {
            name: "d".into(),
            grants: vec![Grant {
                role: Role::Developer,
                app: Some("shop".into()),
            }],
            csrf: String::new(),
            auth_time: None,
        };
        assert!(me.can(Role::Viewer, Some("shop")));
        assert!(me.can(Role::Developer, Some("shop")));
        assert!(!me.can(Role::Admin, Some("shop")));
        assert!(!me.can(Role::Viewer, Some("billing")), "scoped to shop");
        assert!(!me.can(Role::Viewer, None), "not a global grant");
    }
}
