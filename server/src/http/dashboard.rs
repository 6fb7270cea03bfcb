//! The Leptos dashboard: server-side rendering of every page, the server
//! functions, and the 404 page for unknown addresses.

use std::sync::{Arc, OnceLock};

use app::port::{DashboardPort, IdentityPort, PageVersion, Port};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leptos::prelude::{provide_context, use_context};
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};

use crate::http::AppState;
use crate::http::security::CspNonce;

/// Makes the dashboard port available to every render and server function,
/// and gives the page's inline scripts the nonce its Content-Security-Policy
/// names (see `http::security`).
fn provide_port(state: &AppState) -> impl Fn() + Clone + Send + Sync + 'static {
    let port: Arc<dyn DashboardPort> = state.app.clone();
    move || {
        provide_context(Port(port.clone()));
        let nonce = use_context::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<CspNonce>().cloned());
        if let Some(CspNonce(nonce)) = nonce {
            provide_context(leptos::nonce::Nonce::from_value(nonce));
        }
    }
}

/// The dashboard's pages, listed once per process. Listing runs the app with
/// resource loading suppressed through a process-wide flag, so a page
/// rendering meanwhile in another server of the same process (the tests
/// start many) could have a resource that never loads (leptos#4773): the
/// render hung. The routes are static, so one listing serves every server.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(app::App)).clone()
}

/// The page routes and server functions of the dashboard.
pub fn routes(state: &AppState) -> Router<AppState> {
    let options = state.web.leptos.clone();
    Router::new()
        .leptos_routes_with_context(state, route_list(), provide_port(state), move || {
            app::shell(options.clone())
        })
        // The Notifications page was /channels; links to it keep working.
        .route(
            "/channels",
            axum::routing::get(|| async { axum::response::Redirect::permanent("/notifications") }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            stamp_version,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            sign_in_first,
        ))
}

/// A visitor without an account who opens a page is sent to sign in and
/// brought back: every page but a share link's shows only what an account
/// may see, and a page of "sign in to see this" boxes helps nobody.
async fn sign_in_first(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Where nobody can sign in (API tokens only), there is nowhere to send
    // a visitor: the page says "sign in to see this" itself.
    let can_sign_in = state.config.oidc.is_some() || state.config.dev_login;
    if request.method() != Method::GET || !can_sign_in || !needs_an_account(request.uri().path()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match state.app.identify(parts.clone()).await {
        Ok(None) => {
            let back = parts.uri.path_and_query().map_or("/", |path| path.as_str());
            axum::response::Redirect::to(&format!(
                "/auth/login?return_to={}",
                app::format::percent_encode(back)
            ))
            .into_response()
        }
        // Signed in, or the lookup failed (the page reports that itself).
        _ => next.run(Request::from_parts(parts, body)).await,
    }
}

/// Pages a visitor may open without an account: a share link's.
fn needs_an_account(path: &str) -> bool {
    !path.starts_with("/share/")
}

/// Stamps a page request with the change feed's version, read before the
/// page reads its data (see `app::port::PageVersion`). Without it a page
/// would take the feed's first version as its own, and miss a change made
/// between its render and the feed's connection until the next change.
async fn stamp_version(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::GET {
        match state.changes.version().await {
            Ok(version) => {
                request.extensions_mut().insert(PageVersion(version));
            }
            Err(error) => tracing::debug!(%error, "page version not read"),
        }
    }
    next.run(request).await
}

/// Anything no route matched: render the app, whose router shows Not Found
/// (with status 404) — whole, like every page (see `app::App`).
pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let options = state.web.leptos.clone();
    let handler = leptos_axum::render_app_async_with_context(provide_port(&state), move || {
        app::shell(options.clone())
    });
    handler(request).await.into_response()
}
