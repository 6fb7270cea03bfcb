//! The `local` target: each live environment is a supervised, sandboxed
//! process started from its own copy of the built checkout (at `/app`
//! inside its sandbox), listening on `$HOST:$PORT` in its own network
//! namespace, its port published on the host's loopback. A deploy starts
//! the new process, waits until it is healthy, switches the proxy to it and
//! only then stops the old one; a failed health check leaves the old version
//! serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use app::dto::EnvironmentState;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::{self, Db, local_processes::LocalProcessRow, now_millis};
use crate::gitops::schema::{Resources, StepNetwork};
use crate::sandbox::process::group_alive;
use crate::sandbox::users::UserLease;
use crate::sandbox::{self, Limits, Mount, Network, Sandbox, Sandboxed, Spec};
use crate::secrets::mask::Masker;

/// How long a replaced process keeps serving in-flight requests.
const DRAIN: Duration = Duration::from_secs(2);

/// How many replaced builds each environment keeps, for rollbacks.
pub const KEPT_BUILDS: usize = 10;

/// How a local app is run: what the deployment records as its manifest.
/// Secret *names* only; values are resolved at each start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalManifest {
    pub run: String,
    pub health: String,
    pub health_timeout_seconds: u64,
    pub env: Vec<(String, String)>,
    pub secrets: Vec<String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub network: StepNetwork,
}

/// One process to start.
#[derive(Clone, Debug)]
pub struct LocalSpec {
    pub app: String,
    pub env: String,
    pub environment_id: i64,
    pub deployment_id: i64,
    pub manifest: LocalManifest,
    /// Resolved secret values, added to the environment.
    pub secret_values: Vec<(String, String)>,
    /// Set by the runtime: marks the process as this Gantry's.
    pub instance_tag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: sandbox::SandboxError,
    },
    #[error("the app exited before it became healthy ({status}); last output:\n{output}")]
    ExitedEarly { status: String, output: String },
    #[error("the app did not answer {health} with 2xx within {seconds}s; last output:\n{output}")]
    Unhealthy {
        health: String,
        seconds: u64,
        output: String,
    },
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

/// What a successful deploy left running.
#[derive(Clone, Debug)]
pub struct Started {
    pub port: u16,
    pub workdir: PathBuf,
}

struct LiveProcess {
    deployment_id: i64,
    workdir: PathBuf,
    stop: CancellationToken,
    supervisor: JoinHandle<()>,
}

/// The proxy's routing table: `(app, env)` → where it is served.
type Routes = RwLock<HashMap<(String, String), Route>>;

/// Where an environment's requests go: its stable process, and during a
/// canary a share of them (percent) to the canary's — split by the
/// route's own count of requests, so each environment's share is exact.
#[derive(Clone, Debug)]
struct Route {
    stable: u16,
    canary: Option<(u16, u8)>,
    requests: Arc<std::sync::atomic::AtomicU64>,
}

impl Route {
    fn stable(port: u16) -> Route {
        Route {
            stable: port,
            canary: None,
            requests: Arc::default(),
        }
    }
}

/// Which version of an environment answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Stable,
    Canary,
}

/// What the proxy measured of one version's requests since it was last
/// read: the errors (5xx, or no answer) and each request's latency.
#[derive(Debug, Default)]
struct Window {
    requests: u64,
    errors: u64,
    latencies_ms: Vec<u64>,
}

/// At most this many latencies are kept per version between two reads.
const WINDOW_CAP: usize = 200_000;

/// A canary process beside the stable one: no supervisor restarts it (an
/// exit aborts the canary), and it is not in `local_processes` (a restart
/// of Gantry ends it; the run's deploy starts again).
struct CanaryProcess {
    deployment_id: i64,
    port: u16,
    workdir: PathBuf,
    stop: CancellationToken,
    watcher: JoinHandle<()>,
    exited: Arc<Mutex<Option<String>>>,
}

/// All local processes of this Gantry, and the proxy's routing table.
#[derive(Debug)]
pub struct LocalRuntime {
    root: PathBuf,
    instance_tag: String,
    sandbox: Arc<Sandbox>,
    routes: Arc<Routes>,
    live: Mutex<HashMap<i64, LiveProcess>>,
    /// Canaries running beside live processes, by environment.
    canaries: Mutex<HashMap<i64, CanaryProcess>>,
    /// The requests measured during canaries, by environment and version.
    traffic: Mutex<HashMap<(String, String, Version), Window>>,
    /// How much of an app's output its log keeps (`runner.log_limit_bytes`,
    /// a file; one rotated file more).
    log_limit: u64,
}

