//! `App`: the services wired together, for the whole life of the server —
//! what the jobs (`jobs`) and the HTTP surface (`http::AppState`, which
//! adds what only HTTP reads) both use.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::delivery::deploy::local::LocalRuntime;
use crate::git::GitStore;
use crate::runs::logs::RunEvents;
use crate::secrets::{SecretError, Vault};
use crate::signals::Signals;

/// Everything the server holds for its whole life.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub db: Db,
    pub git: GitStore,
    pub vault: Vault,
    pub flow: Signals,
    pub local: LocalRuntime,
    /// Where steps and local apps run.
    pub sandbox: Arc<crate::sandbox::Sandbox>,
    pub events: RunEvents,
    /// What the dashboard's open pages are told when something moves.
    pub changes: crate::changes::Changes,
    pub cluster_clients: crate::clusters::ClientCache,
    /// What time it is (tests move it instead of waiting).
    pub clock: crate::clock::Clock,
    /// This process: its id, its elected jobs, whether it is stopping.
    pub replica: crate::replica::Replica,
    /// Marks every child process of this data directory (see `jobs::recovery`).
    pub instance_tag: String,
    /// The one-time workspace URLs of this replica's build pods.
    pub build_archives: crate::builds::Archives,
    /// This installation's tag, the same on all its replicas (its build
    /// pods carry it).
    pub installation: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error("cannot read the installation's tag: {0}")]
    Installation(#[from] crate::db::QueryError),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl App {
    /// This replica runs the environments of the `local` target: no
    /// `runner.local_replica` is named, or it is this one.
    pub fn runs_local(&self) -> bool {
        self.config
            .local_replica
            .as_deref()
            .is_none_or(|owner| owner == self.config.replica)
    }

    /// Connects to the database, brings its schema up to date and opens the
    /// secret key. Background work starts with `jobs::start`.
    pub async fn start(config: Config) -> Result<App, StartError> {
        crate::storage::make_private(&config.data_dir).map_err(|source| StartError::Dir {
            path: config.data_dir.clone(),
            source,
        })?;
        for dir in ["git", "work", "deploys", "run"] {
            let path = config.data_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| StartError::Dir { path, source })?;
        }
        let db = Db::connect(&config.database).await?;
        db.migrate().await?;
        if let crate::config::DatabaseTarget::Sqlite(path) = &config.database {
            crate::storage::make_database_private(path);
        }
        let vault = Vault::open(&config.secret_key_file)?;
        let instance_tag = instance_tag(&config.data_dir);
        let installation = crate::db::installation::tag(db.pool(), &random_tag()).await?;
        if let Some(warning) = preview_domain_warning(&config) {
            tracing::warn!("{warning}");
        }
        let sandbox = Arc::new(
            crate::sandbox::Sandbox::start(sandbox_settings(&config, &instance_tag)).await,
        );
        // Unique among replicas that share a name (pid 1 in containers):
        // the data directory's tag tells them apart.
        let runner_id = format!(
            "{}-{}-{}",
            config.replica,
            std::process::id(),
            instance_tag.chars().take(6).collect::<String>()
        );
        Ok(App {
            git: GitStore::new(config.data_dir.join("git"), config.git_max_parallel)
                .with_export_limits(config.git_export_limits),
            local: LocalRuntime::new(
                config.data_dir.join("deploys"),
                instance_tag.clone(),
                sandbox.clone(),
            )
            .with_log_limit(config.runner_log_limit_bytes),
            vault,
            sandbox,
            flow: Signals::default(),
            events: RunEvents::default(),
            changes: crate::changes::Changes::new(db.clone()),
            cluster_clients: crate::clusters::ClientCache::default(),
            clock: crate::clock::Clock::default(),
            replica: crate::replica::Replica::new(
                runner_id,
                db.backend() == crate::db::Backend::Sqlite,
            ),
            instance_tag,
            build_archives: crate::builds::Archives::default(),
            installation,
            config,
            db,
        })
    }

    /// What running steps as pods on a build cluster needs.
    /// The apps' dependency caches on this replica.
    pub fn caches(&self) -> crate::builds::cache::Caches {
        crate::builds::cache::Caches::new(&self.config.data_dir, self.config.git_export_limits)
    }

    pub fn builds(&self) -> crate::builds::Builds<'_> {
        crate::builds::Builds {
            clusters: self.delivery().cluster_registry(),
            archives: &self.build_archives,
            helper_image: &self.config.builds_helper_image,
            callback: &self.config.builds_callback_url,
            instance: &self.installation,
            limits: self.config.git_export_limits,
            unreachable_after: self.config.builds_unreachable_after,
            fallback: self.default_executor(),
        }
    }

    /// The server's `builds.executor`, as the pipeline's executors are.
    pub fn default_executor(&self) -> crate::gitops::builds::Executor {
        use crate::gitops::builds::{Executor, KubernetesExecutor};
        match &self.config.builds_executor {
            None => Executor::Local,
            Some(place) => Executor::Kubernetes(KubernetesExecutor {
                cluster: place.cluster.clone(),
                namespace: place.namespace.clone(),
                image: None,
            }),
        }
    }

    /// When a sign-in counts as fresh, now (approval policies' `reauth`).
    pub fn freshness(&self) -> crate::approvals::policy::Freshness {
        self.delivery().freshness()
    }

    /// What deploys, rollbacks and the ledger use; the narrower services
    /// below are built from it, in one place.
    pub fn delivery(&self) -> crate::delivery::Delivery<'_> {
        crate::delivery::Delivery {
            db: &self.db,
            vault: &self.vault,
            git: &self.git,
            local: &self.local,
            cluster_clients: &self.cluster_clients,
            clock: &self.clock,
            flow: &self.flow,
            pipeline: crate::delivery::Pipeline {
                repo: self.config.pipeline_repo.as_deref(),
                branch: &self.config.pipeline_branch,
            },
            public_url: &self.config.public_url,
            reauth_max_age: self.config.reauth_max_age,
            helm: &self.config.helm_path,
        }
    }

    /// Decisions on runs held for approval.
    pub fn approvals(&self) -> crate::approvals::Approvals<'_> {
        self.delivery().approvals()
    }

    /// Notifications: queueing notices, channels, deliveries.
    pub fn notifier(&self) -> crate::notify::Notifier<'_> {
        self.delivery().notifier()
    }

    /// The registered clusters and their clients.
    pub fn cluster_registry(&self) -> crate::clusters::Registry<'_> {
        self.delivery().cluster_registry()
    }

    /// The apps' secrets, opened with this server's vault.
    pub fn secrets(&self) -> crate::secrets::Store<'_> {
        self.delivery().secrets()
    }

    /// Each app's lane and what needs attention.
    pub fn lanes(&self) -> crate::lanes::Lanes<'_> {
        crate::lanes::Lanes {
            db: &self.db,
            git: &self.git,
            clock: &self.clock,
        }
    }

    /// Change requests: opening, reviews, merges.
    pub fn change_request_service(&self) -> crate::change_requests::ChangeRequests<'_> {
        crate::change_requests::ChangeRequests {
            db: &self.db,
            vault: &self.vault,
            clock: &self.clock,
            reauth_max_age: self.config.reauth_max_age,
            git: &self.git,
            replica: &self.replica.id,
            merge_lease: self.config.runner_lease,
            flow: &self.flow,
            notifier: self.notifier(),
            sharing: self.sharing(),
        }
    }

    /// Share links and tester feedback.
    pub fn sharing(&self) -> crate::sharing::Sharing<'_> {
        crate::sharing::Sharing {
            db: &self.db,
            vault: &self.vault,
            clock: &self.clock,
            git: &self.git,
            notifier: self.notifier(),
            ttl: self.config.share_ttl,
            anonymous: self.config.share_anonymous,
            comments: Arc::new(crate::forge::feedback::CommentEditor {
                delivery: self.delivery(),
                serial: &self.replica.forge_comments,
            }),
        }
    }

    /// Where run workspaces live.
    pub fn work_dir(&self) -> std::path::PathBuf {
        self.config.data_dir.join("work")
    }

    /// Stops the loops and the local environments' processes.
    pub async fn stop(&self) {
        self.replica.shutdown.cancel();
        self.local.stop_all().await;
    }
}

