//! OpenID Connect sign-in: discovery, the authorization code flow with
//! PKCE, `state` and `nonce`, and ID token validation (signature, issuer,
//! audience, expiry, nonce, and `auth_time` when a fresh sign-in was asked
//! for). Roles come from a configurable claim of the ID token.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::config::OidcSettings;

/// A client configured from the provider's discovery document.
pub type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("single sign-on is not configured")]
    NotConfigured,
    #[error("the identity provider at {issuer} cannot be used: {message}")]
    Discovery { issuer: String, message: String },
    #[error("the sign-in could not be completed: {0}")]
    Exchange(String),
    #[error("the ID token was refused: {0}")]
    Token(String),
    #[error("the sign-in answer does not match the request (state); start again")]
    State,
}

/// What a sign-in in progress remembers (in the session) until the
/// provider sends the person back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where to go afterwards (a local path).
    pub return_to: String,
    /// A fresh sign-in (`prompt=login`, `max_age`) was asked for.
    pub fresh: bool,
}

/// Who the provider says signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub name: String,
    pub email: Option<String>,
    /// The values of the roles claim.
    pub roles_claim: Vec<String>,
    /// Milliseconds since the epoch, when the provider says so.
    pub auth_time: Option<i64>,
    /// Every claim of the verified ID token (for `auth.forge_login_claim`).
    pub claims: serde_json::Value,
}

impl Identity {
    /// The text of claim `name`, if the token carries one.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims[name].as_str().filter(|v| !v.trim().is_empty())
    }
}

/// Discovers the provider once (lazily) and keeps the client.
#[derive(Debug, Default)]
pub struct Oidc {
    client: OnceCell<Client>,
}

#[derive(Debug)]
pub struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// openidconnect's HTTP calls, through our reqwest (no redirects followed).
async fn http(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default()
    });
    let request = reqwest::Request::try_from(request.map(reqwest::Body::from))
        .map_err(|e| HttpError(e.to_string()))?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    builder
        .body(body.to_vec())
        .map_err(|e| HttpError(e.to_string()))
}

impl Oidc {
    async fn client(&self, settings: &OidcSettings, redirect: &str) -> Result<&Client, OidcError> {
        self.client
            .get_or_try_init(|| async {
                let fail = |message: String| OidcError::Discovery {
                    issuer: settings.issuer.clone(),
                    message,
                };
                let issuer =
                    IssuerUrl::new(settings.issuer.clone()).map_err(|e| fail(e.to_string()))?;
                let metadata = CoreProviderMetadata::discover_async(issuer, &http)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(settings.client_id.clone()),
                    Some(ClientSecret::new(settings.client_secret.clone())),
                )
                .set_redirect_uri(
                    RedirectUrl::new(redirect.to_string()).map_err(|e| fail(e.to_string()))?,
                );
                Ok(client)
            })
            .await
    }

    /// The provider URL to send the person to, and what to remember.
    pub async fn begin(
        &self,
        settings: &OidcSettings,
        redirect: &str,
        return_to: &str,
        fresh: Option<Duration>,
    ) -> Result<(String, Pending), OidcError> {
        let client = self.client(settings, redirect).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        if let Some(max_age) = fresh {
            request = request
                .add_prompt(CoreAuthPrompt::Login)
                .set_max_age(max_age);
        }
        let (url, state, nonce) = request.url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            return_to: return_to.to_string(),
            fresh: fresh.is_some(),
        };
        Ok((url.to_string(), pending))
    }

    /// Exchanges the code (with the PKCE verifier) and validates the ID
    /// token against the pending sign-in.
    pub async fn finish(
        &self,
        settings: &OidcSettings,
        redirect: &str,
        pending: &Pending,
        answer: Answer<'_>,
        roles_claim: &str,
        fresh_max_age: Duration,
    ) -> Result<Identity, OidcError> {
        let Answer { state, code } = answer;
        if !super::constant_time_eq(state, &pending.state) {
            return Err(OidcError::State);
        }
        let client = self.client(settings, redirect).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&http)
            .await
            .map_err(|e| OidcError::Exchange(e.to_string()))?;
        let id_token = openidconnect::TokenResponse::id_token(&response)
            .ok_or_else(|| OidcError::Token("the provider sent no ID token".into()))?;
        verify(
            client,
            &id_token.to_string(),
            &pending.nonce,
            roles_claim,
            pending.fresh.then_some(fresh_max_age),
        )
    }

    /// Validates a raw ID token with the configured provider (tests use it
    /// to check that tampered tokens are refused).
    pub async fn verify(
        &self,
        settings: &OidcSettings,
        redirect: &str,
        raw: &str,
        nonce: &str,
        roles_claim: &str,
    ) -> Result<Identity, OidcError> {
        let client = self.client(settings, redirect).await?;
        verify(client, raw, nonce, roles_claim, None)
    }
}

/// Signature, issuer, audience, expiry and nonce; `auth_time` when a fresh
/// sign-in is required.
fn verify(
    client: &Client,
    raw: &str,
    nonce: &str,
    roles_claim: &str,
    fresh: Option<Duration>,
) -> Result<Identity, OidcError> {
    let token: CoreIdToken = raw
        .parse()
        .map_err(|e: serde_json::Error| OidcError::Token(e.to_string()))?;
    let verifier = client.id_token_verifier();
    let claims = token
        .claims(&verifier, &Nonce::new(nonce.to_string()))
        .map_err(|e| OidcError::Token(e.to_string()))?;
    let auth_time = claims.auth_time().map(|t| t.timestamp_millis());
    if let Some(max_age) = fresh {
        let recent = auth_time
            .is_some_and(|t| crate::db::now_millis() - t <= max_age.as_millis() as i64 + 5_000);
        if !recent {
            return Err(OidcError::Token(
                "a fresh sign-in was required and the provider reported an older (or no) auth_time"
                    .into(),
            ));
        }
    }
    // The signature is verified: read the roles claim from the payload.
    let payload = raw
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
        .unwrap_or_default();
    let roles_claim = match &payload[roles_claim] {
        serde_json::Value::Array(values) => values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        serde_json::Value::String(value) => value
            .split([',', ' '])
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.to_string())
        .or_else(|| claims.preferred_username().map(|n| n.to_string()))
        .or_else(|| claims.email().map(|e| e.to_string()))
        .unwrap_or_else(|| claims.subject().to_string());
    Ok(Identity {
        issuer: claims.issuer().to_string(),
        subject: claims.subject().to_string(),
        name,
        email: claims.email().map(|e| e.to_string()),
        roles_claim,
        auth_time,
        claims: payload,
    })
}

/// What the provider sent back to `/auth/callback`.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    pub state: &'a str,
    pub code: &'a str,
}
