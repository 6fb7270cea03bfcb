//! Building blocks every page uses.

pub mod action;
pub mod artifact;
pub mod charts;
pub mod commits;
pub mod diff;
pub mod feedback;
pub mod file_diff;
pub mod layout;
pub mod list;
pub mod outcome;
pub mod share_links;
pub mod theme;
