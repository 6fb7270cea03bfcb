//! The cluster registry: Kubernetes clusters registered by admins, from a
//! kubeconfig (choosing a context), from server URL + CA bundle + bearer
//! token, or as in-cluster. Credentials are sealed with the secret key and
//! never leave this module except inside a `kube::Client`. Each check also
//! asks the cluster what the credentials lack of what Gantry needs
//! (`access`).

mod access;
mod kubeconfig;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::dto::{ClusterState, ClusterSummary, Role};
use app::port::Caller;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ApiResource;
use kube::discovery::ApiCapabilities;
use serde::{Deserialize, Serialize};

use crate::db::{self, Db, now_millis};
use crate::error::{Classified, Kind};
use crate::secrets::{Sealed, Vault};
use crate::signals::Signals;

/// How Gantry reaches a cluster. Stored sealed; never returned.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credentials {
    Kubeconfig {
        kubeconfig: String,
        context: Option<String>,
    },
    Token {
        server: String,
        token: String,
        ca_pem: Option<String>,
        insecure: bool,
    },
    InCluster,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Kubeconfig { .. } => "Credentials::Kubeconfig(..)",
            Credentials::Token { .. } => "Credentials::Token(..)",
            Credentials::InCluster => "Credentials::InCluster",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "{0:?} is not a valid cluster name: lowercase letters, digits and single dashes, starting with a letter, at most 30 characters"
    )]
    BadName(String),
    #[error("cluster {0} is already registered")]
    Exists(String),
    #[error("no cluster named {0}")]
    NotFound(String),
    #[error("the kubeconfig is not valid: {0}")]
    BadKubeconfig(String),
    #[error("the kubeconfig has no context {wanted:?} (it has: {available})")]
    NoContext { wanted: String, available: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("cluster {cluster} is the target of {apps}; remove it from their stacks first")]
    InUse { cluster: String, apps: String },
    #[error("cannot build a client for cluster {cluster}: {message}")]
    Client { cluster: String, message: String },
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl Classified for ClusterError {
    fn kind(&self) -> Kind {
        match self {
            ClusterError::NotFound(_) => Kind::NotFound,
            ClusterError::Exists(_) | ClusterError::InUse { .. } => Kind::Conflict,
            // A registration that cannot become a client is the admin's to fix.
            ClusterError::BadName(_)
            | ClusterError::BadKubeconfig(_)
            | ClusterError::NoContext { .. }
            | ClusterError::BadRequest(_)
            | ClusterError::Client { .. } => Kind::Invalid,
            ClusterError::Forbidden(_) => Kind::Forbidden,
            ClusterError::Secret(_) => Kind::Internal,
            ClusterError::Db(error) => error.kind(),
        }
    }
}

/// Managing clusters is for global admins.
fn require_admin(caller: &Caller) -> Result<(), ClusterError> {
    caller
        .require(Role::Admin, None)
        .map_err(|refused| ClusterError::Forbidden(refused.to_string()))
}

/// The registered clusters, with what they need and nothing more: the
/// database, the vault their credentials are sealed with, the clients
/// built so far, and the flow (told when the set of targets changes).
pub struct Registry<'a> {
    pub db: &'a Db,
    pub vault: &'a Vault,
    pub clients: &'a ClientCache,
    pub flow: &'a Signals,
}

/// Built clients, by cluster name, each with what its cluster was found to
/// serve (both dropped when the cluster changes).
#[derive(Default)]
pub struct ClientCache {
    clients: Mutex<HashMap<String, (kube::Client, Arc<Served>)>>,
}

/// The kinds one cluster serves, by apiVersion, learnt as deploys ask and
/// kept across them: a deploy asks discovery only for a group version it
/// has not seen, or for a kind it did not find there (a CRD installed
/// since).
#[derive(Default)]
pub struct Served {
    groups: Mutex<HashMap<String, Vec<(ApiResource, ApiCapabilities)>>>,
}

impl Served {
    pub fn get(&self, api_version: &str) -> Option<Vec<(ApiResource, ApiCapabilities)>> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(api_version)
            .cloned()
    }

    pub fn put(&self, api_version: &str, resources: Vec<(ApiResource, ApiCapabilities)>) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(api_version.to_string(), resources);
    }

    /// Forgets what `api_version` served (its CRD may be gone): the next
    /// deploy asks discovery again.
    pub fn forget(&self, api_version: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(api_version);
    }
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCache")
    }
}

