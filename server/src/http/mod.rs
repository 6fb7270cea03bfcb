//! The HTTP surface, grouped by caller: the dashboard (Leptos SSR and its
//! server functions), the REST API under `/api/v1`, and operations endpoints
//! for probes and Prometheus. `router::build_app` composes them; `main` and
//! the tests use the same function.

pub mod api;
pub mod assets;
pub mod auth;
pub mod builds;
pub mod dashboard;
pub mod error;
pub mod middleware;
pub mod ops;
pub mod preview;
pub mod principal;
pub mod proxy;
pub mod router;
pub mod security;
pub mod state;

pub use router::build_app;
pub use state::AppState;

/// Starts the application's background work behind the listeners it needs:
/// the preview socket sandboxed steps reach environments through is up
/// before the first run starts.
pub async fn start(state: &AppState) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let preview = preview::serve(state.clone()).await?;
    let mut tasks = crate::jobs::start(&state.app).await?;
    tasks.push(preview);
    Ok(tasks)
}
