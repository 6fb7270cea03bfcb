//! What every handler and server function is given: the application
//! ([`App`], which [`AppState`] derefs to) and what only the HTTP surface
//! reads — Leptos' settings, the metrics handle, the sign-in provider's
//! client and the preview proxy's.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::state::App;

/// What only the HTTP surface holds.
#[derive(Debug)]
pub struct Web {
    pub leptos: LeptosOptions,
    pub metrics: PrometheusHandle,
    /// The OIDC provider's discovered settings and keys.
    pub oidc: crate::auth::oidc::Oidc,
    /// Forwards requests to environments (the preview proxy).
    pub proxy: crate::outbound::ProxyClient,
    /// When `/metrics` last read the ledger for the delivery figures.
    pub delivery_exported: std::sync::atomic::AtomicI64,
}

/// The cheap-to-clone handle axum passes to handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub app: Arc<App>,
    pub web: Arc<Web>,
}

impl AppState {
    pub fn new(app: Arc<App>) -> AppState {
        let web = Web {
            leptos: leptos_options(&app.config),
            metrics: crate::telemetry::metrics_handle(),
            oidc: crate::auth::oidc::Oidc::default(),
            proxy: crate::outbound::proxy_client(),
            delivery_exported: std::sync::atomic::AtomicI64::new(i64::MIN),
        };
        AppState {
            app,
            web: Arc::new(web),
        }
    }
}

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> LeptosOptions {
        state.web.leptos.clone()
    }
}

/// Leptos' settings, built here rather than read from `LEPTOS_*` variables:
/// the frontend is embedded in the binary (see `http::assets`).
fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("gantry")
        .site_pkg_dir("pkg")
        .site_addr(config.bind)
        .build()
}
