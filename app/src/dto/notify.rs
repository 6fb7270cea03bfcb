//! Notification channels and their deliveries.

use super::*;

/// A notification channel as the dashboard shows it: never its URL or
/// secrets, always how its recent deliveries fared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChannelSummary {
    pub name: String,
    /// dingtalk, slack, wecom, webhook or email.
    pub kind: String,
    /// What it hears, in words (`run_failed, released on shop`).
    pub hears: String,
    /// Events with their own wording.
    pub templated: Vec<String>,
    /// Deliveries given up after every retry, among the recent ones.
    pub failed_deliveries: i64,
    /// The most recent deliveries, newest first.
    pub deliveries: Vec<DeliverySummary>,
}

/// One message to one channel and how it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeliverySummary {
    pub id: i64,
    pub event: String,
    pub subject: String,
    /// pending, retrying, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: UnixMillis,
    pub delivered_at: Option<UnixMillis>,
}

/// A channel as the dashboard's form registers it: its URL and signing
/// key are registered secrets, named here, never typed in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelForm {
    pub name: String,
    /// dingtalk, slack, wecom, webhook or email.
    pub kind: String,
    pub url_secret: String,
    pub signing_secret: Option<String>,
    /// Email: the recipients.
    pub to: Vec<String>,
    /// Email: the sender.
    pub from: Option<String>,
    /// DingTalk: mobile numbers to @mention; WeCom: user ids.
    pub mentions: Vec<String>,
    /// Only these events (none: every event).
    pub events: Vec<String>,
}
