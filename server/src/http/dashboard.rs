//! The Leptos dashboard: server-side rendering of every page, the server
//! functions, and the 404 page for unknown addresses.

use std::sync::Arc;

use app::port::{DashboardPort, Port};
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};

use crate::state::AppState;

/// Makes the dashboard port available to every render and server function.
fn provide_port(state: &AppState) -> impl Fn() + Clone + Send + Sync + 'static {
    let port: Arc<dyn DashboardPort> = state.0.clone();
    move || provide_context(Port(port.clone()))
}

/// The page routes and server functions of the dashboard.
pub fn routes(state: &AppState) -> Router<AppState> {
    let options = state.leptos.clone();
    Router::new().leptos_routes_with_context(
        state,
        generate_route_list(app::App),
        provide_port(state),
        move || app::shell(options.clone()),
    )
}

/// Anything no route matched: render the app, whose router shows Not Found
/// (with status 404) — whole, like every page (see `app::App`).
pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let options = state.leptos.clone();
    let handler = leptos_axum::render_app_async_with_context(provide_port(&state), move || {
        app::shell(options.clone())
    });
    handler(request).await.into_response()
}
