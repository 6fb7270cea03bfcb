//! Delivery metrics from the release ledger, following dora.dev's
//! definitions (user guide, docs/src/ledger.md, "Delivery metrics").

use serde::{Deserialize, Serialize};

use super::UnixMillis;

/// `GET /api/v1/metrics/delivery`: which app(s), environment and range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct DeliveryQuery {
    /// One app (default: every app the caller may see).
    #[serde(default)]
    pub app: Option<String>,
    /// Default `production`.
    #[serde(default)]
    pub environment: Option<String>,
    /// The range: the last this many days, 1 to 365 (default 30).
    #[serde(default)]
    pub days: Option<u32>,
}

/// One app's delivery in one environment over a range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeliveryMetrics {
    pub app: String,
    pub environment: String,
    pub from: UnixMillis,
    pub to: UnixMillis,
    /// Releases that went live (rollbacks not counted).
    pub deployments: i64,
    /// Deployment frequency: deployments per day over the range.
    pub per_day: f64,
    /// Change lead time, first commit to live: the median and the 90th
    /// percentile over the range's deployments that brought commits.
    pub lead_time_p50_millis: Option<i64>,
    pub lead_time_p90_millis: Option<i64>,
    /// Deployments that failed: rolled back, aborted, or followed by a fix
    /// within the fix window.
    pub failed: i64,
    /// Change fail rate: `failed / deployments` (none without deployments).
    pub change_fail_rate: Option<f64>,
    /// Failed-deployment recovery time: the median, failed deployment live
    /// to what replaced it live.
    pub recovery_p50_millis: Option<i64>,
    /// Failed deployments nothing replaced yet.
    pub unrecovered: i64,
    /// Deployments made to fix one that failed: rollbacks and fixes.
    pub rework: i64,
    /// Deployment rework rate: `rework / (deployments + rollbacks)`.
    pub rework_rate: Option<f64>,
    /// How long after a deployment a fix marks it failed.
    pub fix_window_millis: i64,
    /// Day by day (UTC), oldest first: for the charts.
    pub days: Vec<DeliveryDay>,
}

/// One UTC day of an environment's delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeliveryDay {
    pub start: UnixMillis,
    pub deployments: i64,
    pub failed: i64,
    pub rework: i64,
}
