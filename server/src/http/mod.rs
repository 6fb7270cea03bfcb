//! The HTTP surface, grouped by caller: the dashboard (Leptos SSR and its
//! server functions), the REST API under `/api/v1`, and operations endpoints
//! for probes and Prometheus. `router::build_app` composes them; `main` and
//! the tests use the same function.

pub mod api;
pub mod assets;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod middleware;
pub mod ops;
pub mod preview;
pub mod proxy;
pub mod router;
pub mod security;

pub use router::build_app;