/// How the sandbox is set up from the configuration: Gantry's own files are
/// what no sandbox may see.
fn sandbox_settings(config: &Config, tag: &str) -> crate::sandbox::Settings {
    let mut private = vec![config.data_dir.clone(), config.secret_key_file.clone()];
    if let Some(file) = &config.file {
        private.push(std::path::absolute(file).unwrap_or_else(|_| file.clone()));
    }
    if let crate::config::DatabaseTarget::Sqlite(path) = &config.database {
        private.push(path.clone());
    }
    crate::sandbox::Settings {
        enabled: config.sandbox,
        user: config.runner_user,
        uids: config.runner_uids,
        build_uids: config.runner_build_uids,
        helper: config.sandbox_helper.clone(),
        read_only: config.runner_read_only_paths.clone(),
        blocked_networks: config.runner_blocked_networks.clone(),
        private,
        preview_socket: crate::sandbox::preview_socket_path(&config.data_dir),
        run_dir: config.data_dir.join("run"),
        tag: tag.to_string(),
        relay_port: relay_port(&config.public_url),
    }
}

/// Previews whose domain is the dashboard's (or under it) are same-site
/// with it: their scripts could set cookies for the dashboard. Fine for
/// `localhost`; said plainly anywhere else (user guide, docs/src/security.md).
pub fn preview_domain_warning(config: &Config) -> Option<String> {
    let dashboard = config.public_url.host_str()?.to_ascii_lowercase();
    let preview = config.preview_domain.as_str();
    let local = |host: &str| host == "localhost" || host.ends_with(".localhost");
    let shared = preview == dashboard
        || dashboard.ends_with(&format!(".{preview}"))
        || preview.ends_with(&format!(".{dashboard}"));
    (shared && !local(&dashboard)).then(|| {
        format!(
            "previews are served under {preview}, the dashboard's own domain ({dashboard}): a preview's script could set cookies for the dashboard; set server.preview_domain to a domain of its own"
        )
    })
}

/// The port environment URLs use when they point at this host's loopback
/// (the demo's `http://<env>--<app>.localhost:3000/`): sandboxes reach
/// them through a relay to the preview socket, not through the host.
fn relay_port(public: &url::Url) -> Option<u16> {
    let loopback = match public.host() {
        Some(url::Host::Domain(name)) => name == "localhost" || name.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    public
        .port_or_known_default()
        .filter(|port| loopback && *port != 0)
}

/// A new installation's tag: 16 random hex digits (from the clock and
/// the process, should the system's randomness fail).
fn random_tag() -> String {
    let mut bytes = [0_u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!("{nanos}-{}", std::process::id());
        bytes.copy_from_slice(&Sha256::digest(seed.as_bytes())[..8]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tag this Gantry puts on every process it starts (steps, local apps),
/// so that a restart on the same data directory finds what a crash left.
pub fn instance_tag(data_dir: &std::path::Path) -> String {
    Sha256::digest(data_dir.display().to_string().as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
