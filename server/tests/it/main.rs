//! Gantry's integration tests: one binary, the real router, real databases
//! (SQLite and PostgreSQL), and the real `gantry` executable where a process
//! matters.

// Test code panics on purpose when something is not as expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api;
mod authorization;
mod bad_input;
mod builds;
mod canary;
mod canary_kubernetes;
mod change_requests;
mod chart;
mod cli;
mod clusters;
mod crash;
mod dashboard;
mod flow;
mod forge;
mod hostile;
mod image;
mod ledger;
mod notify;
mod ops;
mod promotion;
mod replicas;
mod sandbox;
mod schema;
mod seed;
mod sessions;
mod sharing;
mod sso;
mod surfaces;
