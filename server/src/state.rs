//! The one application state every handler, server function and background
//! task shares.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::db::{Db, DbError};

/// Everything the server holds for its whole life.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub db: Db,
    pub metrics: PrometheusHandle,
    pub leptos: LeptosOptions,
}

impl App {
    /// Connects to the database and brings its schema up to date.
    pub async fn start(config: Config) -> Result<App, DbError> {
        let db = Db::connect(&config.database).await?;
        db.migrate().await?;
        Ok(App {
            leptos: leptos_options(&config),
            metrics: crate::telemetry::metrics_handle(),
            config,
            db,
        })
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

/// The cheap-to-clone handle axum passes to handlers.
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> LeptosOptions {
        state.leptos.clone()
    }
}
