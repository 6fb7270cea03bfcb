//! Builds on Kubernetes: a command step whose executor is a cluster runs
//! as a pod there (`pod`), its workspace carried in and out over one-time
//! URLs (`archive`), its log followed through `pods/log` and resumed after
//! a dropped stream without loss or repeat (`follow`), its ending read from
//! the pod's status as plainly as a local step's (`verdict`), and the pod
//! deleted before the step is over (`step`) — unless the replica lost the
//! run, whose next attempt then follows the same pod on (`reattach`).
//! Deploys never run here: they stay in Gantry, which alone holds the
//! target clusters' credentials.
//! Dependency caches (`cache`) are kept here too: they travel with the
//! checkout, on a pod or on the local executor alike.

pub mod archive;
pub mod cache;
pub mod cleanup;
pub mod follow;
pub mod image;
pub mod pod;
pub mod reattach;
pub mod step;
pub mod verdict;

pub use archive::Archives;
pub use step::{BuildStep, Builds, PodEnding};

/// What stops Gantry from running a step as a pod (the step fails with it).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Cluster(#[from] crate::clusters::ClusterError),
    #[error("cannot create the build pod in namespace {namespace} of cluster {cluster}: {message}")]
    Create {
        cluster: String,
        namespace: String,
        message: String,
    },
    #[error("the build cluster {cluster} did not answer for {seconds} s: {message}")]
    Unreachable {
        cluster: String,
        seconds: u64,
        message: String,
    },
    #[error("cannot list the build pods in namespace {namespace} of cluster {cluster}: {message}")]
    List {
        cluster: String,
        namespace: String,
        message: String,
    },
    #[error("the workspace that came back from the pod was refused: {0}")]
    Workspace(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}
