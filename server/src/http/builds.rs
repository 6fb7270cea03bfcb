//! The build pods' way in and out (`builds::archive`): a pod's `fetch`
//! container downloads its step's workspace, its `collect` container
//! uploads the checkout back, each once, with the token of that step of
//! that run. Any other request is "not found". Outside `/api/v1` and its
//! layers: no session, no body limit of the API (the export limits bound
//! an upload), no host check (a pod may reach a replica by its address).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::http::AppState;

/// How long an upload may take (a step waits two minutes for it).
const UPLOAD_TIME: std::time::Duration = std::time::Duration::from_secs(120);

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/builds/v1/runs/{run}/steps/{step}/workspace",
        get(fetch).put(upload),
    )
}

#[derive(Deserialize)]
struct Ticket {
    #[serde(default)]
    token: String,
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such workspace").into_response()
}

async fn fetch(
    State(state): State<AppState>,
    Path((run, step)): Path<(i64, i64)>,
    Query(ticket): Query<Ticket>,
) -> Response {
    let Ok(path) = state
        .app
        .build_archives
        .take_fetch(run, step, &ticket.token)
    else {
        return not_found();
    };
    match tokio::fs::File::open(&path).await {
        Ok(file) => (
            [(header::CONTENT_TYPE, "application/x-tar")],
            Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        )
            .into_response(),
        Err(_) => not_found(),
    }
}

async fn upload(
    State(state): State<AppState>,
    Path((run, step)): Path<(i64, i64)>,
    Query(ticket): Query<Ticket>,
    body: Body,
) -> Response {
    let archives = &state.app.build_archives;
    let Ok((path, done)) = archives.take_upload(run, step, &ticket.token) else {
        return not_found();
    };
    // An upload that broke off leaves the ticket for the pod's next try.
    let give_back = |done| archives.give_back((run, step), &ticket.token, path.clone(), done);
    // The export limits, and a tar header for each file it may hold.
    let limits = state.app.config.git_export_limits;
    let max = limits.max_bytes + limits.max_entries.saturating_mul(1024);
    let Ok(mut file) = tokio::fs::File::create(&path).await else {
        give_back(done);
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut stream = body.into_data_stream();
    let mut written = 0_u64;
    // An upload that trickles is cut off: its step gives up waiting too.
    let deadline = tokio::time::Instant::now() + UPLOAD_TIME;
    while let Some(chunk) = match tokio::time::timeout_at(deadline, stream.next()).await {
        Ok(chunk) => chunk,
        Err(_) => {
            drop(file);
            let _ = tokio::fs::remove_file(&path).await;
            give_back(done);
            return (StatusCode::REQUEST_TIMEOUT, "the upload took too long").into_response();
        }
    } {
        let Ok(chunk) = chunk else {
            let _ = tokio::fs::remove_file(&path).await;
            give_back(done);
            return StatusCode::BAD_REQUEST.into_response();
        };
        written += chunk.len() as u64;
        if written > max {
            drop(file);
            let _ = tokio::fs::remove_file(&path).await;
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the workspace is larger than {max} bytes"),
            )
                .into_response();
        }
        if file.write_all(&chunk).await.is_err() {
            give_back(done);
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    if file.flush().await.is_err() {
        give_back(done);
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let _ = done.send(());
    StatusCode::NO_CONTENT.into_response()
}
