//! Sign-in and sign-out: OpenID Connect (`/auth/login` → the provider →
//! `/auth/callback`), the demo's dev login (`/auth/dev`, when enabled), and
//! `/auth/logout`. Every sign-in starts a new session id and is audited.

use app::dto::Role;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::oidc::{OidcError, Pending};
use crate::auth::{self, Principal};
use crate::db::{self, now_millis};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::principal::{self, CSRF};

const PENDING: &str = "oidc_pending";
/// The dev login form's token: a sign-in posted from another site (which
/// would sign the visitor in as someone the site chose) carries none.
const LOGIN_CSRF: &str = "dev_login_csrf";

/// Only a path on this origin: never an open redirect. Browsers drop tabs
/// and line breaks from URLs and read `\` as `/`, so `/\t/evil.example`
/// or `/\\evil.example` would leave the site; anything but a plain path
/// (and query) that stays on this origin once normalised goes to `/`.
pub fn local_path(path: Option<&str>) -> String {
    let Some(path) = path else {
        return "/".into();
    };
    let plain = path.starts_with('/')
        && !path.starts_with("//")
        && !path
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if !plain {
        return "/".into();
    }
    let Ok(origin) = url::Url::parse("http://gantry.invalid/") else {
        return "/".into();
    };
    match origin.join(path) {
        Ok(url) if url.origin() == origin.origin() && url.username().is_empty() => {
            let mut local = url.path().to_string();
            if let Some(query) = url.query() {
                local.push('?');
                local.push_str(query);
            }
            if local.starts_with("//") {
                "/".into()
            } else {
                local
            }
        }
        _ => "/".into(),
    }
}

fn redirect_uri(state: &AppState) -> String {
    format!(
        "{}/auth/callback",
        state.config.public_url.as_str().trim_end_matches('/')
    )
}

/// Where a sign-in came from (see `principal::source_ip`).
pub struct ClientIp(pub Option<String>);

impl axum::extract::FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(principal::source_ip(
            parts,
            &state.config.trusted_proxies,
        )))
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    /// `1`: ask the provider for a fresh authentication.
    fresh: Option<String>,
}

/// Starts an OIDC sign-in (or, without OIDC, offers the dev login).
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    let return_to = local_path(query.return_to.as_deref());
    let Some(settings) = &state.config.oidc else {
        if state.config.dev_login {
            return Ok(
                Redirect::to(&format!("/auth/dev?return_to={}", url_encode(&return_to)))
                    .into_response(),
            );
        }
        return Ok((StatusCode::NOT_FOUND, Html(page("Sign-in is not configured", "<p>Set <code>auth.oidc_issuer</code>, <code>auth.oidc_client_id</code> and <code>auth.oidc_client_secret</code>, or use an API token.</p>"))).into_response());
    };
    let fresh = query.fresh.as_deref() == Some("1");
    let max_age = fresh.then_some(state.config.reauth_max_age);
    let (url, pending) = state
        .web
        .oidc
        .begin(settings, &redirect_uri(&state), &return_to, max_age)
        .await
        .map_err(oidc_error)?;
    session
        .insert(PENDING, &pending)
        .await
        .map_err(|e| ApiError::from(auth::session_error(e)))?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider sends the person back here with a code.
pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    ClientIp(ip): ClientIp,
    Query(callback): Query<Callback>,
) -> Result<Response, ApiError> {
    let settings = state
        .config
        .oidc
        .clone()
        .ok_or_else(|| ApiError::NotFound("single sign-on is not configured".into()))?;
    if let Some(error) = callback.error {
        let detail = callback.error_description.unwrap_or_default();
        return Ok((StatusCode::UNAUTHORIZED, Html(page("Sign-in failed", &format!("<p>The identity provider said: {} {}</p><p><a href=\"/auth/login\">Try again</a></p>", escape(&error), escape(&detail))))).into_response());
    }
    let pending: Pending = session
        .remove(PENDING)
        .await
        .map_err(|e| ApiError::from(auth::session_error(e)))?
        .ok_or_else(|| {
            ApiError::BadRequest(
                "no sign-in in progress in this browser; start again at /auth/login".into(),
            )
        })?;
    let (Some(code), Some(returned_state)) = (callback.code, callback.state) else {
        return Err(ApiError::BadRequest(
            "the provider's answer has no code or state".into(),
        ));
    };
    let identity = state
        .web
        .oidc
        .finish(
            &settings,
            &redirect_uri(&state),
            &pending,
            auth::oidc::Answer {
                state: &returned_state,
                code: &code,
            },
            &state.config.roles_claim,
            state.config.reauth_max_age,
        )
        .await
        .map_err(oidc_error)?;
    let user_id = auth::upsert_user(
        &state.db,
        &identity.issuer,
        &identity.subject,
        &identity.name,
        identity.email.as_deref(),
    )
    .await?;
    auth::set_grants(
        &state.db,
        user_id,
        "oidc",
        &auth::grants_from_claim(&identity.roles_claim),
    )
    .await?;
    if let Some(claim) = &state.config.forge_login_claim {
        auth::set_forge_login(&state.db, user_id, identity.claim(claim)).await?;
    }
    // Only the provider knows when the person authenticated: without its
    // `auth_time` the session counts as never freshly signed in.
    let now = state.clock.now_millis();
    principal::sign_in(&session, user_id, identity.auth_time, now).await?;
    record_sign_in(&state, &identity.name, "oidc", ip.as_deref()).await?;
    Ok(Redirect::to(&pending.return_to).into_response())
}

fn oidc_error(error: OidcError) -> ApiError {
    match error {
        OidcError::NotConfigured => ApiError::NotFound(error.to_string()),
        OidcError::Discovery { .. } => ApiError::Internal(error.to_string()),
        OidcError::Exchange(_) | OidcError::Token(_) | OidcError::State => {
            ApiError::Unauthorized(error.to_string())
        }
    }
}

async fn record_sign_in(
    state: &AppState,
    name: &str,
    how: &str,
    ip: Option<&str>,
) -> Result<(), ApiError> {
    db::audit::record(
        state.db.pool(),
        &db::audit::NewEntry {
            actor: name,
            action: "auth.sign_in",
            target: name,
            reason: None,
            source_ip: ip,
            detail: &serde_json::json!({ "via": how }).to_string(),
        },
        now_millis(),
    )
    .await?;
    Ok(())
}