impl ClientCache {
    fn get(&self, name: &str) -> Option<(kube::Client, Arc<Served>)> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn put(&self, name: &str, client: kube::Client) -> Arc<Served> {
        let served = Arc::new(Served::default());
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (client, served.clone()));
        served
    }

    fn forget(&self, name: &str) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

pub use app::dto::ClusterRegistration as Registration;

/// Reads the registration into credentials (and the server URL to show).
trait IntoCredentials {
    fn credentials(&self) -> Result<(Credentials, Option<String>), ClusterError>;
}

impl IntoCredentials for Registration {
    fn credentials(&self) -> Result<(Credentials, Option<String>), ClusterError> {
        let blank = |text: &Option<String>| {
            text.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        };
        match (
            &blank(&self.kubeconfig),
            &blank(&self.server),
            self.in_cluster,
        ) {
            (Some(text), None, false) => {
                let kubeconfig = Kubeconfig::from_yaml(text)
                    .map_err(|e| ClusterError::BadKubeconfig(e.to_string()))?;
                if let Some(why) = kubeconfig::refusal(&kubeconfig) {
                    return Err(ClusterError::BadKubeconfig(why));
                }
                let context = self
                    .context
                    .clone()
                    .or_else(|| kubeconfig.current_context.clone());
                let Some(context) = context else {
                    return Err(ClusterError::BadRequest(
                        "the kubeconfig has no current-context; choose one with `context`".into(),
                    ));
                };
                let found = kubeconfig.contexts.iter().find(|c| c.name == context);
                let Some(found) = found else {
                    let available = kubeconfig
                        .contexts
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(ClusterError::NoContext {
                        wanted: context,
                        available,
                    });
                };
                let cluster_name = found
                    .context
                    .as_ref()
                    .map(|c| c.cluster.clone())
                    .unwrap_or_default();
                let server = kubeconfig
                    .clusters
                    .iter()
                    .find(|c| c.name == cluster_name)
                    .and_then(|c| c.cluster.as_ref())
                    .and_then(|c| c.server.clone());
                Ok((
                    Credentials::Kubeconfig {
                        kubeconfig: text.clone(),
                        context: Some(context),
                    },
                    server,
                ))
            }
            (None, Some(server), false) => {
                let token = self
                    .token
                    .clone()
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| {
                        ClusterError::BadRequest("`server` needs a bearer `token`".into())
                    })?;
                url::Url::parse(server).map_err(|e| {
                    ClusterError::BadRequest(format!("`server` {server:?} is not a URL: {e}"))
                })?;
                Ok((
                    Credentials::Token {
                        server: server.clone(),
                        token: token.trim().to_string(),
                        ca_pem: self.ca.clone(),
                        insecure: self.insecure,
                    },
                    Some(server.clone()),
                ))
            }
            (None, None, true) => Ok((Credentials::InCluster, None)),
            _ => Err(ClusterError::BadRequest(
                "give exactly one of `kubeconfig`, `server` + `token`, or `in_cluster: true`"
                    .into(),
            )),
        }
    }
}

fn kind_name(credentials: &Credentials) -> &'static str {
    match credentials {
        Credentials::Kubeconfig { .. } => "kubeconfig",
        Credentials::Token { .. } => "token",
        Credentials::InCluster => "in_cluster",
    }
}

fn seal_name(cluster: &str) -> String {
    format!("cluster:{cluster}")
}

