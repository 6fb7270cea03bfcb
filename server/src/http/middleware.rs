//! Cross-cutting layers: request ids, request logs and request metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Span;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The span every request's logs are recorded in, carrying its request id.
pub fn request_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        request_id = %request_id,
    )
}

/// Counts requests and records their duration, labelled by route template
/// (never the raw path, which would explode the label space).
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("gantry_http_requests_total", &labels).increment(1);
    metrics::histogram!("gantry_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
