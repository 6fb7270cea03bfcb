//! The configuration language: the pipeline repo's `apps/<app>/` folders,
//! their schema, validation, templates, freeze windows and the stack of
//! environments they describe. Pure: no I/O, no database (the layer check in
//! `layers.rs` keeps it so); `jobs::reconcile` applies it to Gantry's apps.

pub mod builds;
pub mod freeze;
pub mod guardrails;
pub mod health_rules;
pub mod image;
pub mod load;
pub mod resources;
pub mod rings;
pub mod schema;
pub mod stack;
pub mod strategy;
pub mod template;