impl Registry<'_> {
    /// The set of valid targets changed: the next scan reads the pipeline
    /// repo again (now), so apps waiting for a target (or losing one) are
    /// validated anew.
    fn targets_changed(&self) {
        self.flow
            .targets_changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.flow.scan_wake.notify_one();
    }

    /// An admin registers a cluster (audited as `cluster.register`), which is
    /// checked once; apps waiting for it are re-validated. An unreachable
    /// cluster is registered all the same; its summary says why it cannot be
    /// reached.
    pub async fn register(
        &self,
        caller: &Caller,
        registration: &Registration,
    ) -> Result<ClusterSummary, ClusterError> {
        require_admin(caller)?;
        let summary = self.store(registration).await?;
        crate::audit::record(self.db, caller, "cluster.register", &summary.name, None).await?;
        self.targets_changed();
        Ok(summary)
    }

    async fn store(&self, registration: &Registration) -> Result<ClusterSummary, ClusterError> {
        let name = registration.name.trim();
        if !crate::gitops::load::valid_name(name) || name == crate::gitops::schema::LOCAL_TARGET {
            return Err(ClusterError::BadName(name.to_string()));
        }
        let (credentials, server) = registration.credentials()?;
        // Refuse what cannot become a client before storing anything.
        build_client(name, &credentials).await?;
        let json = serde_json::to_string(&credentials)
            .map_err(|e| ClusterError::BadRequest(e.to_string()))?;
        let sealed = self.vault.seal(&seal_name(name), &json)?;
        let inserted = db::clusters::insert(
            self.db.pool(),
            &db::clusters::NewCluster {
                name,
                kind: kind_name(&credentials),
                context: match &credentials {
                    Credentials::Kubeconfig { context, .. } => context.as_deref(),
                    _ => None,
                },
                server_url: server.as_deref(),
                sealed: &sealed,
            },
            now_millis(),
        )
        .await;
        match inserted {
            Err(error) if error.is_conflict() => {
                return Err(ClusterError::Exists(name.to_string()));
            }
            other => other?,
        };
        self.clients.forget(name);
        self.probe(name).await
    }

    async fn credentials(&self, name: &str) -> Result<Credentials, ClusterError> {
        let row = db::clusters::sealed(self.db.pool(), name)
            .await?
            .ok_or_else(|| ClusterError::NotFound(name.to_string()))?;
        let json = self.vault.open_value(
            &seal_name(name),
            &Sealed {
                nonce: row.0,
                ciphertext: row.1,
                key_id: row.2,
            },
        )?;
        serde_json::from_str(&json).map_err(|e| ClusterError::Client {
            cluster: name.to_string(),
            message: e.to_string(),
        })
    }

    /// The client for a registered cluster (built once, then cached).
    pub async fn client(&self, name: &str) -> Result<kube::Client, ClusterError> {
        self.connection(name).await.map(|(client, _)| client)
    }

    /// The client for a registered cluster and what it was found to serve.
    pub async fn connection(
        &self,
        name: &str,
    ) -> Result<(kube::Client, Arc<Served>), ClusterError> {
        if let Some(connection) = self.clients.get(name) {
            return Ok(connection);
        }
        let credentials = self.credentials(name).await?;
        let client = build_client(name, &credentials).await?;
        let served = self.clients.put(name, client.clone());
        Ok((client, served))
    }

    /// An admin asks the cluster for its version now; the outcome is recorded.
    pub async fn check(&self, caller: &Caller, name: &str) -> Result<ClusterSummary, ClusterError> {
        require_admin(caller)?;
        self.probe(name).await
    }

    async fn probe(&self, name: &str) -> Result<ClusterSummary, ClusterError> {
        let within = |seconds| Duration::from_secs(seconds);
        let client = match self.client(name).await {
            Ok(client) => Ok(client),
            Err(ClusterError::NotFound(name)) => return Err(ClusterError::NotFound(name)),
            Err(error) => Err(error.to_string()),
        };
        let outcome = match &client {
            Ok(client) => {
                match tokio::time::timeout(within(10), client.apiserver_version()).await {
                    Ok(Ok(info)) => Ok(info.git_version),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("no answer within 10s".to_string()),
                }
            }
            Err(error) => Err(error.clone()),
        };
        // Only a cluster that answered is asked what its credentials lack.
        let (missing, review_error) = match (&outcome, &client) {
            (Ok(_), Ok(client)) => {
                let kinds = self.kinds_in_use(name).await?;
                match tokio::time::timeout(within(60), access::missing(client, &kinds)).await {
                    Ok(Ok(missing)) => (Some(missing), None),
                    Ok(Err(error)) => (
                        None,
                        Some(format!(
                            "could not ask which permissions are missing: {error}"
                        )),
                    ),
                    Err(_) => (
                        None,
                        Some(
                            "could not ask which permissions are missing: no answer within 20s"
                                .into(),
                        ),
                    ),
                }
            }
            _ => (None, None),
        };
        let check = match &outcome {
            Ok(version) => db::clusters::Check {
                state: ClusterState::Reachable,
                version: Some(version.as_str()),
                error: review_error.as_deref(),
                missing_permissions: missing.as_deref(),
            },
            Err(error) => db::clusters::Check {
                state: ClusterState::Unreachable,
                version: None,
                error: Some(error.as_str()),
                missing_permissions: None,
            },
        };
        db::clusters::record_check(self.db.pool(), name, &check, now_millis()).await?;
        db::clusters::list(self.db.pool())
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ClusterError::NotFound(name.to_string()))
    }

    /// The kinds of the objects each live environment's latest deployment
    /// to the cluster sent it (attempted or not), with who sent them.
    async fn kinds_in_use(&self, name: &str) -> Result<access::KindsInUse, ClusterError> {
        let mut kinds = access::KindsInUse::new();
        for (app, env, shown) in db::deployments::latest_manifests_on(self.db.pool(), name).await? {
            let Ok(shown) = serde_json::from_str::<serde_json::Value>(&shown) else {
                continue;
            };
            if let Some(yaml) = shown["kubernetes"].as_str()
                && let Ok(rendered) = crate::manifests::Rendered::from_yaml(yaml)
            {
                access::add_kinds(&mut kinds, &format!("{app}/{env}"), &rendered.objects);
            }
        }
        Ok(kinds)
    }

    /// An admin removes a cluster no app targets any more (audited as
    /// `cluster.remove`).
    pub async fn remove(&self, caller: &Caller, name: &str) -> Result<(), ClusterError> {
        require_admin(caller)?;
        self.unregister(name).await?;
        crate::audit::record(self.db, caller, "cluster.remove", name, None).await?;
        self.targets_changed();
        Ok(())
    }

    async fn unregister(&self, name: &str) -> Result<(), ClusterError> {
        let mut users = Vec::new();
        for app_row in db::apps::list_active(self.db.pool()).await? {
            if let Ok(config) =
                serde_json::from_str::<crate::gitops::schema::AppConfig>(&app_row.config)
                && config
                    .stack
                    .iter()
                    .any(|entry| entry.targets.iter().any(|t| t == name))
            {
                users.push(app_row.name);
            }
        }
        if !users.is_empty() {
            return Err(ClusterError::InUse {
                cluster: name.to_string(),
                apps: users.join(", "),
            });
        }
        if !db::clusters::delete(self.db.pool(), name).await? {
            return Err(ClusterError::NotFound(name.to_string()));
        }
        self.clients.forget(name);
        Ok(())
    }
}

