//! Notifications where people look. Admins register channels (a DingTalk
//! robot, a Slack incoming webhook, a WeCom group robot, a generic signed
//! webhook, email over SMTP) whose URL and
//! signing secret are registered secrets, referenced by name — encrypted,
//! re-keyed with the rest, never shown. Each channel's rules pick the
//! events (per app and environment) it wants. Every notice becomes one
//! delivery per channel, unique per (event, subject) — one message per run
//! outcome or release, not one per step — sent in the background with
//! retries (exponential backoff, bounded attempts) and kept as a log. A
//! channel may word its messages itself (`template`).

pub mod channels;
pub mod deliver;
pub mod message;
pub mod template;

use serde::{Deserialize, Serialize};

use crate::db::{self, now_millis};

macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }
    };
}

names! {
    /// Where a channel sends.
    ChannelKind {
        DingTalk => "dingtalk",
        Slack => "slack",
        WeCom => "wecom",
        Webhook => "webhook",
        Email => "email",
    }
}

names! {
    /// What happened.
    Event {
        RunFailed => "run_failed",
        PreviewReady => "preview_ready",
        ApprovalRequested => "approval_requested",
        Approved => "approved",
        Released => "released",
        RolledBack => "rolled_back",
        Drift => "drift",
        Test => "test",
    }
}

/// One thing to tell people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub event: Event,
    pub app: String,
    pub environment: String,
    /// What it is about (`run:42`, `release:7`): one message per subject
    /// and event.
    pub subject: String,
    pub title: String,
    /// Markdown.
    pub text: String,
    pub url: Option<String>,
}

/// Which notices a channel wants: empty lists mean every app, environment
/// or event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rule {
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub events: Vec<Event>,
}

impl Rule {
    fn matches(&self, notice: &Notice) -> bool {
        let any = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        notice.event == Event::Test
            || (any(&self.apps, &notice.app)
                && any(&self.environments, &notice.environment)
                && (self.events.is_empty() || self.events.contains(&notice.event)))
    }
}

/// A channel's non-secret settings (stored as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelSettings {
    /// The registered secret holding the robot's or webhook's URL.
    pub url_secret: String,
    /// The registered secret it signs with (DingTalk `sign`, the generic
    /// webhook's `X-Gantry-Signature`).
    #[serde(default)]
    pub signing_secret: Option<String>,
    /// DingTalk: the mobile numbers to @mention; WeCom: the user ids.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// A notice is sent when any rule matches (no rules: everything).
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Email: the recipients (the URL secret is the SMTP server:
    /// `smtp://user:pass@host:587?tls=required` for STARTTLS,
    /// `smtps://…:465` for TLS, `smtp://host:25` for plain).
    #[serde(default)]
    pub to: Vec<String>,
    /// Email: the sender (default `gantry@localhost`).
    #[serde(default)]
    pub from: Option<String>,
    /// The channel's own wording, per event name or `default`.
    #[serde(default, skip_serializing_if = "template::Templates::is_empty")]
    pub templates: template::Templates,
}

impl ChannelSettings {
    pub fn wants(&self, notice: &Notice) -> bool {
        self.rules.is_empty() || self.rules.iter().any(|rule| rule.matches(notice))
    }
}

/// What notifications need and nothing more: the database (the queue),
/// the vault (channel URLs and signing keys are secrets), the flow (to wake
/// delivery) and the dashboard's public address (for links).
#[derive(Clone, Copy)]
pub struct Notifier<'a> {
    pub db: &'a crate::db::Db,
    pub vault: &'a crate::secrets::Vault,
    pub flow: &'a crate::signals::Signals,
    pub public_url: &'a url::Url,
}

impl Notifier<'_> {
    fn secrets(&self) -> crate::secrets::Store<'_> {
        crate::secrets::Store::new(self.db, self.vault)
    }
}

