//! Notification channels, one service behind both surfaces: registering
//! (validated: kind, addresses, templates, and secrets that exist),
//! listing what each hears and how its deliveries fare, removing, the
//! "send test message" action and the delivery log. Managing channels is
//! for global admins; every change is audited here.

use app::dto::{ChannelSummary, DeliverySummary, Role};
use app::port::Caller;

use super::{ChannelKind, ChannelSettings, Event, Notice, Notifier};
use crate::db::{self, notifications::DeliveryRow, now_millis};
use crate::error::{Classified, Kind};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    Forbidden(String),
    #[error("no notification channel {0}")]
    NotFound(String),
    /// The channel as given cannot work; the text says which field.
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl Classified for ChannelError {
    fn kind(&self) -> Kind {
        match self {
            ChannelError::Forbidden(_) => Kind::Forbidden,
            ChannelError::NotFound(_) => Kind::NotFound,
            ChannelError::Invalid(_) => Kind::Invalid,
            ChannelError::Db(error) => error.kind(),
        }
    }
}

fn require_admin(caller: &Caller) -> Result<(), ChannelError> {
    caller
        .require(Role::Admin, None)
        .map_err(|refused| ChannelError::Forbidden(refused.to_string()))
}

/// A registered channel: its settings (secret names, never values) and how
/// many of its deliveries were given up.
pub struct Registered {
    pub name: String,
    pub kind: String,
    pub settings: ChannelSettings,
    pub deliveries: Vec<DeliveryRow>,
}

impl Registered {
    pub fn failed_deliveries(&self) -> i64 {
        let failed = self
            .deliveries
            .iter()
            .filter(|d| d.state == "failed")
            .count();
        i64::try_from(failed).unwrap_or(i64::MAX)
    }
}

