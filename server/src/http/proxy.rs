//! The reverse proxy of the local target: `http://<env>--<app>.<preview
//! domain>/…` (browsers resolve `*.localhost` to loopback), forwarded to the
//! process serving the environment right now, so a deploy switches traffic
//! atomically.
//!
//! An environment runs a developer's code, so it is treated as hostile: it
//! is only ever served on a host of its own (never the dashboard's origin:
//! the `/env/<app>/<env>/` form on the dashboard redirects there, and is
//! served as such only on the preview socket sandboxes use), it never
//! receives Gantry's cookies or an `Authorization` header, and it cannot set
//! a cookie for any host but its own.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::AppState;

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Cookies of Gantry's own, never forwarded to an environment nor set by one.
pub const GANTRY_COOKIES: &[&str] = &["gantry_session"];

/// `<env>--<app>` from a Host header under the preview domain, if it is one.
pub fn environment_from_host(host: &str, preview_domain: &str) -> Option<(String, String)> {
    let host = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    let host = host.to_ascii_lowercase();
    let label = host.strip_suffix(preview_domain)?.strip_suffix('.')?;
    let (env, app) = label.split_once("--")?;
    let valid = |name: &str| crate::gitops::load::valid_name(name);
    (valid(env) && valid(app)).then(|| (env.to_string(), app.to_string()))
}

/// Runs before the router: requests for an environment's host go to it.
pub async fn by_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().host().map(str::to_string));
    match host.and_then(|host| environment_from_host(&host, &state.config.preview_domain)) {
        Some((env, app)) => {
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            forward(&state, (&app, &env, Pick::Weighted), &path, None, request).await
        }
        None => next.run(request).await,
    }
}

/// `/env/{app}/{env}/{*rest}` (on the preview socket only).
pub async fn by_path(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    by_route(&state, &params, ("env", Pick::Weighted), request).await
}

/// `/canary/{app}/{env}/{*rest}`, on the preview socket only: the canary
/// of a local environment, alone and unmeasured — what an analysis step
/// checks (`$CANARY_URL`). 404 when no canary runs.
pub async fn canary_by_path(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    by_route(&state, &params, ("canary", Pick::Canary), request).await
}

/// `/<root>/{app}/{env}/{*rest}`, forwarded to the process `pick` names.
async fn by_route(
    state: &AppState,
    params: &[(String, String)],
    (root, pick): (&str, Pick),
    request: Request,
) -> Response {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (app, env, rest) = (get("app"), get("env"), get("rest"));
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let prefix = format!("/{root}/{app}/{env}");
    forward(
        state,
        (&app, &env, pick),
        &format!("/{rest}{query}"),
        Some(&prefix),
        request,
    )
    .await
}

/// Which process of an environment a request goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pick {
    /// The stable one, or the canary for its share.
    Weighted,
    /// The canary alone.
    Canary,
}

/// `/env/{app}/{env}/{*rest}` on the dashboard: the environment's own host,
/// so its code never runs on the dashboard's origin.
pub async fn redirect_to_host(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (app, env, rest) = (get("app"), get("env"), get("rest"));
    let valid = |name: &str| crate::gitops::load::valid_name(name);
    if !(valid(&app) && valid(&env)) {
        return (StatusCode::NOT_FOUND, "no such environment").into_response();
    }
    let base = crate::gitops::template::local_url(
        &state.config.public_url,
        &state.config.preview_domain,
        &app,
        &env,
    );
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let location = format!("{base}{}{query}", rest.trim_start_matches('/'));
    let Ok(location) = HeaderValue::from_str(&location) else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    // 307 keeps the method and body of a form or API call.
    let status = if matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        StatusCode::FOUND
    } else {
        StatusCode::TEMPORARY_REDIRECT
    };
    (status, [(header::LOCATION, location)]).into_response()
}

async fn forward(
    state: &AppState,
    (app, env, pick): (&str, &str, Pick),
    path: &str,
    prefix: Option<&str>,
    request: Request,
) -> Response {
    if pick == Pick::Canary {
        let Some(port) = state.local.canary_port(app, env) else {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("Gantry: no canary of {env} of {app} runs on the local target.\n"),
            )
                .into_response();
        };
        return send(state, (app, env, port, None), path, prefix, request).await;
    }
    let Some((port, version)) = state.local.pick(app, env) else {
        if let Some(owner) = state.config.local_replica.as_deref()
            && !state.runs_local()
        {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "Gantry: environments of the local target run on replica {owner} (runner.local_replica); this is replica {}. Route preview hosts to {owner}.\n",
                    state.config.replica
                ),
            )
                .into_response();
        }
        return (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("Gantry: no live environment {env} of {app} on the local target.\n"),
        )
            .into_response();
    };
    send(state, (app, env, port, version), path, prefix, request).await
}