/// Queues `notice` for every channel that wants it. Never fails the caller:
/// a notification problem is logged, the flow goes on.
pub async fn emit(notifier: &Notifier<'_>, mut notice: Notice) {
    // A run's error or a deploy's detail may quote an app's output.
    let app_id = run_app_id(notifier, &notice.app).await;
    match notifier.secrets().masker(app_id).await {
        Ok(masker) => {
            notice.title = masker.mask(&notice.title);
            notice.text = masker.mask(&notice.text);
        }
        Err(error) => {
            tracing::warn!(%error, event = notice.event.as_str(), "notification not queued: it could not be masked");
            return;
        }
    }
    if let Err(error) = queue(notifier, &notice).await {
        tracing::warn!(%error, event = notice.event.as_str(), subject = %notice.subject, "notification not queued");
    }
}

async fn queue(notifier: &Notifier<'_>, notice: &Notice) -> Result<usize, crate::db::QueryError> {
    let pool = notifier.db.pool();
    let payload = serde_json::to_string(notice).unwrap_or_default();
    let now = now_millis();
    let mut queued = 0;
    for channel in db::notifications::channels(pool).await? {
        let Ok(settings) = serde_json::from_str::<ChannelSettings>(&channel.settings) else {
            continue;
        };
        if settings.wants(notice)
            && db::notifications::queue(
                pool,
                channel.id,
                notice.event.as_str(),
                &notice.subject,
                &payload,
                now,
            )
            .await?
        {
            queued += 1;
        }
    }
    if queued > 0 {
        notifier.flow.notify_wake.notify_one();
    }
    Ok(queued)
}

/// The link to a page of the dashboard.
pub fn link(notifier: &Notifier<'_>, path: &str) -> String {
    format!(
        "{}/{}",
        notifier.public_url.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// A run ended: failed runs everywhere, and previews that went live.
pub async fn run_ended(
    notifier: &Notifier<'_>,
    run_id: i64,
    state: app::dto::RunState,
    error: Option<&str>,
) {
    let pool = notifier.db.pool();
    let Ok(Some((run, _))) = db::runs::detail(pool, run_id).await else {
        return;
    };
    let short = &run.commit_sha[..run.commit_sha.len().min(7)];
    let notice = match state {
        app::dto::RunState::Failed => Notice {
            event: Event::RunFailed,
            app: run.app.clone(),
            environment: run.environment.clone(),
            subject: format!("run:{run_id}"),
            title: format!("{} {}: run {run_id} failed", run.app, run.environment),
            text: format!("{short} on {}: {}", run.branch, error.unwrap_or("failed")),
            url: Some(link(notifier, &format!("runs/{run_id}"))),
        },
        app::dto::RunState::Succeeded => {
            let Ok(Some(env)) = db::environments::find_for_branch(
                pool,
                run_app_id(notifier, &run.app).await,
                &run.branch,
            )
            .await
            else {
                return;
            };
            let Ok(Some(app_row)) = db::apps::get(pool, env.app_id).await else {
                return;
            };
            let Ok(config) =
                serde_json::from_str::<crate::gitops::schema::AppConfig>(&app_row.config)
            else {
                return;
            };
            if !crate::gitops::stack::is_preview(&config, &env.stack_entry)
                || env.commit_sha.as_deref() != Some(run.commit_sha.as_str())
            {
                return;
            }
            Notice {
                event: Event::PreviewReady,
                app: run.app.clone(),
                environment: run.environment.clone(),
                subject: format!("run:{run_id}"),
                title: format!("{} preview {} is ready", run.app, run.environment),
                text: format!("{short} on {}", run.branch),
                url: env.url.clone(),
            }
        }
        _ => return,
    };
    emit(notifier, notice).await;
}

async fn run_app_id(notifier: &Notifier<'_>, name: &str) -> i64 {
    db::apps::find_active_by_name(notifier.db.pool(), name)
        .await
        .ok()
        .flatten()
        .map_or(0, |row| row.id)
}
