//! The lanes: each app's way to production at a glance — previews, then
//! its fixed environments in stack order, with what lies between them —
//! and what needs someone's attention now.

use super::*;

/// Which lanes to show: a page of the apps whose name contains `search`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema, utoipa::IntoParams))]
pub struct LaneQuery {
    /// Part of an app's name (case-insensitive).
    #[serde(default)]
    pub search: Option<String>,
    /// 1 for the first page.
    #[serde(default)]
    pub page: Option<u32>,
}

/// Lanes shown on one page, at most.
pub const LANES_PER_PAGE: u32 = 20;

/// Previews listed in a lane, at most; the app's page lists them all.
pub const PREVIEWS_PER_LANE: usize = 5;

/// One page of lanes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LanesPage {
    pub lanes: Vec<AppLane>,
    /// Apps matching the search that the caller may see, on all pages.
    pub matching: u32,
    pub page: u32,
    pub pages: u32,
    /// The search as applied (trimmed; empty: every app).
    pub search: String,
}

/// One app's way to production.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AppLane {
    pub app: String,
    /// Previews, failed first, then those still on their way, then the
    /// newest; at most [`PREVIEWS_PER_LANE`] unless the lane is an app
    /// page's.
    pub previews: Vec<LaneStop>,
    /// Previews not listed.
    pub more_previews: u32,
    /// The environments of the stack's fixed entries, in stack order
    /// (staging, then production).
    pub stages: Vec<LaneStop>,
    /// Between each stage and the next: `gaps[i]` lies between
    /// `stages[i]` and `stages[i + 1]`.
    pub gaps: Vec<LaneGap>,
}

/// One environment in a lane, with its last run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LaneStop {
    pub environment: EnvironmentSummary,
    /// The newest run for it that was not superseded.
    pub last_run: Option<LastRun>,
    /// The freeze in force on it now.
    pub frozen: Option<String>,
}

impl LaneStop {
    /// Its deploy failed, or its last run did.
    pub fn failed(&self) -> bool {
        matches!(
            self.environment.state,
            EnvironmentState::Failed | EnvironmentState::PartiallyFailed
        ) || self
            .last_run
            .as_ref()
            .is_some_and(|run| run.state == RunState::Failed)
    }

    /// Not deployed yet or being deployed, or its last run has not ended.
    pub fn on_its_way(&self) -> bool {
        matches!(
            self.environment.state,
            EnvironmentState::Pending | EnvironmentState::Deploying
        ) || self.last_run.as_ref().is_some_and(|run| {
            matches!(
                run.state,
                RunState::Queued | RunState::Running | RunState::WaitingForApproval
            )
        })
    }
}

/// The newest run of an environment, as a lane shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LastRun {
    pub id: i64,
    pub state: RunState,
    pub commit_sha: String,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// Why it failed, in one line.
    pub error: Option<String>,
}

/// What lies between two stages of a lane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LaneGap {
    /// The environment before (staging) and after (production).
    pub from: String,
    pub to: String,
    /// Commits live in `from` that `to` does not have, and the reverse;
    /// `None` when a side has nothing deployed or the history is not
    /// known yet.
    pub ahead: Option<u32>,
    pub behind: Option<u32>,
    /// The branches the two stages deploy: a change request from one
    /// into the other promotes.
    pub from_branch: Option<String>,
    pub to_branch: Option<String>,
    /// The caller may open the change request that promotes.
    #[serde(default)]
    pub promotable: bool,
    /// Both run the same code (the same tree), however their histories
    /// differ — a promotion's merge commit, say.
    #[serde(default)]
    pub same_code: bool,
}

impl LaneGap {
    /// In words: "staging has 2 commits not in production".
    pub fn describe(&self) -> String {
        let commits = |n: u32| {
            if n == 1 {
                "1 commit".to_string()
            } else {
                format!("{n} commits")
            }
        };
        match (self.ahead, self.behind) {
            (Some(0), Some(0)) => format!("{} and {} run the same commit", self.from, self.to),
            (Some(_), Some(_)) if self.same_code => {
                format!("{} and {} run the same code", self.from, self.to)
            }
            (Some(ahead), Some(0)) => {
                format!("{} has {} not in {}", self.from, commits(ahead), self.to)
            }
            (Some(0), Some(behind)) => {
                format!("{} is {} ahead of {}", self.to, commits(behind), self.from)
            }
            (Some(ahead), Some(behind)) => format!(
                "{} has {} not in {}; {} has {} not in {}",
                self.from,
                commits(ahead),
                self.to,
                self.to,
                commits(behind),
                self.from
            ),
            _ => format!("{} and {} cannot be compared yet", self.from, self.to),
        }
    }
}

/// What needs someone now, across every app the caller may see.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Attention {
    /// Environments whose deploy or last run failed, newest first.
    pub failed: Vec<AttentionItem>,
    /// Change requests and held runs the caller may decide on (and did
    /// not write).
    pub waiting_for_you: u32,
    /// Environments whose clusters differ from their last deployment.
    pub drifted: Vec<AttentionItem>,
    /// Environments held on a release by a pin.
    pub pinned: Vec<AttentionItem>,
}

impl Attention {
    pub fn is_empty(&self) -> bool {
        self.failed.is_empty()
            && self.waiting_for_you == 0
            && self.drifted.is_empty()
            && self.pinned.is_empty()
    }
}

/// One environment that needs attention, and where to look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AttentionItem {
    pub app: String,
    pub environment: String,
    /// One line: the failure, the pin's reason, …
    pub detail: String,
    /// The run to open, where there is one.
    pub run_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(ahead: Option<u32>, behind: Option<u32>) -> LaneGap {
        LaneGap {
            from: "staging".into(),
            to: "production".into(),
            ahead,
            behind,
            from_branch: Some("latest".into()),
            to_branch: Some("master".into()),
            promotable: true,
            same_code: false,
        }
    }

    #[test]
    fn a_gap_says_which_side_is_ahead_and_by_how_much() {
        assert_eq!(
            gap(Some(2), Some(0)).describe(),
            "staging has 2 commits not in production"
        );
        assert_eq!(
            gap(Some(0), Some(3)).describe(),
            "production is 3 commits ahead of staging"
        );
        assert_eq!(
            gap(Some(0), Some(0)).describe(),
            "staging and production run the same commit"
        );
        assert_eq!(
            gap(Some(1), Some(1)).describe(),
            "staging has 1 commit not in production; production has 1 commit not in staging"
        );
        let merged = LaneGap {
            same_code: true,
            ..gap(Some(0), Some(1))
        };
        assert_eq!(
            merged.describe(),
            "staging and production run the same code"
        );
        assert_eq!(
            gap(None, None).describe(),
            "staging and production cannot be compared yet"
        );
    }
}
