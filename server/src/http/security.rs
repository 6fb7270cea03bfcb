//! Headers every dashboard response carries: a Content-Security-Policy
//! (scripts from this origin or carrying the page's nonce, WebAssembly, no
//! framing), `X-Frame-Options`, `X-Content-Type-Options` and a referrer
//! policy. Environments are proxied before this layer: their headers are
//! their own.
//!
//! And the hosts the dashboard answers to: a page on another name that
//! resolves to this server (DNS rebinding) would be same-origin with
//! whatever it reads, so a request under a name that is not Gantry's is
//! refused.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// The nonce of one response's inline scripts (see `dashboard`).
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

/// Anything that is not a page: nothing may load, nothing may frame it.
const NOT_A_PAGE: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         base-uri 'none'; frame-ancestors 'none'"
    )
}

pub async fn headers(mut request: Request, next: Next) -> Response {
    let nonce = new_nonce();
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let policy = if is_page {
        page_policy(&nonce)
    } else {
        NOT_A_PAGE.to_string()
    };
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// 128 random bits; without randomness no page could carry a script, so
/// a failure falls back to a value no attacker can predict in advance.
fn new_nonce() -> String {
    let mut bytes = [0_u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = now.to_le_bytes();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether the dashboard answers to `host` (a `Host` header): the public
/// URL's host, `localhost`, an IP address, or one of `server.allowed_hosts`.
/// The port is not compared (the name is what a rebinding page controls).
pub fn answers_to(host: &str, public: &url::Url, allowed: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:3000`, `127.0.0.1:3000`, `localhost:3000`; a bare IPv6
        // address in brackets has no port to strip.
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.is_empty() => name,
        _ => host,
    }
    .trim_start_matches('[')
    .trim_end_matches(']')
    .to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || public.host_str().is_some_and(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(&name)
        })
        || allowed.contains(&name)
}

/// Refuses (421) a request under a name that is not Gantry's. Probes and
/// the metrics scrape come by a pod's address, and are always answered; a
/// request without `Host` (not from a browser) is too.
pub async fn allowed_host(
    axum::extract::State(state): axum::extract::State<crate::http::AppState>,
    request: Request,
    next: Next,
) -> Response {
    // HTTP/2 names the host in the request's authority, not a header.
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
    match host {
        Some(host)
            if !probe
                && !answers_to(&host, &state.config.public_url, &state.config.allowed_hosts) =>
        {
            let message = format!(
                "this Gantry answers as {} (and localhost); {host} is not one of its names. An admin adds it to server.allowed_hosts",
                state.config.public_url.host_str().unwrap_or("localhost")
            );
            (axum::http::StatusCode::MISDIRECTED_REQUEST, message).into_response()
        }
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_answers_to_its_names_and_addresses_only() {
        let public: url::Url = "https://gantry.example.com/".parse().unwrap();
        let allowed = vec!["ci.internal".to_string()];
        for host in [
            "gantry.example.com",
            "GANTRY.example.com:443",
            "localhost:3000",
            "127.0.0.1:3000",
            "[::1]:3000",
            "10.0.0.7",
            "ci.internal",
        ] {
            assert!(answers_to(host, &public, &allowed), "{host}");
        }
        for host in [
            "evil.example",
            "gantry.example.com.evil.example:3000",
            "rebind.attacker.test:3000",
        ] {
            assert!(!answers_to(host, &public, &allowed), "{host}");
        }
    }
}