/// Every channel with its deliveries, newest first. A channel whose stored
/// settings do not read back is left out, with a warning in the log.
pub async fn registered(
    notifier: &Notifier<'_>,
    caller: &Caller,
) -> Result<Vec<Registered>, ChannelError> {
    require_admin(caller)?;
    let pool = notifier.db.pool();
    let mut out = Vec::new();
    for row in db::notifications::channels(pool).await? {
        let settings: ChannelSettings = match serde_json::from_str(&row.settings) {
            Ok(settings) => settings,
            Err(error) => {
                tracing::warn!(channel = %row.name, %error, "unreadable channel settings");
                continue;
            }
        };
        out.push(Registered {
            deliveries: db::notifications::deliveries(pool, row.id).await?,
            name: row.name,
            kind: row.kind,
            settings,
        });
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Registers (or replaces) channel `name`. Its secrets must be registered
/// first; nothing is stored when any field is wrong.
pub async fn put(
    notifier: &Notifier<'_>,
    caller: &Caller,
    name: &str,
    kind: &str,
    settings: &ChannelSettings,
) -> Result<(), ChannelError> {
    require_admin(caller)?;
    if !valid_name(name) {
        return Err(ChannelError::Invalid(format!(
            "{name:?} is not a channel name: lowercase letters, digits and `-`, at most 40"
        )));
    }
    let kind = ChannelKind::parse(kind).ok_or_else(|| {
        ChannelError::Invalid(format!(
            "kind {kind:?} is not a channel kind; expected dingtalk, slack, wecom, webhook or email"
        ))
    })?;
    if kind == ChannelKind::Email {
        if settings.to.is_empty() {
            return Err(ChannelError::Invalid(
                "an email channel needs `to`: one or more addresses".into(),
            ));
        }
        for address in settings.to.iter().chain(&settings.from) {
            if address.parse::<lettre::message::Mailbox>().is_err() {
                return Err(ChannelError::Invalid(format!(
                    "{address:?} is not an email address"
                )));
            }
        }
    }
    super::template::validate(&settings.templates).map_err(|e| ChannelError::Invalid(e.into()))?;
    let mut names = vec![settings.url_secret.clone()];
    names.extend(settings.signing_secret.clone());
    notifier.secrets().resolve(0, &names).await.map_err(|e| {
        ChannelError::Invalid(format!(
            "{e}; register it with PUT /api/v1/secrets/<NAME> first"
        ))
    })?;
    let stored = serde_json::to_string(settings)
        .map_err(|e| ChannelError::Invalid(format!("the settings cannot be stored: {e}")))?;
    db::notifications::put_channel(
        notifier.db.pool(),
        name,
        kind.as_str(),
        &stored,
        now_millis(),
    )
    .await?;
    crate::audit::record(
        notifier.db,
        caller,
        "channel.set",
        &format!("channel {name}"),
        None,
    )
    .await?;
    Ok(())
}

/// Removes channel `name` (its delivery log goes with it).
pub async fn remove(
    notifier: &Notifier<'_>,
    caller: &Caller,
    name: &str,
) -> Result<(), ChannelError> {
    require_admin(caller)?;
    if !db::notifications::delete_channel(notifier.db.pool(), name).await? {
        return Err(ChannelError::NotFound(name.to_string()));
    }
    crate::audit::record(
        notifier.db,
        caller,
        "channel.remove",
        &format!("channel {name}"),
        None,
    )
    .await?;
    Ok(())
}

/// Channel `name`'s delivery log, newest first.
pub async fn deliveries(
    notifier: &Notifier<'_>,
    caller: &Caller,
    name: &str,
) -> Result<Vec<DeliveryRow>, ChannelError> {
    require_admin(caller)?;
    let pool = notifier.db.pool();
    let row = db::notifications::channel(pool, name)
        .await?
        .ok_or_else(|| ChannelError::NotFound(name.to_string()))?;
    Ok(db::notifications::deliveries(pool, row.id).await?)
}

/// How many deliveries per channel the dashboard shows.
const RECENT: usize = 10;

/// What a channel's rules hear, in words.
fn hears(settings: &ChannelSettings) -> String {
    if settings.rules.is_empty() {
        return "every event".into();
    }
    settings
        .rules
        .iter()
        .map(|rule| {
            let list = |items: &[String], all: &str| {
                if items.is_empty() {
                    all.to_string()
                } else {
                    items.join(", ")
                }
            };
            let events: Vec<String> = rule.events.iter().map(|e| e.as_str().into()).collect();
            let mut words = list(&events, "every event");
            if !rule.apps.is_empty() {
                words.push_str(&format!(" on {}", rule.apps.join(", ")));
            }
            if !rule.environments.is_empty() {
                words.push_str(&format!(" in {}", list(&rule.environments, "")));
            }
            words
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every channel with its recent deliveries, newest first, as the
/// Settings page shows them.
pub async fn summaries(
    notifier: &Notifier<'_>,
    caller: &Caller,
) -> Result<Vec<ChannelSummary>, ChannelError> {
    Ok(registered(notifier, caller)
        .await?
        .into_iter()
        .map(|channel| ChannelSummary {
            hears: hears(&channel.settings),
            templated: channel.settings.templates.keys().cloned().collect(),
            failed_deliveries: channel.failed_deliveries(),
            name: channel.name,
            kind: channel.kind,
            deliveries: channel
                .deliveries
                .into_iter()
                .take(RECENT)
                .map(|d| DeliverySummary {
                    id: d.id,
                    event: d.event,
                    subject: d.subject,
                    state: d.state,
                    attempts: d.attempts,
                    last_error: d.last_error,
                    created_at: d.created_at,
                    delivered_at: d.delivered_at,
                })
                .collect(),
        })
        .collect())
}

/// Queues a test message through channel `name`, from the caller.
pub async fn send_test(
    notifier: &Notifier<'_>,
    caller: &Caller,
    name: &str,
) -> Result<(), ChannelError> {
    require_admin(caller)?;
    let pool = notifier.db.pool();
    let row = db::notifications::channel(pool, name)
        .await?
        .ok_or_else(|| ChannelError::NotFound(name.to_string()))?;
    let who = &caller.me.name;
    let now = now_millis();
    let notice = Notice {
        event: Event::Test,
        app: String::new(),
        environment: String::new(),
        // Each test message is its own (deliveries are one per subject):
        // two asked for in the same millisecond are two messages.
        subject: format!("test:{now}:{:016x}", nonce()),
        title: "Gantry test message".into(),
        text: format!("{who} checked that channel {name} works."),
        url: Some(super::link(notifier, "")),
    };
    let payload = serde_json::to_string(&notice).unwrap_or_default();
    db::notifications::queue(
        pool,
        row.id,
        Event::Test.as_str(),
        &notice.subject,
        &payload,
        now,
    )
    .await?;
    notifier.flow.notify_wake.notify_one();
    Ok(())
}

fn nonce() -> u64 {
    let mut bytes = [0u8; 8];
    // Without randomness the time alone still names the message.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Rule;

    #[test]
    fn rules_read_as_words() {
        let mut settings: ChannelSettings =
            serde_json::from_value(serde_json::json!({ "url_secret": "U" })).unwrap();
        assert_eq!(hears(&settings), "every event");
        settings.rules = vec![
            Rule {
                apps: vec!["shop".into()],
                environments: vec!["production".into()],
                events: vec![Event::Released, Event::RolledBack],
            },
            Rule {
                events: vec![Event::RunFailed],
                ..Rule::default()
            },
        ];
        assert_eq!(
            hears(&settings),
            "released, rolled_back on shop in production; run_failed"
        );
    }
}
