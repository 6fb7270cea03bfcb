//! The change feed over server-sent events: the dashboard's pages listen
//! here and refetch what they show when the version moves (see `changes`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;

use crate::auth::Principal;
use crate::http::AppState;
use crate::http::error::ApiError;

/// `version` events: the current version first, then each new one (at
/// most one a second). Clients that reconnect compare and refetch.
#[utoipa::path(get, path = "/api/v1/changes", tag = "dashboard",
    responses((status = 200, description = "text/event-stream of `version` events")))]
pub async fn feed(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    principal.require(app::dto::Role::Viewer, None)?;
    // While nobody listened the feed kept an old version: bring it up to
    // date, or a page would take that for a change and refresh for nothing.
    state.changes.refresh().await;
    let versions = WatchStream::new(state.changes.subscribe())
        // The first value may be empty until the feed's first read.
        .filter(|version| std::future::ready(!version.is_empty()))
        .map(|version| {
            Ok(Event::default()
                .event("version")
                .data(version)
                .retry(Duration::from_secs(2)))
        });
    Ok(Sse::new(versions).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
