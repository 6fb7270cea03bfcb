//! One module per area of the dashboard.

pub mod app_page;
pub mod approvals;
pub mod audit;
pub mod change_request;
pub mod change_requests;
pub mod channels;
pub mod clusters;
pub mod delivery;
pub mod environments;
pub mod not_found;
pub mod releases;
pub mod resources;
pub mod run;
pub mod runs;
pub mod secrets;
pub mod settings;
pub mod share;
pub mod tokens;