impl std::fmt::Debug for CanaryProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryProcess")
            .field("deployment_id", &self.deployment_id)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LiveProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveProcess")
            .field("deployment_id", &self.deployment_id)
            .finish_non_exhaustive()
    }
}

impl LocalRuntime {
    pub fn new(root: PathBuf, instance_tag: String, sandbox: Arc<Sandbox>) -> LocalRuntime {
        LocalRuntime {
            root,
            instance_tag,
            sandbox,
            routes: Arc::default(),
            live: Mutex::default(),
            canaries: Mutex::default(),
            traffic: Mutex::default(),
            log_limit: 10 * 1024 * 1024,
        }
    }

    /// Caps each app's log file at `bytes`.
    pub fn with_log_limit(mut self, bytes: u64) -> LocalRuntime {
        self.log_limit = bytes;
        self
    }

    /// The loopback port serving `<env>` of `<app>`, if any.
    pub fn route(&self, app: &str, env: &str) -> Option<u16> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .get(&(app.to_string(), env.to_string()))
            .map(|route| route.stable)
    }

    /// Where one request to `<env>` of `<app>` goes: the stable process,
    /// or the canary's for its share — exactly `weight` of every hundred
    /// requests. The version is `None` when no canary runs (nothing is
    /// measured then).
    pub fn pick(&self, app: &str, env: &str) -> Option<(u16, Option<Version>)> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let route = routes.get(&(app.to_string(), env.to_string()))?;
        let Some((canary, weight)) = route.canary else {
            return Some((route.stable, None));
        };
        let n = route
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 100 < u64::from(weight) {
            Some((canary, Some(Version::Canary)))
        } else {
            Some((route.stable, Some(Version::Stable)))
        }
    }

    /// The canary's loopback port of `<env>` of `<app>`, while one runs.
    pub fn canary_port(&self, app: &str, env: &str) -> Option<u16> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .get(&(app.to_string(), env.to_string()))
            .and_then(|route| route.canary)
            .map(|(port, _)| port)
    }

    /// Counts one answered (or unanswered) request of a version.
    pub fn record(&self, app: &str, env: &str, version: Version, error: bool, latency_ms: u64) {
        let mut traffic = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
        let window = traffic
            .entry((app.to_string(), env.to_string(), version))
            .or_default();
        // Every error counts; latencies are kept up to a cap (enough for
        // any percentile), beyond which the request count goes on.
        window.errors += u64::from(error);
        window.requests += 1;
        if window.latencies_ms.len() < WINDOW_CAP {
            window.latencies_ms.push(latency_ms);
        }
    }

    /// What was measured of a version since the last read, and a fresh
    /// window from now.
    pub fn take_sample(
        &self,
        app: &str,
        env: &str,
        version: Version,
    ) -> super::canary::analysis::Sample {
        let window = {
            let mut traffic = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            traffic
                .remove(&(app.to_string(), env.to_string(), version))
                .unwrap_or_default()
        };
        let mut latencies = window.latencies_ms;
        let mut sample = super::canary::analysis::Sample::of(window.errors, &mut latencies);
        sample.requests = window.requests;
        sample
    }

    /// Starts `source` as a canary beside the environment's live process:
    /// healthy first, then routed with weight 0 (no request yet).
    pub async fn start_canary(
        &self,
        spec: LocalSpec,
        source: &Path,
    ) -> Result<Started, LocalError> {
        let build = self
            .root
            .join(&spec.app)
            .join(&spec.env)
            .join(spec.deployment_id.to_string());
        let workdir = build.with_extension("canary");
        copy_build(source, &build, &workdir).await?;
        let spec = LocalSpec {
            instance_tag: self.instance_tag.clone(),
            ..spec
        };
        // Its own log: the stable version's (`<id>.log` once promoted) is
        // never touched by the canary's.
        let log_path = canary_log(&workdir);
        let (mut child, port, user) = match Box::pin(self.launch(&spec, &workdir, &log_path)).await
        {
            Ok(launched) => launched,
            Err(error) => {
                let _ = tokio::fs::remove_dir_all(&workdir).await;
                remove_log(&log_path);
                return Err(error);
            }
        };
        let stop = CancellationToken::new();
        let exited = Arc::new(Mutex::new(None));
        let watcher = {
            let (stop, exited, routes) = (stop.clone(), exited.clone(), self.routes.clone());
            let key = (spec.app.clone(), spec.env.clone());
            tokio::spawn(async move {
                let _user = user;
                tokio::select! {
                    () = stop.cancelled() => {
                        child.terminate(Duration::from_secs(10)).await;
                    }
                    exit = child.wait() => {
                        let status = exit.map_or_else(|e| e.to_string(), |e| format!("{:?}", e.ending));
                        *exited.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
                        // No request goes to a canary that is gone.
                        let mut routes = routes.write().unwrap_or_else(|p| p.into_inner());
                        if let Some(route) = routes.get_mut(&key) {
                            route.canary = None;
                        }
                    }
                }
                child.finish().await;
            })
        };
        {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            if let Some(route) = routes.get_mut(&(spec.app.clone(), spec.env.clone())) {
                route.canary = Some((port, 0));
            }
        }
        let previous = self
            .canaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                spec.environment_id,
                CanaryProcess {
                    deployment_id: spec.deployment_id,
                    port,
                    workdir: workdir.clone(),
                    stop,
                    watcher,
                    exited,
                },
            );
        if let Some(previous) = previous {
            end_canary_process(previous).await;
        }
        Ok(Started { port, workdir })
    }

    /// The canary's share of the environment's requests, in percent.
    pub fn set_canary_weight(&self, app: &str, env: &str, weight: u8) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(route) = routes.get_mut(&(app.to_string(), env.to_string()))
            && let Some((port, _)) = route.canary
        {
            route.canary = Some((port, weight.min(100)));
        }
    }

    /// The sandbox local processes run in (an analysis step runs there too).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Where scratch folders of this runtime go.
    pub fn scratch_root(&self) -> &Path {
        &self.root
    }

    /// Why the environment's canary is gone, if it exited by itself.
    pub fn canary_exited(&self, environment_id: i64) -> Option<String> {
        let canaries = self.canaries.lock().unwrap_or_else(|p| p.into_inner());
        canaries
            .get(&environment_id)
            .and_then(|c| c.exited.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Ends the environment's canary: no request goes to it from now on,
    /// then its process stops and its copy goes (its kept build stays, for
    /// a promotion or a look).
    pub async fn end_canary(&self, environment_id: i64, app: &str, env: &str) {
        {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            if let Some(route) = routes.get_mut(&(app.to_string(), env.to_string())) {
                route.canary = None;
            }
        }
        let canary = self
            .canaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&environment_id);
        if let Some(canary) = canary {
            // Requests already sent to it get a moment to finish, as a
            // replaced stable process's do: the switch drops no traffic.
            tokio::time::sleep(DRAIN).await;
            end_canary_process(canary).await;
        }
        let mut traffic = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
        traffic.retain(|(a, e, _), _| a != app || e != env);
    }

    /// Copies `source` into a fresh directory and starts the app from it.
    /// On success the proxy serves the new process and the previous one of
    /// the environment is stopped; on failure nothing changes.
    pub async fn deploy(
        &self,
        db: &Db,
        spec: LocalSpec,
        source: &Path,
    ) -> Result<Started, LocalError> {
        let build = self
            .root
            .join(&spec.app)
            .join(&spec.env)
            .join(spec.deployment_id.to_string());
        let workdir = run_dir(&build);
        // The kept build is never shown to the app: a rollback starts from
        // it as it was built, not from whatever the app wrote (or linked)
        // in its directory. The app runs from a copy.
        copy_build(source, &build, &workdir).await?;
        // A kept build had its old process's log; start a fresh one.
        remove_log(&log_file(&workdir));
        match self.start(db, spec, workdir.clone()).await {
            Ok(started) => Ok(started),
            Err(error) => {
                let _ = tokio::fs::remove_dir_all(&workdir).await;
                Err(error)
            }
        }
    }

    /// The kept build of deployment `deployment_id` of `<app>/<env>`, while
    /// it is kept: what a promoted run deploys elsewhere, as it was built.
    pub fn kept_build(&self, app: &str, env: &str, deployment_id: i64) -> Option<PathBuf> {
        let build = self
            .root
            .join(app)
            .join(env)
            .join(deployment_id.to_string());
        build.is_dir().then_some(build)
    }

    /// Starts `spec` from the kept build of an earlier deployment of the
    /// same environment (a rollback: no rebuild).
    pub async fn redeploy(
        &self,
        db: &Db,
        spec: LocalSpec,
        from_deployment: i64,
    ) -> Result<Started, LocalError> {
        let source = self
            .root
            .join(&spec.app)
            .join(&spec.env)
            .join(from_deployment.to_string());
        if !source.is_dir() {
            return Err(LocalError::Io {
                path: source,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "the build of deployment {from_deployment} is no longer kept (the local target keeps the last {KEPT_BUILDS} per environment); roll back to a newer release"
                    ),
                ),
            });
        }
        self.deploy(db, spec, &source).await
    }

    /// Starts `spec`'s process in `workdir` on a free port, as a uid of its
    /// own for as long as it runs (its copy is its), its output in
    /// `log_path`, and waits until it is healthy; on failure it is stopped.
    async fn launch(
        &self,
        spec: &LocalSpec,
        workdir: &Path,
        log_path: &Path,
    ) -> Result<(AppChild, u16, Option<UserLease>), LocalError> {
        let io = |source| LocalError::Io {
            path: workdir.to_path_buf(),
            source,
        };
        let port = free_port().map_err(io)?;
        let user = self.sandbox.lease_user();
        self.sandbox
            .hand_over(workdir, user.as_ref().map(UserLease::ids))
            .await
            .map_err(io)?;
        let log = AppLog {
            path: log_path.to_path_buf(),
            limit: self.log_limit,
            user: user.as_ref().map(UserLease::ids),
        };
        let mut child = start_process(&self.sandbox, spec, workdir, port, &log).await?;
        let health_url = format!("http://127.0.0.1:{port}{}", spec.manifest.health);
        let timeout = Duration::from_secs(spec.manifest.health_timeout_seconds);
        if let Err(error) = wait_healthy(
            &mut child,
            &health_url,
            timeout,
            &spec.manifest.health,
            log_path,
            &masker_of(spec),
        )
        .await
        {
            child.terminate(Duration::from_secs(5)).await;
            child.finish().await;
            return Err(error);
        }
        Ok((child, port, user))
    }

    /// Starts (or restarts after a Gantry restart) the process of `spec`
    /// in `workdir`, waits for health, then swaps it in.
    pub async fn start(
        &self,
        db: &Db,
        spec: LocalSpec,
        workdir: PathBuf,
    ) -> Result<Started, LocalError> {
        let spec = LocalSpec {
            instance_tag: self.instance_tag.clone(),
            ..spec
        };
        let (child, port, user) =
            Box::pin(self.launch(&spec, &workdir, &log_file(&workdir))).await?;

        // Healthy: record, route, then stop the previous process.
        let pid = child.pid().map(i64::from);
        db::local_processes::upsert(
            db.pool(),
            &LocalProcessRow {
                environment_id: spec.environment_id,
                deployment_id: spec.deployment_id,
                pid,
                port: i64::from(port),
                workdir: workdir.display().to_string(),
            },
            now_millis(),
        )
        .await?;
        {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            // A canary running beside keeps its share until it is ended.
            let key = (spec.app.clone(), spec.env.clone());
            match routes.get_mut(&key) {
                Some(route) => route.stable = port,
                None => {
                    routes.insert(key, Route::stable(port));
                }
            }
        }
        let stop = CancellationToken::new();
        let supervisor = tokio::spawn(supervise(
            db.clone(),
            self.sandbox.clone(),
            self.routes.clone(),
            spec.clone(),
            child,
            (workdir.clone(), self.log_limit, user),
            stop.clone(),
        ));
        let previous = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.insert(
                spec.environment_id,
                LiveProcess {
                    deployment_id: spec.deployment_id,
                    workdir: workdir.clone(),
                    stop,
                    supervisor,
                },
            )
        };
        if let Some(previous) = previous {
            // Requests already sent to the old process get a moment to
            // finish before it stops: the switch drops no traffic. Its
            // build stays (a rollback starts it again); old ones go.
            let env_dir = self.root.join(&spec.app).join(&spec.env);
            let live = spec.deployment_id;
            tokio::spawn(async move {
                tokio::time::sleep(DRAIN).await;
                // Its kept build stays (a rollback copies it again); the
                // copy it ran from goes.
                let ran_from = previous.workdir.clone();
                stop_process_keep_files(previous).await;
                if ran_from.extension().is_some_and(|e| e == "run") {
                    let _ = tokio::fs::remove_dir_all(&ran_from).await;
                }
                prune_builds(&env_dir, live);
            });
        }
        Ok(Started { port, workdir })
    }

    /// Stops the environment's process, removes its files and route, and
    /// checks that the process group and the port are really gone.
    pub async fn destroy(
        &self,
        db: &Db,
        environment_id: i64,
        app: &str,
        env: &str,
    ) -> Result<String, LocalError> {
        {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            routes.remove(&(app.to_string(), env.to_string()));
        }
        let row = db::local_processes::list(db.pool())
            .await?
            .into_iter()
            .find(|row| row.environment_id == environment_id);
        let live = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.remove(&environment_id)
        };
        if let Some(live) = live {
            stop_process(live).await;
        }
        let mut problems = Vec::new();
        if let Some(row) = &row {
            if let Some(pid) = row.pid.and_then(|p| u32::try_from(p).ok())
                && group_alive(pid)
            {
                problems.push(format!("process group {pid} is still alive"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", u16::try_from(row.port).unwrap_or(0)))
                .is_ok()
            {
                problems.push(format!("port {} still answers", row.port));
            }
        }
        db::local_processes::delete(db.pool(), environment_id).await?;
        let dir = self.root.join(app).join(env);
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("{}: {error}", dir.display()));
        }
        if problems.is_empty() {
            Ok("process stopped, port closed, files removed".to_string())
        } else {
            Ok(format!("teardown incomplete: {}", problems.join("; ")))
        }
    }

    /// Stops every process (graceful shutdown); a restart brings them back.
    pub async fn stop_all(&self) {
        let all: Vec<LiveProcess> = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.drain().map(|(_, process)| process).collect()
        };
        for process in all {
            stop_process_keep_files(process).await;
        }
    }
}