async fn build_client(name: &str, credentials: &Credentials) -> Result<kube::Client, ClusterError> {
    let fail = |message: String| ClusterError::Client {
        cluster: name.to_string(),
        message,
    };
    let mut config = match credentials {
        Credentials::Kubeconfig {
            kubeconfig,
            context,
        } => {
            let parsed = Kubeconfig::from_yaml(kubeconfig).map_err(|e| fail(e.to_string()))?;
            // Checked when registered; checked again for what was stored
            // before the rule.
            if let Some(why) = kubeconfig::refusal(&parsed) {
                return Err(fail(why));
            }
            let options = KubeConfigOptions {
                context: context.clone(),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(parsed, &options)
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        Credentials::Token {
            server,
            token,
            ca_pem,
            insecure,
        } => {
            // The same path as a kubeconfig, so CA handling is kube's own.
            let mut cluster =
                serde_json::json!({ "server": server, "insecure-skip-tls-verify": insecure });
            if let Some(ca) = ca_pem {
                cluster["certificate-authority-data"] = serde_json::json!(STANDARD.encode(ca));
            }
            let document = serde_json::json!({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{ "name": name, "cluster": cluster }],
                "users": [{ "name": name, "user": { "token": token } }],
                "contexts": [{ "name": name, "context": { "cluster": name, "user": name } }],
                "current-context": name,
            });
            let parsed: Kubeconfig =
                serde_json::from_value(document).map_err(|e| fail(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        Credentials::InCluster => kube::Config::incluster().map_err(|e| fail(e.to_string()))?,
    };
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(60));
    kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
}