/// Sends `request` on to the process at `port`, measured as `version`
/// during a canary (`None`: not measured).
async fn send(
    state: &AppState,
    (app, env, port, version): (
        &str,
        &str,
        u16,
        Option<crate::delivery::deploy::local::Version>,
    ),
    path: &str,
    prefix: Option<&str>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let original_host = parts.headers.get(header::HOST).cloned();
    let Ok(uri) = Uri::try_from(format!("http://127.0.0.1:{port}{path}")) else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    strip_credentials(&mut parts.headers);
    if let Some(host) = original_host {
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    parts.headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Some(prefix) = prefix.and_then(|p| HeaderValue::from_str(p).ok()) {
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-prefix"), prefix);
    }
    // During a canary each version's requests are measured, its analysis
    // reads them: the time to the answer's head, and as errors a 5xx, no
    // answer, an answer slower than CANARY_PATIENCE, or a visitor who gave
    // up waiting (the guard counts a request whose future is dropped).
    let mut measure = version.map(|version| Measure {
        local: &state.local,
        app,
        env,
        version,
        started: std::time::Instant::now(),
        done: false,
    });
    let request = state.web.proxy.request(Request::from_parts(parts, body));
    let answer = match &measure {
        Some(_) => match tokio::time::timeout(CANARY_PATIENCE, request).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {}s", CANARY_PATIENCE.as_secs())),
        },
        None => request.await.map_err(|e| e.to_string()),
    };
    if let Some(measure) = &mut measure {
        let error = answer
            .as_ref()
            .map_or(true, |response| response.status().is_server_error());
        measure.finish(error);
    }
    match answer {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            confine_cookies(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(error) => {
            tracing::warn!(%app, %env, %error, "proxying to a local environment failed");
            (
                StatusCode::BAD_GATEWAY,
                format!("Gantry: {env} of {app} did not answer: {error}\n"),
            )
                .into_response()
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// What the environment must never see of the visitor's Gantry identity:
/// the `Authorization` header (an admin's API token), Gantry's cookies, the
/// CSRF header. The environment's own cookies pass.
pub fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(crate::http::principal::CSRF_HEADER);
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default().trim();
            !pair.is_empty() && !is_gantry_cookie(name)
        })
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

fn is_gantry_cookie(name: &str) -> bool {
    // Browsers match cookie names exactly; a name differing only by case
    // is refused too, as some servers read cookies case-insensitively.
    GANTRY_COOKIES
        .iter()
        .any(|own| own.eq_ignore_ascii_case(name))
}

/// An environment sets cookies for its own host only: a `Domain` attribute
/// (which could reach the dashboard's host, `Domain=localhost`) is removed,
/// and a cookie named like one of Gantry's is dropped.
pub fn confine_cookies(headers: &mut HeaderMap) {
    let cookies: Vec<String> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| {
            let mut parts = value.split(';');
            let pair = parts.next()?.trim();
            let name = pair.split('=').next().unwrap_or_default().trim();
            let name = name
                .strip_prefix("__Host-")
                .or_else(|| name.strip_prefix("__Secure-"))
                .unwrap_or(name);
            if name.is_empty() || is_gantry_cookie(name) {
                return None;
            }
            let attributes: Vec<&str> = parts
                .map(str::trim)
                .filter(|a| {
                    !a.split('=')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .eq_ignore_ascii_case("domain")
                })
                .collect();
            Some(
                std::iter::once(pair)
                    .chain(attributes)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .collect();
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// How long a measured request (during a canary) may take before it
/// counts as an error and is answered 504.
const CANARY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// One measured request: recorded once, as an error if it never finished.
struct Measure<'a> {
    local: &'a crate::delivery::deploy::local::LocalRuntime,
    app: &'a str,
    env: &'a str,
    version: crate::delivery::deploy::local::Version,
    started: std::time::Instant,
    done: bool,
}

impl Measure<'_> {
    fn finish(&mut self, error: bool) {
        if !self.done {
            self.done = true;
            let latency = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.local
                .record(self.app, self.env, self.version, error, latency);
        }
    }
}

impl Drop for Measure<'_> {
    fn drop(&mut self) {
        self.finish(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_an_environment() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer gat_x"),
        );
        headers.insert("x-csrf-token", HeaderValue::from_static("c"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; gantry_session=abc; GANTRY_SESSION=x"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("cart=3"));
        strip_credentials(&mut headers);
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert!(headers.get("x-csrf-token").is_none());
        assert_eq!(
            headers.get(header::COOKIE).and_then(|v| v.to_str().ok()),
            Some("theme=dark; cart=3")
        );
    }

    #[test]
    fn an_environment_cannot_set_cookies_beyond_its_host() {
        let mut headers = HeaderMap::new();
        for cookie in [
            "gantry_session=evil; Path=/; Domain=localhost",
            "__Host-gantry_session=evil; Secure; Path=/",
            "cart=3; Domain=.localhost; Path=/; HttpOnly",
            "plain=1",
        ] {
            headers.append(header::SET_COOKIE, HeaderValue::from_static(cookie));
        }
        confine_cookies(&mut headers);
        let kept: Vec<&str> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(kept, ["cart=3; Path=/; HttpOnly", "plain=1"]);
    }

    #[test]
    fn environment_hosts_are_recognised_only_under_the_public_host() {
        let parse = |host| environment_from_host(host, "localhost");
        assert_eq!(
            parse("staging--shop.localhost:3000"),
            Some(("staging".into(), "shop".into()))
        );
        assert_eq!(
            parse("preview-feature-x--shop.localhost"),
            Some(("preview-feature-x".into(), "shop".into()))
        );
        assert_eq!(parse("localhost:3000"), None);
        assert_eq!(parse("staging--shop.evil.com"), None);
        assert_eq!(parse("a--b--c.localhost"), None);
        // Host names are case-insensitive (browsers send them lowercased).
        assert_eq!(
            parse("Staging--shop.LOCALHOST"),
            Some(("staging".into(), "shop".into()))
        );
        assert_eq!(parse("staging--shop.localhost.evil.com"), None);
    }
}