/// Keeps `source` as the build at `build` (unless it is that build) and
/// makes `workdir` a fresh copy of it: the kept build is never shown to
/// the app, which runs from the copy.
async fn copy_build(source: &Path, build: &Path, workdir: &Path) -> Result<(), LocalError> {
    let (from, kept, run) = (
        source.to_path_buf(),
        build.to_path_buf(),
        workdir.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        if from != kept {
            let _ = std::fs::remove_dir_all(&kept);
            copy_tree(&from, &kept)?;
        }
        let _ = std::fs::remove_dir_all(&run);
        copy_tree(&kept, &run)
    })
    .await
    .map_err(|e| LocalError::Io {
        path: workdir.to_path_buf(),
        source: std::io::Error::other(e),
    })?
}

/// The copy of a build its process runs from (and may write to).
fn run_dir(build: &Path) -> PathBuf {
    build.with_extension("run")
}

/// Where a build's process writes its output: beside the build, not in
/// it. The app owns its build directory; a log inside it could be swapped
/// for a link to any file of the host, which Gantry (root) would then
/// append to and quote in details people read.
fn log_file(workdir: &Path) -> PathBuf {
    workdir.with_extension("log")
}

/// Removes an app's log and its rotated generation.
fn remove_log(log: &Path) {
    for file in [log.to_path_buf(), super::app_log::previous(log)] {
        let _ = std::fs::remove_file(file);
    }
}

