//! Gantry's integration tests: one binary, the real router, real databases
//! (SQLite and PostgreSQL), and the real `gantry` executable where a process
//! matters.

mod support;

mod api;
mod cli;
mod dashboard;
mod ops;
mod schema;
mod seed;
