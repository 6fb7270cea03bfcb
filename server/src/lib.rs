//! Gantry's server: configuration, storage, the HTTP surface (dashboard,
//! REST API, operations endpoints) and, in later modules, the pipeline,
//! deployment and ledger domains. `main.rs` is only the command line.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod build_helper;
pub mod builds;
pub mod change_requests;
pub mod changes;
pub mod charts;
pub mod cli;
pub mod client;
pub mod clock;
pub mod clusters;
pub mod config;
pub mod configs;
pub mod coverage;
pub mod dashboard;
pub mod db;
pub mod delivery;
pub mod demo;
pub mod error;
pub mod forge;
pub mod git;
pub mod gitops;
pub mod http;
pub mod jobs;
pub mod lanes;
#[cfg(test)]
mod layers;
pub mod manifests;
pub mod migrate;
pub mod notify;
pub mod outbound;
pub mod promotion;
pub mod replica;
pub mod runs;
pub mod sandbox;
pub mod secrets;
pub mod secrets_admin;
pub mod serve;
pub mod sharing;
pub mod signals;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod visibility;

pub use http::AppState;
pub use state::App;