/// Removes all but the newest [`KEPT_BUILDS`] replaced builds of an
/// environment (directories named by deployment id; `live` is kept).
fn prune_builds(env_dir: &Path, live: i64) {
    let Ok(entries) = std::fs::read_dir(env_dir) else {
        return;
    };
    let mut builds: Vec<i64> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i64>().ok())
        .filter(|id| *id != live)
        .collect();
    builds.sort_unstable_by(|a, b| b.cmp(a));
    for old in builds.into_iter().skip(KEPT_BUILDS) {
        let build = env_dir.join(old.to_string());
        let _ = std::fs::remove_dir_all(&build);
        let _ = std::fs::remove_dir_all(run_dir(&build));
        // A canary a crash left behind.
        let _ = std::fs::remove_dir_all(build.with_extension("canary"));
        remove_log(&canary_log(&build.with_extension("canary")));
        remove_log(&log_file(&build));
    }
}

/// Stops a process and removes its directory (it was replaced).
async fn stop_process(process: LiveProcess) {
    let workdir = process.workdir.clone();
    stop_process_keep_files(process).await;
    let _ = tokio::fs::remove_dir_all(&workdir).await;
    remove_log(&log_file(&workdir));
}

async fn end_canary_process(canary: CanaryProcess) {
    canary.stop.cancel();
    let _ = canary.watcher.await;
    tracing::debug!(
        deployment = canary.deployment_id,
        port = canary.port,
        "canary ended"
    );
    let _ = tokio::fs::remove_dir_all(&canary.workdir).await;
    remove_log(&canary_log(&canary.workdir));
}

