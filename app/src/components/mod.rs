//! Building blocks every page uses.

pub mod layout;
pub mod list;
pub mod theme;
