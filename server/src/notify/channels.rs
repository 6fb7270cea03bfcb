//! Channels as people see them — what each hears and how its recent
//! deliveries fared — and the "send test message" action. The REST API and
//! the dashboard both come here.

use app::dto::{ChannelSummary, DeliverySummary};

use super::{ChannelSettings, Event, Notice};
use crate::db::{self, now_millis};
use crate::state::App;

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

/// Every channel with its recent deliveries, newest first.
pub async fn summaries(app: &App) -> Result<Vec<ChannelSummary>, sqlx::Error> {
    let pool = app.db.pool();
    let mut out = Vec::new();
    for row in db::notifications::channels(pool).await? {
        let settings: ChannelSettings = match serde_json::from_str(&row.settings) {
            Ok(settings) => settings,
            Err(error) => {
                tracing::warn!(channel = %row.name, %error, "unreadable channel settings");
                continue;
            }
        };
        let deliveries = db::notifications::deliveries(pool, row.id).await?;
        let failed = deliveries.iter().filter(|d| d.state == "failed").count();
        out.push(ChannelSummary {
            hears: hears(&settings),
            templated: settings.templates.keys().cloned().collect(),
            name: row.name,
            kind: row.kind,
            failed_deliveries: i64::try_from(failed).unwrap_or(i64::MAX),
            deliveries: deliveries
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
        });
    }
    Ok(out)
}

/// Queues a test message through channel `name` for `who`; `false`: no
/// such channel.
pub async fn send_test(app: &App, name: &str, who: &str) -> Result<bool, sqlx::Error> {
    let pool = app.db.pool();
    let Some(row) = db::notifications::channel(pool, name).await? else {
        return Ok(false);
    };
    let now = now_millis();
    let notice = Notice {
        event: Event::Test,
        app: String::new(),
        environment: String::new(),
        subject: format!("test:{now}"),
        title: "Gantry test message".into(),
        text: format!("{who} checked that channel {name} works."),
        url: Some(super::link(app, "")),
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
    app.flow.notify_wake.notify_one();
    Ok(true)
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
