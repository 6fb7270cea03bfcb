//! Artifacts over REST: an admin rejects one (it is never promoted again
//! without an override). Thin: the rule lives in `crate::promotion`.

use app::dto::{ArtifactStatus, RejectArtifact};
use axum::Json;
use axum::extract::{Path, State};

use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::principal::Admin;

/// Admins of the app: reject an artifact, with a reason kept with it and
/// in the audit log. Runs of it into fixed environments are held from
/// then on, until an admin overrides one.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/reject", tag = "releases",
    params(("id" = i64, Path)), request_body = RejectArtifact,
    responses((status = 200, body = ArtifactStatus), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    Admin(principal): Admin,
    Path(id): Path<i64>,
    Json(request): Json<RejectArtifact>,
) -> Result<Json<ArtifactStatus>, ApiError> {
    Ok(Json(
        crate::promotion::reject(
            &state.db,
            &principal.caller(),
            id,
            &request.reason,
            state.clock.now_millis(),
        )
        .await?,
    ))
}
