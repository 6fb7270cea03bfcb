//! GitOps configuration: the pipeline repo's `apps/<app>/` folders, their
//! schema, validation and reconciliation into Gantry's apps.

pub mod duration;
pub mod freeze;
pub mod load;
pub mod reconcile;
pub mod resources;
pub mod schema;
pub mod template;
