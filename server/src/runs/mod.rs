//! A run's records, for whoever reads or acts on them: its log (live and
//! stored, masked), its test reports, its workspace on disk, cancelling it
//! and watching it. The runner (`jobs::runner`) writes them; the API and
//! the dashboard read them.

pub mod cancel;
pub mod junit;
pub mod logs;
pub mod outputs;
pub mod rollout;
pub mod watch;
pub mod workspace;
