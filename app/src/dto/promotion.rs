//! Build once, promote: an artifact's standing — where it was verified and
//! for how long, whether it was rejected, and what an environment requires
//! of it before it deploys there.

use serde::{Deserialize, Serialize};

use super::{GateState, UnixMillis};

/// An artifact as the approval screen, the run page and the ledger show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ArtifactStatus {
    pub id: i64,
    /// The git tree id of the app's files.
    pub source_tree: String,
    pub pipeline_sha: String,
    /// Where it went live and stayed healthy, longest first.
    pub verified: Vec<Verification>,
    pub rejected: Option<ArtifactRejection>,
    /// What the environment of the run (or release) asks of it, and where
    /// it stands; none where the environment asks nothing.
    #[serde(default)]
    pub gate: Option<PromotionGate>,
    /// The upstream run whose build this run deployed (its build steps
    /// skipped): set once a promoted run started.
    #[serde(default)]
    pub promoted_from_run: Option<i64>,
}

/// One stretch an artifact was live and healthy in an environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Verification {
    pub environment: String,
    pub release_id: i64,
    pub run_id: i64,
    pub healthy_since: UnixMillis,
    pub healthy_for_millis: i64,
    /// It still serves there (the stretch goes on).
    pub serving: bool,
}

/// An admin's rejection (or a rollback that called the release faulty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ArtifactRejection {
    pub by: String,
    pub reason: String,
    pub at: UnixMillis,
}

/// An environment's requirement and the artifact's standing against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PromotionGate {
    /// Where it must have been verified (none: only a rejection holds).
    pub verified_in: Option<String>,
    pub soak_millis: i64,
    pub state: GateState,
    /// What holds the run, or what let it through, in a sentence.
    pub reason: String,
    /// When the soak ends if the artifact stays healthy upstream.
    pub opens_at: Option<UnixMillis>,
}

/// `POST /api/v1/artifacts/{id}/reject`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RejectArtifact {
    /// Mandatory: kept with the artifact and in the audit log.
    pub reason: String,
}

/// An app's stack as promotion sees it: each stage, what feeds it, what it
/// asks, what it serves and what waits to go there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PromotionGraph {
    /// In stack order: previews first, then staging, production, ….
    pub stages: Vec<PromotionStage>,
}

/// One stack entry in the promotion graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PromotionStage {
    pub environment: String,
    /// `latest`, or the glob of a preview entry (`*`).
    pub branches: String,
    /// A glob entry: an environment per branch.
    pub preview: bool,
    pub promote_from: Option<String>,
    /// `requires.verified_in` and its soak.
    pub requires: Option<String>,
    pub soak_millis: i64,
    /// How many live environments it has (previews: one per branch).
    pub live: i64,
    /// What it serves now (fixed environments): the artifact and its
    /// standing.
    pub serving: Option<ArtifactStatus>,
    /// Runs held on their way there, with their artifacts.
    pub held: Vec<HeldArtifact>,
    /// How a deploy goes out there, after "rolls out": `whole (rolling)`,
    /// `as a canary: 25 % → 50 %`, `blue/green, keeping the old version 10m`.
    #[serde(default)]
    pub strategy: String,
    /// Its clusters ring by ring, when it rolls out in rings.
    #[serde(default)]
    pub rings: Vec<Vec<String>>,
}

/// A run held on its way into a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct HeldArtifact {
    pub run_id: i64,
    pub commit_sha: String,
    pub promotion: Option<ArtifactStatus>,
}