/// Where a canary's output goes: beside its copy, apart from the stable
/// version's log.
fn canary_log(workdir: &Path) -> PathBuf {
    workdir.with_extension("canary.log")
}

async fn stop_process_keep_files(process: LiveProcess) {
    process.stop.cancel();
    let _ = process.supervisor.await;
}

/// Where an app's output goes, and how much of it is kept.
struct AppLog {
    path: PathBuf,
    limit: u64,
    /// The app's own uid (see `Sandbox::lease_user`).
    user: Option<(u32, u32)>,
}

/// A running app and the task that copies its output into its log.
struct AppChild {
    process: Sandboxed,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl std::ops::Deref for AppChild {
    type Target = Sandboxed;
    fn deref(&self) -> &Sandboxed {
        &self.process
    }
}

impl std::ops::DerefMut for AppChild {
    fn deref_mut(&mut self) -> &mut Sandboxed {
        &mut self.process
    }
}

impl AppChild {
    /// Ends the sandbox (see [`Sandboxed::finish`]); the log's copier
    /// finishes by itself.
    async fn finish(self) {
        self.process.finish().await;
    }

    /// Once the app has ended: waits (briefly) until what it printed is in
    /// its log, so its last words are there to quote.
    async fn output_written(&mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        }
    }
}

/// Starts the app; its output is copied into its capped log (see
/// [`super::app_log`]) for as long as it runs.
async fn start_process(
    sandbox: &Sandbox,
    spec: &LocalSpec,
    workdir: &Path,
    port: u16,
    log: &AppLog,
) -> Result<AppChild, LocalError> {
    let app_dir = Mount::writable(workdir, sandbox::APP_DIR);
    let seen = sandbox.seen(&app_dir);
    let network = match (sandbox.enabled(), spec.manifest.network) {
        (true, StepNetwork::Host) | (false, _) => Network::Host,
        (true, _) => Network::Isolated,
    };
    // In its own network namespace the app listens on every address of it
    // (its port is published on the host's loopback); on the host's network
    // only on loopback.
    let host = if network == Network::Isolated {
        "0.0.0.0"
    } else {
        "127.0.0.1"
    };
    let mut env: Vec<(String, String)> = spec.manifest.env.clone();
    env.extend(spec.secret_values.iter().cloned());
    env.push(("PORT".into(), port.to_string()));
    env.push(("HOST".into(), host.into()));
    env.push(("HOME".into(), seen.display().to_string()));
    env.push((
        crate::sandbox::process::INSTANCE_VAR.into(),
        spec.instance_tag.clone(),
    ));
    let r = &spec.manifest.resources;
    let mut child = sandbox
        .spawn(Spec {
            script: spec.manifest.run.clone(),
            mounts: vec![app_dir.clone()],
            cwd: app_dir,
            env,
            limits: Limits {
                memory_bytes: r.memory_bytes,
                pids: r.pids,
                cpu_millis: r.cpu_millis,
                tmp_bytes: r.tmp_bytes,
            },
            network,
            publish: (network == Network::Isolated).then_some(port),
            hosts: Vec::new(),
            user: log.user,
            builder: false,
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        })
        .await
        .map_err(|source| LocalError::Spawn {
            command: spec.manifest.run.clone(),
            source,
        })?;
    let writer = match (child.child.stdout.take(), child.child.stderr.take()) {
        (Some(stdout), Some(stderr)) => Some(tokio::spawn(super::app_log::keep(
            stdout,
            stderr,
            log.path.clone(),
            log.limit,
        ))),
        _ => None,
    };
    Ok(AppChild {
        process: child,
        writer,
    })
}

