//! The preview socket: a Unix socket in the data directory that serves the
//! local target's environments and nothing else — no dashboard, no API, no
//! sessions. Sandboxed steps reach environment URLs through it (their
//! relay forwards `localhost:<port>` here), so a smoke test works while the
//! host's loopback, Gantry's API included, stays out of reach.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::any;

use crate::http::AppState;
use crate::http::proxy;

/// Where the socket lives (the sandbox mounts it as its only door out).
pub fn socket_path(data_dir: &Path) -> PathBuf {
    crate::sandbox::preview_socket_path(data_dir)
}

/// Environments by host (`<env>--<app>.<preview domain>`) or by path
/// (`/env/<app>/<env>/…`); anything else is not here.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/env/{app}/{env}", any(proxy::by_path))
        .route("/env/{app}/{env}/", any(proxy::by_path))
        .route("/env/{app}/{env}/{*rest}", any(proxy::by_path))
        // An analysis step's way to the canary alone (never the dashboard's).
        .route("/canary/{app}/{env}", any(proxy::canary_by_path))
        .route("/canary/{app}/{env}/", any(proxy::canary_by_path))
        .route("/canary/{app}/{env}/{*rest}", any(proxy::canary_by_path))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "Gantry: only environments are served here.\n",
            )
                .into_response()
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            proxy::by_host,
        ))
        .with_state(state)
}

/// Serves the socket until shutdown. Sandboxes run as another user, so the
/// socket is world-connectable; only sandboxes see it (the data directory
/// around it is 0700).
pub async fn serve(state: AppState) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(&state.config.data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    let shutdown = state.replica.shutdown.clone();
    let router = router(state);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the preview socket stopped");
        }
        let _ = std::fs::remove_file(&path);
    }))
}
