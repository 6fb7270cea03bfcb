//! Delivery: deploying ([`deploy`]: the deploy step, the local target,
//! clusters, drift) and the release ledger ([`ledger`]: releases, pins,
//! rollback, the stability soak), and the service both take instead of the
//! whole `App` — the database, the vault, git, the two kinds of target
//! (local processes and cluster clients), the clock, the loops' wake-ups and
//! the pipeline repo. `App::delivery` lends one. The three call each other
//! (a deploy records a release, a rollback deploys), so they share a folder.

pub mod deploy;
pub mod ledger;
pub mod metrics;

use std::time::Duration;

use crate::approvals::Approvals;
use crate::approvals::policy::Freshness;
use crate::clock::Clock;
use crate::clusters::{ClientCache, Registry};
use crate::db::Db;
use crate::git::GitStore;
use crate::notify::Notifier;
use crate::secrets::Vault;
use crate::signals::Signals;
use deploy::local::LocalRuntime;

pub struct Delivery<'a> {
    pub db: &'a Db,
    pub vault: &'a Vault,
    pub git: &'a GitStore,
    pub local: &'a LocalRuntime,
    pub cluster_clients: &'a ClientCache,
    pub clock: &'a Clock,
    pub flow: &'a Signals,
    /// Where pins are committed and runs' configurations are read back.
    pub pipeline: Pipeline<'a>,
    /// Links in notices point here.
    pub public_url: &'a url::Url,
    /// How recent a sign-in must be where a policy asks for `reauth`.
    pub reauth_max_age: Duration,
    /// The `helm` that renders charts.
    pub helm: &'a std::path::Path,
}

/// The pipeline repo, if one is configured, and its branch.
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    pub repo: Option<&'a str>,
    pub branch: &'a str,
}

/// The narrower services, built here only (`App` lends them through its
/// `Delivery`): each takes just what it uses of the same resources.
impl<'a> Delivery<'a> {
    pub fn cluster_registry(&self) -> Registry<'a> {
        Registry {
            db: self.db,
            vault: self.vault,
            clients: self.cluster_clients,
            flow: self.flow,
        }
    }

    pub fn notifier(&self) -> Notifier<'a> {
        Notifier {
            db: self.db,
            vault: self.vault,
            flow: self.flow,
            public_url: self.public_url,
        }
    }

    pub fn approvals(&self) -> Approvals<'a> {
        Approvals {
            db: self.db,
            git: self.git,
            clock: self.clock,
            flow: self.flow,
            reauth_max_age: self.reauth_max_age,
        }
    }

    pub fn secrets(&self) -> crate::secrets::Store<'a> {
        crate::secrets::Store::new(self.db, self.vault)
    }

    /// When a sign-in counts as fresh, now.
    pub fn freshness(&self) -> Freshness {
        Freshness {
            max_age: self.reauth_max_age,
            now: self.clock.now_millis(),
        }
    }
}
