//! Sending queued deliveries: due ones are sent, a 2xx (and, for DingTalk
//! and WeCom, `errcode: 0`) marks them delivered; anything else is retried after
//! 2 s, 4 s, 8 s, 16 s and then given up as failed, the last error kept
//! for the dashboard.

use std::time::Duration;

use super::message::{Outgoing, render};
use super::{ChannelKind, ChannelSettings, Notice, Notifier};
use crate::db::{self, notifications::DueDelivery, now_millis};

/// Why one attempt at a delivery failed; its message is kept with the
/// delivery for the Settings page (hosts only, never a URL).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("unknown channel kind {0}")]
    UnknownKind(String),
    #[error("{what}: {source}")]
    Stored {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("{what}: {reason}")]
    Email { what: String, reason: String },
    #[error(transparent)]
    Call(#[from] crate::outbound::CallError),
    #[error("{channel} refused the message: {answer}")]
    Refused {
        channel: &'static str,
        answer: String,
    },
}

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 5;
/// The first retry's delay; each next one doubles.
const FIRST_RETRY: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(10);

/// The client deliveries are sent with: no redirects (a channel's URL is
/// where the message goes, nowhere else), a timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// Sends every due delivery once; how many were delivered.
pub async fn send_due(
    notifier: &Notifier<'_>,
    client: &reqwest::Client,
) -> Result<usize, crate::db::QueryError> {
    let pool = notifier.db.pool();
    let mut delivered = 0;
    for due in db::notifications::due(pool, now_millis(), 50).await? {
        let outcome = attempt(notifier, client, &due).await;
        let now = now_millis();
        match outcome {
            Ok(()) => {
                db::notifications::delivered(pool, due.id, now).await?;
                delivered += 1;
            }
            Err(error) => {
                let attempts = due.attempts + 1;
                let next = (attempts < MAX_ATTEMPTS).then(|| {
                    let delay = FIRST_RETRY * 2u32.pow(u32::try_from(attempts - 1).unwrap_or(0));
                    now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
                });
                tracing::warn!(delivery = due.id, attempts, %error, "notification not delivered");
                db::notifications::failed_attempt(pool, due.id, attempts, next, &error.to_string())
                    .await?;
            }
        }
    }
    Ok(delivered)
}

async fn attempt(
    notifier: &Notifier<'_>,
    client: &reqwest::Client,
    due: &DueDelivery,
) -> Result<(), DeliveryError> {
    let kind = ChannelKind::parse(&due.kind)
        .ok_or_else(|| DeliveryError::UnknownKind(due.kind.clone()))?;
    let settings: ChannelSettings =
        serde_json::from_str(&due.settings).map_err(|source| DeliveryError::Stored {
            what: "channel settings",
            source,
        })?;
    let notice: Notice =
        serde_json::from_str(&due.payload).map_err(|source| DeliveryError::Stored {
            what: "notice",
            source,
        })?;
    // Templates were checked at registration; should one still fail, the
    // message goes out in Gantry's words rather than not at all. The
    // notice's own words are made inert in the channel's markup first: the
    // template's markup is an admin's, what it quotes is anyone's.
    let worded = |notice: Notice| {
        super::template::apply(&settings.templates, &notice).unwrap_or_else(|error| {
            tracing::warn!(delivery = due.id, %error, "template not applied");
            notice
        })
    };
    let marked = worded(super::message::inert(kind, &notice));
    let notice = worded(notice);
    let mut names = vec![settings.url_secret.clone()];
    names.extend(settings.signing_secret.clone());
    let values = notifier.secrets().resolve(0, &names).await?;
    let url = &values[0].1;
    if kind == ChannelKind::Email {
        return send_email(url, &settings, &notice).await;
    }
    let secret = values.get(1).map(|(_, v)| v.as_str());
    let mut outgoing = render(
        kind,
        url,
        secret,
        &settings.mentions,
        (&notice, &marked),
        now_millis(),
        (kind == ChannelKind::Webhook).then_some(due.id),
    );
    if kind == ChannelKind::Webhook {
        // The same on every attempt: a delivery sent again after a crash
        // (sent, never marked delivered) is told apart from a new one.
        outgoing
            .headers
            .push(("x-gantry-delivery".to_string(), due.id.to_string()));
    }
    send(client, kind, &outgoing).await
}

/// One email with a text and an HTML part, over SMTP (TLS, STARTTLS or
/// plain, as the server URL says).
async fn send_email(
    smtp_url: &str,
    settings: &ChannelSettings,
    notice: &Notice,
) -> Result<(), DeliveryError> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let (subject, text, html) = super::message::email(notice);
    let from: Mailbox = settings
        .from
        .as_deref()
        .unwrap_or("Gantry <gantry@localhost>")
        .parse()
        .map_err(|e| email("from", e))?;
    let mut message = Message::builder().from(from).subject(subject);
    for to in &settings.to {
        message = message.to(to.parse().map_err(|e| email(format!("to {to}"), e))?);
    }
    let message = message
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| email("message", e))?;
    // The URL holds the SMTP password: errors name the host only.
    let host = crate::outbound::host_of(smtp_url);
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
        .map_err(|e| email(format!("SMTP server URL for {host}"), e))?
        .timeout(Some(TIMEOUT))
        .build();
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| email(host, e))
}

fn email(what: impl Into<String>, reason: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Email {
        what: what.into(),
        reason: reason.to_string(),
    }
}

async fn send(
    client: &reqwest::Client,
    kind: ChannelKind,
    outgoing: &Outgoing,
) -> Result<(), DeliveryError> {
    let mut request = client.post(&outgoing.url).json(&outgoing.body);
    for (name, value) in &outgoing.headers {
        request = request.header(name, value);
    }
    // The URL holds the robot's token: errors name the host only.
    let (status, text) = crate::outbound::send(request, &outgoing.url).await?;
    if !status.is_success() {
        return Err(crate::outbound::CallError::Refused {
            call: crate::outbound::host_of(&outgoing.url),
            status,
            excerpt: crate::outbound::excerpt(&text),
        }
        .into());
    }
    // The robots answer 200 with an error code when they refuse.
    if matches!(kind, ChannelKind::DingTalk | ChannelKind::WeCom) {
        let errcode = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["errcode"].as_i64())
            .unwrap_or(0);
        if errcode != 0 {
            return Err(DeliveryError::Refused {
                channel: kind.as_str(),
                answer: text,
            });
        }
    }
    Ok(())
}
