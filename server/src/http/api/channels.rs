//! Notification channels over REST (admins): register, list, remove, send
//! a test message, read the delivery log — each a call to
//! `notify::channels`. URLs and signing secrets are registered secrets,
//! named here, never returned.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::db::notifications::DeliveryRow;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::principal::Admin;
use crate::notify::{ChannelSettings, channels};

/// A channel to register under the path's name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewChannel {
    /// dingtalk, slack, wecom, webhook or email.
    pub kind: String,
    #[serde(flatten)]
    pub settings: ChannelSettings,
}

/// A registered channel: its settings and how its deliveries fare.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub name: String,
    pub kind: String,
    pub settings: ChannelSettings,
    /// Deliveries given up after every retry.
    pub failed_deliveries: i64,
}

/// Every channel, without secret values.
#[utoipa::path(get, path = "/api/v1/channels", tag = "notifications",
    responses((status = 200, body = [ChannelView]), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    let channels = channels::registered(&state.notifier(), &principal.caller()).await?;
    Ok(Json(
        channels
            .into_iter()
            .map(|channel| ChannelView {
                failed_deliveries: channel.failed_deliveries(),
                name: channel.name,
                kind: channel.kind,
                settings: channel.settings,
            })
            .collect(),
    ))
}

/// Registers (or replaces) a channel. Its secrets must be registered first.
#[utoipa::path(put, path = "/api/v1/channels/{name}", tag = "notifications",
    params(("name" = String, Path)), request_body = NewChannel,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(name): Path<String>,
    Json(channel): Json<NewChannel>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = principal.caller();
    channels::put(
        &state.notifier(),
        &caller,
        &name,
        &channel.kind,
        &channel.settings,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/channels/{name}", tag = "notifications",
    params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    channels::remove(&state.notifier(), &principal.caller(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a test message through the channel now (its delivery is logged).
#[utoipa::path(post, path = "/api/v1/channels/{name}/test", tag = "notifications",
    params(("name" = String, Path)),
    responses((status = 202), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    channels::send_test(&state.notifier(), &principal.caller(), &name).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The channel's delivery log, newest first: attempts, state, last error.
#[utoipa::path(get, path = "/api/v1/channels/{name}/deliveries", tag = "notifications",
    params(("name" = String, Path)),
    responses((status = 200, body = [DeliveryRow]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Vec<DeliveryRow>>, ApiError> {
    Ok(Json(
        channels::deliveries(&state.notifier(), &principal.caller(), &name).await?,
    ))
}