async fn wait_healthy(
    child: &mut AppChild,
    url: &str,
    timeout: Duration,
    health: &str,
    log_path: &Path,
    masker: &Masker,
) -> Result<(), LocalError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| LocalError::Io {
            path: log_path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Ok(Some(exit)) = child.try_wait().await {
            let limits = child.limits();
            let status = limits
                .and_then(|limits| exit.problem(&limits))
                .unwrap_or_else(|| format!("{:?}", exit.ending));
            child.output_written().await;
            return Err(LocalError::ExitedEarly {
                status,
                output: tail(log_path, masker).await,
            });
        }
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LocalError::Unhealthy {
                health: health.to_string(),
                seconds: timeout.as_secs(),
                output: tail(log_path, masker).await,
            });
        }
        // Most apps are up within a second: look often at first.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Watches a live process. An intended stop terminates it; an unexpected
/// exit restarts it (up to three times in a row, with backoff), after which
/// the environment is marked failed.
async fn supervise(
    db: Db,
    sandbox: Arc<Sandbox>,
    routes: Arc<Routes>,
    spec: LocalSpec,
    mut child: AppChild,
    (workdir, log_limit, user): (PathBuf, u64, Option<UserLease>),
    stop: CancellationToken,
) {
    let log_path = log_file(&workdir);
    let log = AppLog {
        path: log_path.clone(),
        limit: log_limit,
        user: user.as_ref().map(UserLease::ids),
    };
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let exit = loop {
            tokio::select! {
                () = stop.cancelled() => {
                    child.terminate(Duration::from_secs(10)).await;
                    child.finish().await;
                    return;
                }
                exit = child.wait() => break exit,
                // An app that runs into a limit (a fork bomb) is stopped,
                // and said so, rather than left limping.
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if child.limit_hit().is_some() {
                        child.kill();
                    }
                }
            }
        };
        let limits = child.limits();
        child.output_written().await;
        child.finish().await;
        let status = match exit {
            Ok(exit) => limits
                .and_then(|limits| exit.problem(&limits))
                .unwrap_or_else(|| format!("{:?}", exit.ending)),
            Err(error) => error.to_string(),
        };
        failures = if started.elapsed() > Duration::from_secs(30) {
            1
        } else {
            failures + 1
        };
        tracing::warn!(app = %spec.app, env = %spec.env, %status, "local app exited; restart {failures} of 3");
        if failures > 3 {
            let detail = format!(
                "the app keeps exiting ({status}); last output: {}",
                tail(&log_path, &masker_of(&spec)).await
            );
            let _ = db::environments::set_state(
                db.pool(),
                spec.environment_id,
                EnvironmentState::Failed,
                Some(&detail),
                now_millis(),
            )
            .await;
            forget_route(&routes, &spec);
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1 << (failures - 1))) => {}
        }
        // Same port: the proxy keeps pointing at it.
        let port = db::local_processes::list(db.pool())
            .await
            .ok()
            .and_then(|rows| {
                rows.into_iter()
                    .find(|r| r.environment_id == spec.environment_id)
            })
            .and_then(|row| u16::try_from(row.port).ok());
        let Some(port) = port else { return };
        match start_process(&sandbox, &spec, &workdir, port, &log).await {
            Ok(restarted) => {
                child = restarted;
                if let Some(pid) = child.pid() {
                    let _ = db::local_processes::set_pid(
                        db.pool(),
                        spec.environment_id,
                        i64::from(pid),
                    )
                    .await;
                }
            }
            Err(error) => {
                let _ = db::environments::set_state(
                    db.pool(),
                    spec.environment_id,
                    EnvironmentState::Failed,
                    Some(&error.to_string()),
                    now_millis(),
                )
                .await;
                forget_route(&routes, &spec);
                return;
            }
        }
    }
}

