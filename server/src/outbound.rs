//! Calls Gantry makes to other services — forge APIs, chat robots, SMTP
//! servers, and environments behind the preview proxy. Their URLs often
//! carry a token (a robot's `access_token`, a password), so errors name the
//! host only, never the URL.

/// The plain-HTTP client the preview proxy forwards requests with.
pub type ProxyClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    axum::body::Body,
>;

pub fn proxy_client() -> ProxyClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// The host of `url`, for error messages (empty when it has none).
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// Why a call to another service did not get what it asked for. The
/// messages are kept with deliveries and shown to admins: they name the
/// host, never the URL.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request could not be made or no answer came.
    #[error("{host}: {reason}")]
    Unreachable { host: String, reason: String },
    /// The service answered, and not with success.
    #[error("{call} answered {status}: {excerpt}")]
    Refused {
        /// The host, or the method, path and host.
        call: String,
        status: reqwest::StatusCode,
        excerpt: String,
    },
}

impl crate::error::Classified for CallError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Unavailable
    }
}

/// Sends `request` (built for `url`); the status and body text. A failure
/// to connect names the host only.
pub async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<(reqwest::StatusCode, String), CallError> {
    let response = request.send().await.map_err(|e| CallError::Unreachable {
        host: host_of(url),
        reason: e.without_url().to_string(),
    })?;
    let status = response.status();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// The first 200 characters of an answer, for an error message.
pub fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}
