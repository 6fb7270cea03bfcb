//! Clusters: register, list (never credentials), check, remove.

use app::dto::ClusterSummary;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::auth::Principal;
use crate::clusters::{self, ClusterError, Registration};
use crate::http::error::{ApiError, ErrorBody};
use crate::state::AppState;

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::NotFound(_) => ApiError::NotFound(error.to_string()),
            ClusterError::Exists(_) | ClusterError::InUse { .. } => {
                ApiError::Conflict(error.to_string())
            }
            ClusterError::BadName(_)
            | ClusterError::BadKubeconfig(_)
            | ClusterError::NoContext { .. }
            | ClusterError::BadRequest(_)
            | ClusterError::Client { .. } => ApiError::BadRequest(error.to_string()),
            ClusterError::Secret(_) | ClusterError::Db(_) => ApiError::Internal(error.to_string()),
        }
    }
}

/// Registers a cluster from a kubeconfig, server + token, or in-cluster,
/// and checks it. Apps waiting for this target are re-validated.
#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters", request_body = Registration,
    responses((status = 201, body = ClusterSummary), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    principal: Principal,
    Json(registration): Json<Registration>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(app::dto::Role::Admin, None)?;
    let summary = clusters::register(&state, &registration).await?;
    revalidate(&state).await;
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
    principal.require(app::dto::Role::Admin, None)?;
    Ok(Json(clusters::check(&state, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/clusters/{name}", tag = "clusters", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(app::dto::Role::Admin, None)?;
    clusters::remove(&state, &name).await?;
    crate::dashboard::audit(&state, &principal.caller(), "cluster.remove", &name, None).await?;
    revalidate(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The set of valid targets changed: read the pipeline repo again.
async fn revalidate(state: &AppState) {
    if let Err(error) = crate::gitops::reconcile::reapply(state).await {
        tracing::warn!(%error, "re-reading the pipeline repo after a cluster change failed");
    }
}