/// An environment whose process is given up is no longer proxied: its port
/// is free, and another environment's app may get it next.
fn forget_route(routes: &Routes, spec: &LocalSpec) {
    let mut routes = routes.write().unwrap_or_else(|p| p.into_inner());
    routes.remove(&(spec.app.clone(), spec.env.clone()));
}

/// The last lines of an app's log, for error messages and details that
/// viewers read: masked with the app's secrets.
async fn tail(log_path: &Path, masker: &Masker) -> String {
    super::app_log::tail(log_path, 10, masker).await
}

fn masker_of(spec: &LocalSpec) -> Masker {
    Masker::new(spec.secret_values.iter().map(|(_, value)| value))
}

fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

/// Copies a directory tree (regular files with their permissions and
/// their holes, directories, symlinks as links).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), LocalError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LocalError::Io { path, source }
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        let target = to.join(entry.file_name());
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).map_err(io(&entry.path()))?;
            std::os::unix::fs::symlink(link, &target).map_err(io(&target))?;
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            copy_sparse(&entry.path(), &target).map_err(io(&target))?;
        }
        // Anything else a step left (a FIFO, a socket) is not copied:
        // reading a FIFO would block the deploy for good.
    }
    Ok(())
}

/// Copies a file's data and keeps its holes: a step can make a sparse
/// file of a terabyte for free, and a copy that wrote its zeros would cost
/// Gantry's disk the terabyte. Data is found with `SEEK_DATA`/`SEEK_HOLE`;
/// where the file system cannot say, the file is copied whole.
fn copy_sparse(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::unistd::{Whence, lseek};
    use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};

    let source = std::fs::File::open(from)?;
    let meta = source.metadata()?;
    let target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        // No set-id bits: the copy is Gantry's until handed over.
        .mode(meta.permissions().mode() & 0o777)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(to)?;
    let length = i64::try_from(meta.len()).unwrap_or(i64::MAX);
    let mut buffer = vec![0_u8; 256 * 1024];
    let mut offset = 0_i64;
    while offset < length {
        let data = match lseek(&source, offset, Whence::SeekData) {
            Ok(data) => data,
            // No data after `offset`: the rest is a hole.
            Err(nix::errno::Errno::ENXIO) => break,
            Err(_) => offset,
        };
        let hole = lseek(&source, data, Whence::SeekHole).unwrap_or(length);
        let mut at = data;
        while at < hole {
            let want = usize::try_from(hole - at)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            let read = source.read_at(&mut buffer[..want], at as u64)?;
            if read == 0 {
                break;
            }
            target.write_all_at(&buffer[..read], at as u64)?;
            at += read as i64;
        }
        offset = hole;
    }
    target.set_len(meta.len())
}

