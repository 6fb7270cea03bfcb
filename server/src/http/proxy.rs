//! The reverse proxy of the local target: `http://<env>--<app>.<host>/…`
//! (browsers resolve `*.localhost` to loopback) and, for clients that
//! cannot, `http://<host>/env/<app>/<env>/…`. Both forward to the process
//! serving the environment right now, so a deploy switches traffic
//! atomically.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::state::AppState;

pub type ProxyClient = Client<HttpConnector, Body>;

pub fn client() -> ProxyClient {
    Client::builder(TokioExecutor::new()).build_http()
}

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

/// `<env>--<app>` from a Host header under the public host, if it is one.
pub fn environment_from_host(host: &str, public_host: &str) -> Option<(String, String)> {
    let host = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    let label = host.strip_suffix(public_host)?.strip_suffix('.')?;
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
    let public_host = state
        .config
        .public_url
        .host_str()
        .unwrap_or("localhost")
        .to_string();
    match host.and_then(|host| environment_from_host(&host, &public_host)) {
        Some((env, app)) => {
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            forward(&state, &app, &env, &path, None, request).await
        }
        None => next.run(request).await,
    }
}

/// `/env/{app}/{env}/{*rest}`
pub async fn by_path(
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
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let prefix = format!("/env/{app}/{env}");
    forward(
        &state,
        &app,
        &env,
        &format!("/{rest}{query}"),
        Some(&prefix),
        request,
    )
    .await
}

async fn forward(
    state: &AppState,
    app: &str,
    env: &str,
    path: &str,
    prefix: Option<&str>,
    request: Request,
) -> Response {
    let Some(port) = state.local.route(app, env) else {
        return (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("Gantry: no live environment {env} of {app} on the local target.\n"),
        )
            .into_response();
    };
    let (mut parts, body) = request.into_parts();
    let original_host = parts.headers.get(header::HOST).cloned();
    let Ok(uri) = Uri::try_from(format!("http://127.0.0.1:{port}{path}")) else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
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
    match state.proxy.request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse("Staging--shop.localhost"), None);
    }
}
