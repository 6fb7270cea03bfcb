//! The audit log and its filter.

use super::*;

/// One line of the append-only audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: UnixMillis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub source_ip: Option<String>,
}

/// Which audit entries to list; every field narrows, none means all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct AuditFilter {
    /// Exactly this person.
    #[serde(default)]
    pub actor: Option<String>,
    /// An action (`run.approve`) or a family (`change_request`).
    #[serde(default)]
    pub action: Option<String>,
    /// Text the target contains (an app, a cluster, a request number).
    #[serde(default)]
    pub target: Option<String>,
    /// From this time (ms since the epoch), inclusive.
    #[serde(default)]
    pub since: Option<UnixMillis>,
    /// Before this time (ms since the epoch).
    #[serde(default)]
    pub until: Option<UnixMillis>,
    /// At most this many (default 200, at most 1000).
    #[serde(default)]
    pub limit: Option<i64>,
}

impl AuditFilter {
    /// Empty strings (an untouched form field) mean "any".
    pub fn normalized(mut self) -> AuditFilter {
        for field in [&mut self.actor, &mut self.action, &mut self.target] {
            if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            }
        }
        self
    }
}
