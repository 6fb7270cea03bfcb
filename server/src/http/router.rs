//! Composes every router and the layers around them. `main` and the tests
//! both build the application through [`build_app`].

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::http::AppState;
use crate::http::middleware::{REQUEST_ID, record_metrics, request_span};
use crate::http::{api, assets, auth, builds, dashboard, ops, proxy, security};

pub fn build_app(state: AppState) -> Router {
    let body_limit = usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX);

    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/pkg/{name}", get(assets::serve_asset))
        .route("/auth/login", get(auth::login))
        .route("/auth/callback", get(auth::callback))
        .route("/auth/dev", get(auth::dev_form).post(auth::dev_login))
        .route("/auth/logout", axum::routing::post(auth::logout))
        // The path form of an environment moves to its own host.
        .route(
            "/env/{app}/{env}",
            axum::routing::any(proxy::redirect_to_host),
        )
        .route(
            "/env/{app}/{env}/",
            axum::routing::any(proxy::redirect_to_host),
        )
        .route(
            "/env/{app}/{env}/{*rest}",
            axum::routing::any(proxy::redirect_to_host),
        )
        .nest("/api/v1", api::routes())
        .merge(dashboard::routes(&state))
        .fallback(dashboard::fallback)
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(auth::session_layer(&state))
        .layer(axum::middleware::from_fn(security::headers))
        // Under a name that is not Gantry's (a DNS-rebinding page), nothing.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::allowed_host,
        ))
        // Environment hosts are proxied before any route sees them (and
        // before the dashboard's headers, which are not theirs).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            proxy::by_host,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        // A 5xx is logged where it happens, with its cause.
                        .on_failure(DefaultOnFailure::new().level(Level::DEBUG))
                        .on_response(
                            DefaultOnResponse::new()
                                .level(Level::INFO)
                                .latency_unit(tower_http::LatencyUnit::Millis),
                        ),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(CompressionLayer::new())
                .layer(DefaultBodyLimit::max(body_limit))
                .layer(RequestBodyLimitLayer::new(body_limit))
                .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                    Duration::from_secs(30),
                )),
        )
        // Build pods' workspaces: outside the layers above (see `builds`).
        .merge(builds::routes())
        .with_state(state)
}
