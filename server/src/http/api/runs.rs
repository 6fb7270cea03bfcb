//! Runs: detail, logs (stored and live), and the actions on a run:
//! approve, reject, cancel, re-run.

use std::convert::Infallible;
use std::time::Duration;

use app::dto::RunDetail;
use app::port::RunsPort;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{Stream, StreamExt};
use serde::Deserialize;

use crate::approvals::{self, ApprovalOutcome};
use crate::auth::Principal;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::principal::Admin;
use crate::runs::logs::RunEvent;

/// A run with its steps and test reports.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "run id")),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    state
        .run_detail(&principal.caller(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))
}

/// The stored log of one step, as plain text.
#[utoipa::path(get, path = "/api/v1/runs/{id}/steps/{step}/log", tag = "runs",
    params(("id" = i64, Path), ("step" = i64, Path, description = "step id")),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = ErrorBody)))]
pub async fn step_log(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, step)): Path<(i64, i64)>,
) -> Result<impl IntoResponse, ApiError> {
    let log = state
        .step_log(&principal.caller(), id, step)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} has no step {step}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log))
}

/// Server-sent events of a run: every stored log chunk first, then live
/// `log`, `step` and `run` events. Reconnecting clients get the whole log
/// again and skip the chunks (`step_id`, `seq`) they have.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events", tag = "runs",
    params(("id" = i64, Path)),
    responses((status = 200, description = "text/event-stream of RunEvent JSON")))]
pub async fn run_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let events =
        crate::runs::watch::watch(&state.db, &state.events, &principal.caller(), id).await?;
    let events = events.map(|event| {
        let name = match &event {
            RunEvent::Log { .. } => "log",
            RunEvent::Step { .. } => "step",
            RunEvent::Run { .. } => "run",
        };
        Ok(Event::default()
            .event(name)
            .json_data(&event)
            .unwrap_or_else(|_| Event::default().comment("unserialisable event")))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Why (optional for approvals, recorded in the audit log).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    #[serde(default)]
    pub comment: Option<String>,
}

/// Approves a run held for approval; queues it once the policy is met.
#[utoipa::path(post, path = "/api/v1/runs/{id}/approve", tag = "approvals",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = ApprovalOutcome), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Json<ApprovalOutcome>, ApiError> {
    Ok(Json(
        approvals::approve(
            &state.approvals(),
            &principal.caller(),
            id,
            decision.comment.as_deref(),
        )
        .await?,
    ))
}

/// Rejects a run held for approval; it ends as cancelled.
#[utoipa::path(post, path = "/api/v1/runs/{id}/reject", tag = "approvals",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = ApprovalOutcome), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Json<ApprovalOutcome>, ApiError> {
    Ok(Json(
        approvals::reject(
            &state.approvals(),
            &principal.caller(),
            id,
            decision.comment.as_deref(),
        )
        .await?,
    ))
}

/// Admins: release a held run regardless of approvals and freeze; the
/// comment is the mandatory reason, kept in the audit log.
#[utoipa::path(post, path = "/api/v1/runs/{id}/override", tag = "approvals",
    params(("id" = i64, Path)), request_body = Decision,
    responses((status = 200, body = ApprovalOutcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn override_hold(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Json<ApprovalOutcome>, ApiError> {
    let reason = decision.comment.as_deref().unwrap_or("");
    Ok(Json(
        approvals::override_hold(&state.approvals(), &principal.caller(), id, reason).await?,
    ))
}

/// Asks a queued, held or running run to stop (admins).
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = i64, Path)),
    responses((status = 202, description = "cancel requested"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    crate::runs::cancel::cancel(&state.db, &principal.caller(), id).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(serde_json::json!({ "cancel_requested": true })),
    ))
}

/// What an admin asks of a run's canary.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct RolloutAction {
    /// `promote` (past a `pause: {}`) or `abort` (traffic back to stable).
    pub action: String,
}

/// Admins of the run's app: promote its canary past a `pause: {}`, or
/// abort it (every request back to the stable version). Audited.
#[utoipa::path(post, path = "/api/v1/runs/{id}/rollout", tag = "runs",
    params(("id" = i64, Path)), request_body = RolloutAction,
    responses((status = 202, description = "the canary takes the action"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollout(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(id): Path<i64>,
    Json(request): Json<RolloutAction>,
) -> Result<impl IntoResponse, ApiError> {
    crate::runs::rollout::command(&state.db, &principal.caller(), id, &request.action).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(serde_json::json!({ "action": request.action })),
    ))
}

/// Runs a finished run's commit again (developers of its app): planned like
/// a push of that head, so it is held for approval where a push would be.
/// Only the branch's current head; an older commit is a rollback.
#[utoipa::path(post, path = "/api/v1/runs/{id}/rerun", tag = "runs",
    params(("id" = i64, Path)),
    responses((status = 201, body = app::dto::RunStarted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rerun(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let run_id = crate::jobs::rerun::rerun(&state.app, &principal.caller(), id).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(app::dto::RunStarted { run_id }),
    ))
}

/// What a run would change on its environment's clusters, object by object:
/// the live state against a server-side dry run of the run's manifests.
#[utoipa::path(get, path = "/api/v1/runs/{id}/diff", tag = "runs",
    params(("id" = i64, Path)),
    responses((status = 200, body = [crate::delivery::deploy::drift::ObjectDiff]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<Vec<crate::delivery::deploy::drift::ObjectDiff>>, ApiError> {
    state
        .run_diff(&principal.caller(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))
}
