//! Clusters: register, list (never credentials), check, remove.

use app::dto::ClusterSummary;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::auth::Principal;
use crate::clusters::Registration;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::principal::Admin;

/// Registers a cluster from a kubeconfig, server + token, or in-cluster,
/// and checks it. Apps waiting for this target are re-validated. The same
/// service as the dashboard's: admins only, audited.
#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters", request_body = Registration,
    responses((status = 201, body = ClusterSummary), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Json(registration): Json<Registration>,
) -> Result<impl IntoResponse, ApiError> {
    let summary = state
        .cluster_registry()
        .register(&principal.caller(), &registration)
        .await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

/// Checks connectivity now: server version, or the error.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/check", tag = "clusters", params(("name" = String, Path)),
    responses((status = 200, body = ClusterSummary), (status = 404, body = ErrorBody)))]
pub async fn check(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<ClusterSummary>, ApiError> {
    Ok(Json(
        state
            .cluster_registry()
            .check(&principal.caller(), &name)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/clusters/{name}", tag = "clusters", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state
        .cluster_registry()
        .remove(&principal.caller(), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
