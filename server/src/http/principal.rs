//! How a request becomes a [`Principal`]: an API token in `Authorization`,
//! or a session cookie whose session is within its lifetime; for changes,
//! the session's CSRF token must come along. What a principal may do is the
//! identity domain's (`auth`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use tower_sessions::Session;

use app::dto::Role;

use crate::auth::{self, AuthError, Principal, Via};
use crate::db;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::state::App;

/// Session keys.
pub const USER_ID: &str = "user_id";
pub const LOGIN_AT: &str = "login_at";
pub const AUTH_TIME: &str = "auth_time";
pub const CSRF: &str = "csrf";

/// The header (or, in forms, the field `csrf`) carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who made the request, if anyone: an API token (`Authorization: Bearer`)
/// or a signed-in session within its absolute lifetime.
pub async fn authenticate(parts: &Parts, app: &App) -> Result<Option<Principal>, AuthError> {
    if let Some(bearer) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let mut principal = auth::tokens::verify(&app.db, bearer.trim()).await?;
        principal.source_ip = source_ip(parts, &app.config.trusted_proxies);
        return Ok(Some(principal));
    }
    let Some(session) = parts.extensions.get::<Session>() else {
        return Ok(None);
    };
    let fail = crate::auth::session_error;
    let user_id: Option<i64> = session.get(USER_ID).await.map_err(fail)?;
    let Some(user_id) = user_id else {
        return Ok(None);
    };
    let login_at: i64 = session.get(LOGIN_AT).await.map_err(fail)?.unwrap_or(0);
    if app.clock.now_millis() - login_at > app.config.session_max.as_millis() as i64 {
        // Past the absolute lifetime: signed out, whatever the activity.
        let _ = session.flush().await;
        return Ok(None);
    }
    let csrf: String = session.get(CSRF).await.map_err(fail)?.unwrap_or_default();
    let auth_time: Option<i64> = session.get(AUTH_TIME).await.map_err(fail)?;
    let Some(name) = db::users::display_name(app.db.pool(), user_id).await? else {
        let _ = session.flush().await;
        return Ok(None);
    };
    Ok(Some(Principal {
        user_id,
        name,
        grants: auth::grants_of(&app.db, user_id).await?,
        auth_time,
        via: Via::Session { csrf },
        source_ip: source_ip(parts, &app.config.trusted_proxies),
    }))
}

/// Where the request came from, for the audit log (see [`auth::client_ip`]).
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
    auth::client_ip(peer, &forwarded, trusted)
}

/// Starts a session for `user_id` at `now`: a new session id (no
/// fixation), a new CSRF token, and the time of authentication.
pub async fn sign_in(
    session: &Session,
    user_id: i64,
    auth_time: Option<i64>,
    now: i64,
) -> Result<(), AuthError> {
    let fail = crate::auth::session_error;
    session.cycle_id().await.map_err(fail)?;
    session.insert(USER_ID, user_id).await.map_err(fail)?;
    session.insert(LOGIN_AT, now).await.map_err(fail)?;
    match auth_time {
        Some(auth_time) => session.insert(AUTH_TIME, auth_time).await.map_err(fail)?,
        None => {
            session.remove::<i64>(AUTH_TIME).await.map_err(fail)?;
        }
    }
    session
        .insert(CSRF, auth::random_token("")?)
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

/// A principal allowed near an admin-only route: an admin of the route's
/// `{app}`, or where the route names none, of some app. Taken before the
/// body is read, so who may not call a route learns nothing of what it
/// would accept (a 403, never a 422); the domain still decides exactly.
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let app =
            axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(
                parts, state,
            )
            .await
            .ok()
            .and_then(|axum::extract::Path(params)| params.get("app").cloned());
        let allowed = match &app {
            Some(app) => principal.can(Role::Admin, Some(app)),
            None => principal.me().can_anywhere(Role::Admin),
        };
        if !allowed {
            return Err(ApiError::Forbidden(format!(
                "this needs the admin role{}; {} does not have it",
                app.map(|app| format!(" on {app}")).unwrap_or_default(),
                principal.name
            )));
        }
        Ok(Admin(principal))
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
