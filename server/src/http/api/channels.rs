//! Notification channels over REST (admins): register, list, remove, send
//! a test message, read the delivery log. URLs and signing secrets are
//! registered secrets, named here, never returned.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::db::{self, notifications::DeliveryRow};
use crate::http::error::{ApiError, ErrorBody};
use crate::notify::{ChannelKind, ChannelSettings};
use crate::state::AppState;

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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

async fn channel(state: &AppState, name: &str) -> Result<db::notifications::ChannelRow, ApiError> {
    db::notifications::channel(state.db.pool(), name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no notification channel {name}")))
}

/// Every channel, without secret values.
#[utoipa::path(get, path = "/api/v1/channels", tag = "notifications",
    responses((status = 200, body = [ChannelView]), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    principal.require(app::dto::Role::Admin, None)?;
    let mut out = Vec::new();
    for row in db::notifications::channels(state.db.pool()).await? {
        let failed = db::notifications::deliveries(state.db.pool(), row.id)
            .await?
            .iter()
            .filter(|d| d.state == "failed")
            .count();
        out.push(ChannelView {
            settings: serde_json::from_str(&row.settings)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            name: row.name,
            kind: row.kind,
            failed_deliveries: i64::try_from(failed).unwrap_or(i64::MAX),
        });
    }
    Ok(Json(out))
}

/// Registers (or replaces) a channel. Its secrets must be registered first.
#[utoipa::path(put, path = "/api/v1/channels/{name}", tag = "notifications",
    params(("name" = String, Path)), request_body = NewChannel,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Json(channel): Json<NewChannel>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(app::dto::Role::Admin, None)?;
    if !valid_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "{name:?} is not a channel name: lowercase letters, digits and `-`, at most 40"
        )));
    }
    let kind = ChannelKind::parse(&channel.kind).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "kind {:?} is not a channel kind; expected dingtalk, slack, wecom, webhook or email",
            channel.kind
        ))
    })?;
    if kind == ChannelKind::Email {
        if channel.settings.to.is_empty() {
            return Err(ApiError::BadRequest(
                "an email channel needs `to`: one or more addresses".into(),
            ));
        }
        for address in channel.settings.to.iter().chain(&channel.settings.from) {
            if address.parse::<lettre::message::Mailbox>().is_err() {
                return Err(ApiError::BadRequest(format!(
                    "{address:?} is not an email address"
                )));
            }
        }
    }
    crate::notify::template::validate(&channel.settings.templates).map_err(ApiError::BadRequest)?;
    let mut names = vec![channel.settings.url_secret.clone()];
    names.extend(channel.settings.signing_secret.clone());
    state.secrets().resolve(0, &names).await.map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}; register it with PUT /api/v1/secrets/<NAME> first"
        ))
    })?;
    let settings =
        serde_json::to_string(&channel.settings).map_err(|e| ApiError::Internal(e.to_string()))?;
    db::notifications::put_channel(
        state.db.pool(),
        &name,
        kind.as_str(),
        &settings,
        db::now_millis(),
    )
    .await?;
    crate::dashboard::audit(
        &state,
        &principal.caller(),
        "channel.set",
        &format!("channel {name}"),
        None,
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
    principal.require(app::dto::Role::Admin, None)?;
    if !db::notifications::delete_channel(state.db.pool(), &name).await? {
        return Err(ApiError::NotFound(format!(
            "no notification channel {name}"
        )));
    }
    crate::dashboard::audit(
        &state,
        &principal.caller(),
        "channel.remove",
        &format!("channel {name}"),
        None,
    )
    .await?;
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
    principal.require(app::dto::Role::Admin, None)?;
    if !crate::notify::channels::send_test(&state, &name, &principal.caller().me.name).await? {
        return Err(ApiError::NotFound(format!(
            "no notification channel {name}"
        )));
    }
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
    principal.require(app::dto::Role::Admin, None)?;
    let row = channel(&state, &name).await?;
    Ok(Json(
        db::notifications::deliveries(state.db.pool(), row.id).await?,
    ))
}
