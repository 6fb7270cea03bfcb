//! What belongs to this one Gantry process rather than to the installation
//! it shares a database with: its name in the runs and leases it holds,
//! which elected jobs it runs now, whether it is stopping, and the order of
//! what it sends to forges. The jobs hold it (through `App::replica`); the
//! domain services never see it — they are the same on every replica.

use tokio_util::sync::CancellationToken;

use crate::forge::feedback::StatusOrder;
use crate::signals::Singletons;

#[derive(Debug)]
pub struct Replica {
    /// This process, in the runs, merges and leases it holds: unique among
    /// replicas that share a name (see `App::start`).
    pub id: String,
    /// Which of the elected jobs this replica runs now.
    pub singletons: Singletons,
    /// Tells the jobs to stop.
    pub shutdown: CancellationToken,
    /// This replica is stopping: its runner claims no more runs.
    pub draining: CancellationToken,
    /// Its running runs were handed over to the other replicas
    /// (`jobs::recovery::hand_over`): their executors stop, writing nothing.
    pub handed_over: CancellationToken,
    /// Serializes forge comment edits, so a request never gets two
    /// comments and the last edit carries the newest state.
    pub forge_comments: tokio::sync::Mutex<()>,
    /// Sends each run's commit statuses in the order they were decided.
    pub forge_statuses: StatusOrder,
}

impl Replica {
    /// A replica that holds no elected job yet. SQLite allows one replica,
    /// which then runs every job without an election.
    pub fn new(id: String, alone: bool) -> Replica {
        Replica {
            id,
            singletons: Singletons::new(alone),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            handed_over: CancellationToken::new(),
            forge_comments: tokio::sync::Mutex::new(()),
            forge_statuses: StatusOrder::default(),
        }
    }
}