/// The dev login form (only when enabled), with a token only this browser's
/// session holds.
pub async fn dev_form(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    if !state.config.dev_login {
        return Ok((StatusCode::NOT_FOUND, "the dev login is off").into_response());
    }
    let token = auth::random_token("")?;
    session
        .insert(LOGIN_CSRF, token.clone())
        .await
        .map_err(|e| ApiError::from(auth::session_error(e)))?;
    let return_to = escape(&local_path(query.return_to.as_deref()));
    let options: String = Role::ALL
        .iter()
        .rev()
        .map(|r| format!("<option value=\"{r}\">{r}</option>"))
        .collect();
    Ok(Html(page(
        "Sign in (dev login)",
        &format!(
            "<p class=\"muted\">The demo's password-less sign-in, for this machine only. Real deployments use single sign-on.</p>
<form method=\"post\" action=\"/auth/dev\" class=\"form\">
<input type=\"hidden\" name=\"return_to\" value=\"{return_to}\">
<input type=\"hidden\" name=\"csrf\" value=\"{token}\">
<label><span>Name</span><input name=\"name\" value=\"ada\" required autofocus></label>
<label><span>Role</span><select name=\"role\">{options}</select></label>
<button type=\"submit\" class=\"primary\">Sign in</button>
</form>"
        ),
    ))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct DevLogin {
    name: String,
    role: String,
    return_to: Option<String>,
    /// The form's token (see [`dev_form`]).
    csrf: Option<String>,
}

pub async fn dev_login(
    State(state): State<AppState>,
    session: Session,
    ClientIp(ip): ClientIp,
    Form(form): Form<DevLogin>,
) -> Result<Response, ApiError> {
    if !state.config.dev_login {
        return Err(ApiError::NotFound("the dev login is off".into()));
    }
    let expected: Option<String> = session
        .remove(LOGIN_CSRF)
        .await
        .map_err(|e| ApiError::from(auth::session_error(e)))?;
    match (expected, form.csrf.as_deref()) {
        (Some(expected), Some(sent)) if auth::constant_time_eq(&expected, sent) => {}
        _ => {
            return Err(ApiError::Forbidden(
                "the sign-in form expired or was not this site's: open /auth/dev again".into(),
            ));
        }
    }
    let role = Role::parse(&form.role)
        .ok_or_else(|| ApiError::BadRequest(format!("unknown role {:?}", form.role)))?;
    let user_id = auth::dev::user_for(&state.db, state.config.dev_login, &form.name, role).await?;
    let now = state.clock.now_millis();
    principal::sign_in(&session, user_id, Some(now), now).await?;
    record_sign_in(&state, form.name.trim(), "dev", ip.as_deref()).await?;
    Ok(Redirect::to(&local_path(form.return_to.as_deref())).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Logout {
    csrf: Option<String>,
}

/// Signs out (a form post carrying the CSRF token).
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<Logout>,
) -> Result<Response, ApiError> {
    let expected: Option<String> = session
        .get(CSRF)
        .await
        .map_err(|e| ApiError::from(auth::session_error(e)))?;
    let sent = form.csrf.or_else(|| {
        headers
            .get(principal::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    match (expected, sent) {
        (Some(expected), Some(sent)) if auth::constant_time_eq(&expected, &sent) => {}
        _ => return Err(ApiError::Forbidden("missing or invalid CSRF token".into())),
    }
    session
        .flush()
        .await
        .map_err(|e| ApiError::from(auth::session_error(e)))?;
    let _ = state;
    Ok(Redirect::to("/").into_response())
}

/// Who is signed in (with the CSRF token the dashboard sends back).
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", responses((status = 200, body = app::dto::Me), (status = 401)))]
pub async fn me(principal: Principal) -> axum::Json<app::dto::Me> {
    axum::Json(principal.me())
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · Gantry</title><link rel=\"stylesheet\" href=\"/pkg/gantry.css\"><link rel=\"icon\" href=\"data:,\"></head><body><main class=\"content auth-page\"><h1>{title}</h1>{body}</main></body></html>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Session cookie settings: `HttpOnly`, `SameSite=Lax`, `Secure` when the
/// public URL is https, idle expiry (the absolute one is checked on use).
pub fn session_layer(
    state: &AppState,
) -> tower_sessions::SessionManagerLayer<auth::store::DbSessionStore> {
    let idle = time::Duration::milliseconds(
        i64::try_from(state.config.session_idle.as_millis()).unwrap_or(i64::MAX),
    );
    tower_sessions::SessionManagerLayer::new(auth::store::DbSessionStore::new(
        state.db.clone(),
        state.clock.clone(),
    ))
    .with_name("gantry_session")
    .with_http_only(true)
    .with_same_site(tower_sessions::cookie::SameSite::Lax)
    .with_secure(state.config.public_url.scheme() == "https")
    .with_expiry(tower_sessions::Expiry::OnInactivity(idle))
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn return_to_stays_on_this_origin() {
        assert_eq!(local_path(Some("/runs/3?tab=log")), "/runs/3?tab=log");
        assert_eq!(local_path(Some("/a/../approvals")), "/approvals");
        for trick in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r//evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "https://evil.example/",
            "/%09/evil.example",
            " /x",
            "evil.example",
            "/.//evil.example",
            "/x@evil.example",
        ] {
            let kept = local_path(Some(trick));
            let home = url::Url::parse("http://gantry.invalid/").expect("url");
            let resolved = home.join(&kept).expect("a path");
            assert_eq!(
                resolved.host_str(),
                Some("gantry.invalid"),
                "{trick:?} -> {kept:?}"
            );
            assert!(
                kept.starts_with('/')
                    && !kept.starts_with("//")
                    && !kept
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace() || c == '\\'),
                "{trick:?} -> {kept:?}"
            );
        }
        assert_eq!(local_path(Some("/\t/evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
