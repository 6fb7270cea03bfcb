//! Receiving a forge's webhook: which forge, which delivery, which event,
//! and whether the forge really sent it. GitHub and Gitea sign the body
//! with HMAC-SHA256 (`X-Hub-Signature-256: sha256=<hex>`,
//! `X-Gitea-Signature: <hex>`); GitLab sends the shared token itself
//! (`X-Gitlab-Token`). Every comparison is constant-time.

use http::HeaderMap;

use super::Forge;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("the signature does not match the body (header {0}); check the webhook secret")]
    BadSignature(&'static str),
    #[error("no webhook secret is registered for {forge}: an admin sets the secret {name}")]
    NoSecret { forge: &'static str, name: String },
}

/// Where a delivery's id and event name are, per forge.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
}

impl Forge {
    fn delivery_header(self) -> &'static str {
        match self {
            Forge::GitHub => "x-github-delivery",
            // GitLab 15+; older ones only send the idempotency key.
            Forge::GitLab => "x-gitlab-event-uuid",
            Forge::Gitea => "x-gitea-delivery",
        }
    }

    fn event_header(self) -> &'static str {
        match self {
            Forge::GitHub => "x-github-event",
            Forge::GitLab => "x-gitlab-event",
            Forge::Gitea => "x-gitea-event",
        }
    }

    fn signature_header(self) -> &'static str {
        match self {
            Forge::GitHub => "x-hub-signature-256",
            Forge::GitLab => "x-gitlab-token",
            Forge::Gitea => "x-gitea-signature",
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, WebhookError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(WebhookError::MissingHeader(name))
}

/// The delivery's id and event name.
pub fn delivery(forge: Forge, headers: &HeaderMap) -> Result<Delivery, WebhookError> {
    let id = match header(headers, forge.delivery_header()) {
        Ok(id) => id,
        Err(missing) if forge == Forge::GitLab => {
            header(headers, "idempotency-key").map_err(|_| missing)?
        }
        Err(missing) => return Err(missing),
    };
    Ok(Delivery {
        id: id.to_string(),
        event: header(headers, forge.event_header())?.to_string(),
    })
}

/// Checks that `body` came from the forge that knows `secret`.
pub fn verify(
    forge: Forge,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> Result<(), WebhookError> {
    let name = forge.signature_header();
    let sent = header(headers, name)?;
    let ok = match forge {
        Forge::GitLab => crate::auth::constant_time_eq(sent, secret),
        Forge::GitHub => sent
            .strip_prefix("sha256=")
            .is_some_and(|hex| constant_time_hex_eq(hex, &sign(secret, body))),
        Forge::Gitea => constant_time_hex_eq(sent, &sign(secret, body)),
    };
    if ok {
        Ok(())
    } else {
        Err(WebhookError::BadSignature(name))
    }
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub use crate::secrets::hmac_hex as sign;

fn constant_time_hex_eq(sent: &str, expected: &str) -> bool {
    crate::auth::constant_time_eq(&sent.to_ascii_lowercase(), expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header"));
        }
        map
    }

    #[test]
    fn github_and_gitea_signatures_are_hmacs_of_the_body() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let good = sign("s3cret", body);
        let github = headers(&[("x-hub-signature-256", &format!("sha256={good}"))]);
        assert_eq!(verify(Forge::GitHub, &github, body, "s3cret"), Ok(()));
        assert_eq!(
            verify(Forge::GitHub, &github, body, "other"),
            Err(WebhookError::BadSignature("x-hub-signature-256"))
        );
        assert!(verify(Forge::GitHub, &github, b"{}", "s3cret").is_err());
        let gitea = headers(&[("x-gitea-signature", &good)]);
        assert_eq!(verify(Forge::Gitea, &gitea, body, "s3cret"), Ok(()));
        assert_eq!(
            verify(Forge::Gitea, &headers(&[]), body, "s3cret"),
            Err(WebhookError::MissingHeader("x-gitea-signature"))
        );
    }

    #[test]
    fn gitlab_sends_the_token_itself() {
        let gitlab = headers(&[("x-gitlab-token", "tok3n")]);
        assert_eq!(verify(Forge::GitLab, &gitlab, b"{}", "tok3n"), Ok(()));
        assert!(verify(Forge::GitLab, &gitlab, b"{}", "tok3n-but-longer").is_err());
    }

    #[test]
    fn deliveries_are_named_by_each_forges_headers() {
        let github = headers(&[
            ("x-github-delivery", "72d3162e"),
            ("x-github-event", "push"),
        ]);
        assert_eq!(
            delivery(Forge::GitHub, &github),
            Ok(Delivery {
                id: "72d3162e".into(),
                event: "push".into()
            })
        );
        let gitlab = headers(&[("idempotency-key", "k-1"), ("x-gitlab-event", "Push Hook")]);
        assert_eq!(
            delivery(Forge::GitLab, &gitlab).map(|d| d.id),
            Ok("k-1".into())
        );
        assert_eq!(
            delivery(Forge::Gitea, &headers(&[("x-gitea-event", "push")])),
            Err(WebhookError::MissingHeader("x-gitea-delivery"))
        );
    }
}
