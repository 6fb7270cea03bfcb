//! An environment's live resource tree on its clusters: a page of what
//! Gantry applied with health, sync state, children and events (viewers);
//! one object live with its difference from what was applied (admins); a
//! pod's log (the app's developers).

use app::port::StackPort;
use axum::Json;
use axum::extract::{Path, Query, State};

use crate::auth::Principal;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};

/// A page of an environment's resources on one cluster (filters and
/// `page` as the query says; 50 objects a page).
#[utoipa::path(get, path = "/api/v1/apps/{app}/environments/{env}/resources", tag = "environments",
    params(("app" = String, Path), ("env" = String, Path), app::dto::ResourceQuery),
    responses((status = 200, body = app::dto::ResourcePage), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path((app, env)): Path<(String, String)>,
    Query(query): Query<app::dto::ResourceQuery>,
) -> Result<Json<app::dto::ResourcePage>, ApiError> {
    Ok(Json(
        state
            .resources(&principal.caller(), app, env, query)
            .await?,
    ))
}

/// One object the environment's deployment applied: live (Secret values
/// redacted), as applied, and the difference in the fields Gantry applied
/// (admins).
#[utoipa::path(get, path = "/api/v1/apps/{app}/environments/{env}/resources/object", tag = "environments",
    params(("app" = String, Path), ("env" = String, Path), app::dto::ResourceRef),
    responses((status = 200, body = app::dto::ResourceDetail), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn object(
    State(state): State<AppState>,
    principal: Principal,
    Path((app, env)): Path<(String, String)>,
    Query(reference): Query<app::dto::ResourceRef>,
) -> Result<Json<app::dto::ResourceDetail>, ApiError> {
    Ok(Json(
        state
            .resource(&principal.caller(), app, env, reference)
            .await?,
    ))
}

/// The last lines of a pod's log in the environment's namespace (the
/// app's developers and admins).
#[utoipa::path(get, path = "/api/v1/apps/{app}/environments/{env}/pods/{pod}/log", tag = "environments",
    params(("app" = String, Path), ("env" = String, Path), ("pod" = String, Path), app::dto::PodLogQuery),
    responses((status = 200, body = app::dto::PodLog), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn pod_log(
    State(state): State<AppState>,
    principal: Principal,
    Path((app, env, pod)): Path<(String, String, String)>,
    Query(query): Query<app::dto::PodLogQuery>,
) -> Result<Json<app::dto::PodLog>, ApiError> {
    Ok(Json(
        state
            .pod_log(&principal.caller(), app, env, pod, query)
            .await?,
    ))
}