/// Reads a deployment's local manifest back (for restarts).
pub fn parse_manifest(text: &str) -> Option<LocalManifest> {
    serde_json::from_str(text).ok()
}

pub type SharedLocal = Arc<LocalRuntime>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};

    #[test]
    fn a_sparse_file_a_step_made_is_copied_with_its_holes() {
        let dir = tempfile::tempdir().expect("dir");
        let from = dir.path().join("build");
        std::fs::create_dir(&from).expect("build");
        // 64 GiB in name, a few bytes in fact.
        let file = std::fs::File::create(from.join("sparse.img")).expect("file");
        file.write_all_at(b"head", 0).expect("head");
        file.write_all_at(b"middle", 32 << 30).expect("middle");
        file.set_len(64 << 30).expect("length");
        std::fs::write(from.join("plain.txt"), "plain\n").expect("plain");

        let to = dir.path().join("copy");
        copy_tree(&from, &to).expect("copied");
        let copied = std::fs::metadata(to.join("sparse.img")).expect("copy");
        assert_eq!(copied.len(), 64 << 30);
        assert!(
            copied.blocks() * 512 < 16 << 20,
            "the copy takes {} bytes on disk",
            copied.blocks() * 512
        );
        let copy = std::fs::File::open(to.join("sparse.img")).expect("open");
        let mut middle = [0_u8; 6];
        copy.read_exact_at(&mut middle, 32 << 30).expect("read");
        assert_eq!(&middle, b"middle");
        let mut head = [0_u8; 4];
        copy.read_exact_at(&mut head, 0).expect("read");
        assert_eq!(&head, b"head");
        assert_eq!(
            std::fs::read_to_string(to.join("plain.txt")).expect("plain"),
            "plain\n"
        );
    }
}
