//! The REST API's one error type. Domain errors map to a status here, once.
//! A 500's body is generic; its cause goes to the log, inside the request's
//! span (which carries the request id).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Classified, Kind};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    /// Something Gantry depends on is down; the cause goes to the log.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code: `not_found`, `bad_request`,
    /// `unauthorized`, `forbidden`, `conflict`, `gone`, `unavailable`,
    /// `internal`.
    pub code: &'static str,
    pub message: String,
}

/// What `Retry-After` says on an answer to an outage, in seconds: about a
/// pool's wait for a connection, so a retry is not answered from the same
/// outage at once.
pub const RETRY_AFTER_SECONDS: &str = "5";

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Gone(_) => (StatusCode::GONE, "gone"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                "internal error; the server log has the cause (look up the x-request-id)"
                    .to_string()
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "request failed: a dependency is unavailable");
                "temporarily unavailable; try again later (the server log has the cause)"
                    .to_string()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail { code, message },
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // An outage (the database, git, a cluster): clients and proxies
            // try again after this many seconds rather than at once.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

impl From<app::port::PortError> for ApiError {
    fn from(error: app::port::PortError) -> Self {
        match error {
            app::port::PortError::Failed(cause) => ApiError::Internal(cause),
            app::port::PortError::Unavailable(cause) => ApiError::Unavailable(cause),
            app::port::PortError::Refused(reason) => ApiError::BadRequest(reason),
            app::port::PortError::Forbidden(reason) => ApiError::Forbidden(reason),
            app::port::PortError::NotFound(reason) => ApiError::NotFound(reason),
            app::port::PortError::Conflict(reason) => ApiError::Conflict(reason),
            app::port::PortError::Gone(reason) => ApiError::Gone(reason),
        }
    }
}

impl ApiError {
    /// The answer to a domain error, decided by its kind alone.
    pub fn of(error: &impl Classified) -> ApiError {
        let message = error.to_string();
        match error.kind() {
            Kind::NotFound => ApiError::NotFound(message),
            Kind::Invalid => ApiError::BadRequest(message),
            Kind::Conflict => ApiError::Conflict(message),
            Kind::Gone => ApiError::Gone(message),
            Kind::Forbidden => ApiError::Forbidden(message),
            Kind::Unauthenticated => ApiError::Unauthorized(message),
            Kind::Unavailable => ApiError::Unavailable(message),
            Kind::Internal => ApiError::Internal(message),
        }
    }
}

macro_rules! answered_by_kind {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                ApiError::of(&error)
            }
        }
    )*};
}

answered_by_kind!(
    crate::auth::AuthError,
    crate::clusters::ClusterError,
    crate::delivery::deploy::drift::DriftError,
    crate::notify::channels::ChannelError,
    crate::runs::cancel::CancelError,
    crate::jobs::rerun::RerunError,
    crate::secrets_admin::AdminError,
    crate::runs::watch::WatchError,
    crate::delivery::ledger::LedgerError,
    crate::sharing::ShareError,
    crate::change_requests::ChangeRequestError,
    crate::approvals::ApprovalError,
    crate::promotion::PromotionError,
    crate::runs::rollout::RolloutError,
);

impl From<crate::db::QueryError> for ApiError {
    fn from(error: crate::db::QueryError) -> Self {
        ApiError::of(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("what went wrong, with an internal detail: db at 10.0.0.5")]
    struct Failure(Kind);

    impl Classified for Failure {
        fn kind(&self) -> Kind {
            self.0
        }
    }

    const KINDS: [Kind; 8] = [
        Kind::NotFound,
        Kind::Invalid,
        Kind::Conflict,
        Kind::Gone,
        Kind::Forbidden,
        Kind::Unauthenticated,
        Kind::Unavailable,
        Kind::Internal,
    ];

    /// Every kind's status and JSON, in one place; the cause of an internal
    /// or unavailable failure stays in the log.
    #[tokio::test]
    async fn every_kind_has_one_answer() {
        let mut answers = Vec::new();
        for kind in KINDS {
            let response = ApiError::of(&Failure(kind)).into_response();
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
            if matches!(kind, Kind::Internal | Kind::Unavailable) {
                assert!(!body.to_string().contains("10.0.0.5"), "{kind:?}: {body}");
            }
            answers.push(
                serde_json::json!({ "kind": format!("{kind:?}"), "status": status, "body": body }),
            );
        }
        insta::assert_json_snapshot!(answers);
    }
}
