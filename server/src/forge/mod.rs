//! Forges (GitHub, GitLab, Gitea): their webhooks come in through
//! `POST /api/v1/hooks/{forge}`, are verified, stored once in the event
//! inbox (deduplicated by delivery id) and answered at once; the planner
//! processes them (`jobs::forge_inbound`). A push or branch deletion makes Gantry fetch the
//! app's repo (the git watcher then plans as for any change); a merge/pull
//! request becomes a Gantry change request — one model with the native
//! ones — whose preview is the source branch's environment.
//!
//! A request from a fork is untrusted: its head branch name means nothing
//! (a fork's `latest` is not this repository's `latest`), so its head is
//! fetched from the forge's request ref as `pr-<number>`, its own preview;
//! its runs wait until an admin allows each new head and get no secrets.

pub mod api;
pub mod events;
pub mod feedback;
pub mod webhook;

/// Which forge an app's repository is on (the configuration language names
/// the kinds; this module speaks to them).
pub use crate::gitops::schema::Forge;

/// The inbox kind of forge deliveries: `forge:<event>`.
pub const KIND_PREFIX: &str = "forge:";

/// The name a fork's request is built and previewed under.
pub fn fork_branch(number: i64) -> String {
    format!("pr-{number}")
}
