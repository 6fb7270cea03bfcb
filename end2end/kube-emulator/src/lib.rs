//! A Kubernetes API emulator, for tests only — production needs a real
//! cluster. It speaks enough of the API for the real `kube` client and a
//! real `kubectl`: discovery (with short names), GET / LIST (label and field
//! selectors) / WATCH (with bookmarks and initial events), server-side apply
//! with field ownership, merge patches, `/status`, DELETE (one, or a
//! collection by label), `dryRun=All`, namespaces with cascading delete,
//! custom resources from CRDs, `resourceVersion` and `generation`, a rollout
//! controller, and fault injection (latency, 5xx, unreachable).
//!
//! ```no_run
//! # async fn demo() {
//! let cluster = kube_emulator::Emulator::start(kube_emulator::Options::default()).await.unwrap();
//! let kubeconfig = cluster.kubeconfig("dev");
//! # }
//! ```

mod access;
mod apply;
mod deployments;
mod http;
mod jobs;
mod json_patch;
mod kubelet;
mod openapi;
mod protobuf;
mod resources;
mod rollout;
mod store;
mod table;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use access::Denied;
pub use kubelet::Kubelet;
pub use resources::Resource;
pub use store::{ApiError, Key, Store};

/// How the fake rollout controller treats workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutMode {
    /// Deployments, StatefulSets and DaemonSets become available (and Jobs
    /// complete) this long after their spec changes.
    After(Duration),
    /// They never become available: for testing failed rollouts.
    Never,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub rollout: RolloutMode,
    /// How long a deleted namespace stays `Terminating` before it and its
    /// objects are gone.
    pub namespace_termination: Duration,
    /// Reported by `/version`.
    pub git_version: String,
    /// What the credentials may not do (403, and `allowed: false` in a
    /// `SelfSubjectAccessReview`); everything else is allowed.
    pub denied: Vec<Denied>,
    /// Runs bare pods' containers as local processes (see [`Kubelet`]);
    /// `None`: pods are objects only.
    pub kubelet: Option<Kubelet>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rollout: RolloutMode::After(Duration::from_millis(100)),
            namespace_termination: Duration::from_millis(100),
            git_version: "v1.33.0-gantry-emulator".to_string(),
            denied: Vec::new(),
            kubelet: None,
        }
    }
}

/// Faults applied to every request until changed.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added before every response.
    pub latency: Duration,
    /// The next this-many requests answer 503.
    pub fail_next: u32,
    /// A followed pod log (`follow=true`) breaks off, as a dropped
    /// connection does, this long after it opened (zero: never). What it
    /// had sent by then (at least what was there when it opened) stays sent.
    pub cut_logs_after: Duration,
}

/// A running emulated cluster. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<Serving>,
}

/// The server task and what stops it.
struct Serving {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    pub async fn start(options: Options) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let kubelet = options.kubelet.clone();
        let store = Arc::new(Store::new(options));
        rollout::spawn(store.clone());
        if let Some(kubelet) = kubelet {
            kubelet::spawn(store.clone(), kubelet);
        }
        let stop = serve(listener, store.clone());
        Ok(Emulator {
            addr,
            store,
            stop: Some(stop),
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn set_faults(&self, faults: Faults) {
        self.store.set_faults(faults);
    }

    pub fn set_rollout(&self, mode: RolloutMode) {
        self.store.set_rollout(mode);
    }

    /// Appends `text` to what `container` of `pod` has printed (what
    /// `kubectl logs` and the pod's `/log` read).
    pub fn write_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.store.write_log(namespace, pod, container, text);
    }

    /// Replaces what the credentials may not do, from the next request on.
    pub fn set_denied(&self, denied: Vec<Denied>) {
        self.store.set_denied(denied);
    }

    /// Makes the cluster unreachable (connections refused) until
    /// [`Emulator::restart`]; returns once the port is closed.
    pub async fn stop(&mut self) {
        if let Some(serving) = self.stop.take() {
            let _ = serving.stop.send(());
            let _ = serving.task.await;
        }
    }

    /// Serves again on the same port, with the same objects.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await;
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => return Err(error),
            }
        };
        self.stop = Some(serve(listener, self.store.clone()));
        Ok(())
    }

    /// A kubeconfig (YAML) with one context, `context`, for this cluster.
    pub fn kubeconfig(&self, context: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: {url}\ncontexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {context}\n    namespace: default\nusers:\n- name: {context}\n  user:\n    token: emulator-token\ncurrent-context: {context}\n",
            url = self.url()
        )
    }
}

/// Serves the API on `listener` until stopped.
fn serve(listener: TcpListener, store: Arc<Store>) -> Serving {
    let (stop, stopped) = oneshot::channel::<()>();
    let router = http::router(store);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Serving { stop, task }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(serving) = self.stop.take() {
            let _ = serving.stop.send(());
        }
    }
}
