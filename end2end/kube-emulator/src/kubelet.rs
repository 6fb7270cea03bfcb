//! A small kubelet, for tests only: a pod that no controller of the
//! emulator owns (a bare pod, as a CI system creates for a build step) has
//! its containers run as sandboxed local processes — init containers one
//! after another, then the containers together. An image is a name the
//! test maps to a local entrypoint (`Kubelet::images`); an unknown one
//! waits in `ErrImagePull`, as a real kubelet reports it. Each container's
//! output is its log; its exit code and reason are its terminated state;
//! the pod ends `Succeeded` or `Failed`. A pod deleted while it runs has its
//! processes killed.
//!
//! The sandbox is bubblewrap (`bwrap`): the machine read-only, a private
//! `/tmp`, its own PID namespace, the network shared (a build pod fetches
//! its workspace). It is test infrastructure: production needs a real
//! cluster.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::store::{Key, Store, now_rfc3339};

/// What the kubelet runs: image names and the local entrypoint each stands
/// for (`"busybox" → ["/bin/sh", "-c"]`-like; a container's own `command`
/// replaces it, its `args` follow it).
#[derive(Clone, Debug, Default)]
pub struct Kubelet {
    pub images: BTreeMap<String, Vec<String>>,
}

/// Starts the kubelet's loop over the store's pods.
pub fn spawn(store: Arc<Store>, kubelet: Kubelet) {
    let weak = Arc::downgrade(&store);
    drop(store);
    tokio::spawn(async move {
        let mut started: HashSet<String> = HashSet::new();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Some(store) = weak.upgrade() else { return };
            for (key, pod) in store.objects_of("", "pods") {
                let owned = pod["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|o| o["controller"] == true));
                let uid = pod["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if owned || pod["status"]["phase"].is_string() || !started.insert(uid) {
                    continue;
                }
                let (store, kubelet) = (store.clone(), kubelet.clone());
                tokio::spawn(async move { run_pod(&store, &kubelet, key, pod).await });
            }
        }
    });
}

/// A container's state as the pod's status shows it.
fn state(name: &str, image: &str, state: Value, ready: bool) -> Value {
    json!({ "name": name, "image": image, "ready": ready, "started": ready,
            "restartCount": 0, "state": state })
}

fn set_pod_status(store: &Store, key: &Key, phase: &str, init: &[Value], main: &[Value]) {
    let ready = phase == "Running";
    let status = json!({
            "phase": phase,
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Ready", "status": if ready { "True" } else { "False" } },
            ],
            "initContainerStatuses": init,
            "containerStatuses": main,
            "startTime": now_rfc3339(),
    });
    // An evicted pod says so in every status from then on, with the
    // containers' endings (one update, as a kubelet writes it).
    let status = match store.eviction(&key.namespace, &key.name) {
        Some(message) => crate::store::evicted(status, &message),
        None => status,
    };
    store.set_status(key, status);
}

/// Why a container stopped before it ended by itself.
#[derive(Clone, Copy, PartialEq)]
enum Stopped {
    /// Its pod was deleted (or deleted with a grace period that passed).
    Deleted,
    /// Its pod ran past `activeDeadlineSeconds`.
    Deadline,
    /// Its node evicted the pod.
    Evicted,
}

/// A pod's `emptyDir` volumes: a directory of the pod's own each, removed
/// with the pod.
struct Volumes {
    root: PathBuf,
    dirs: BTreeMap<String, PathBuf>,
    /// Secret volumes: their folder, the Secret, and its items (key, path;
    /// none: every key). Filled when a container mounting them starts.
    secrets: BTreeMap<String, (String, Vec<(String, String)>)>,
}

impl Volumes {
    fn create(pod: &Value) -> Volumes {
        // Emulators count their uids alike: a process-wide number keeps
        // two emulators' pods apart.
        static PODS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("pod");
        let number = PODS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!(
            "kube-emulator-{}-{number}-{uid}",
            std::process::id()
        ));
        let mut dirs = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let Some(name) = volume["name"].as_str() else {
                continue;
            };
            let secret = volume["secret"]["secretName"].as_str();
            if !volume["emptyDir"].is_object() && secret.is_none() {
                continue;
            }
            let dir = root.join(name);
            if std::fs::create_dir_all(&dir).is_ok() {
                dirs.insert(name.to_string(), dir);
            }
            if let Some(secret) = secret {
                let items = volume["secret"]["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        Some((
                            i["key"].as_str()?.to_string(),
                            i["path"].as_str()?.to_string(),
                        ))
                    })
                    .collect();
                secrets.insert(name.to_string(), (secret.to_string(), items));
            }
        }
        Volumes {
            root,
            dirs,
            secrets,
        }
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

async fn run_pod(store: &Store, kubelet: &Kubelet, key: Key, pod: Value) {
    let names =
        |field: &str| -> Vec<Value> { pod["spec"][field].as_array().cloned().unwrap_or_default() };
    let (inits, mains) = (names("initContainers"), names("containers"));
    let waiting = |c: &Value| {
        state(
            c["name"].as_str().unwrap_or_default(),
            c["image"].as_str().unwrap_or_default(),
            json!({ "waiting": { "reason": "PodInitializing" } }),
            false,
        )
    };
    let mut init_states: Vec<Value> = inits.iter().map(waiting).collect();
    let mut main_states: Vec<Value> = mains.iter().map(waiting).collect();
    // Every image must be known before anything runs.
    let pull = |container: &Value| {
        let image = container["image"].as_str().unwrap_or_default();
        (!kubelet.images.contains_key(image)).then(|| {
            json!({ "waiting": { "reason": "ErrImagePull",
                "message": format!("failed to pull image \"{image}\": not found") } })
        })
    };
    let unknown_init = inits.iter().position(|c| pull(c).is_some());
    let unknown_main = mains.iter().position(|c| pull(c).is_some());
    if let Some(at) = unknown_init {
        init_states[at]["state"] = pull(&inits[at]).unwrap_or_default();
    }
    if let Some(at) = unknown_main {
        main_states[at]["state"] = pull(&mains[at]).unwrap_or_default();
    }
    if unknown_init.is_some() || unknown_main.is_some() {
        set_pod_status(store, &key, "Pending", &init_states, &main_states);
        return;
    }
    let volumes = Volumes::create(&pod);
    let deadline = pod["spec"]["activeDeadlineSeconds"]
        .as_u64()
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let run = Run {
        store,
        kubelet,
        key: &key,
        volumes: &volumes,
        deadline,
    };
    set_pod_status(store, &key, "Pending", &init_states, &main_states);
    let mut stopped = None;
    for (index, container) in inits.iter().enumerate() {
        init_states[index] = running(container);
        set_pod_status(store, &key, "Pending", &init_states, &main_states);
        let (code, terminated, stop) = run.container(container).await;
        init_states[index] = terminated;
        if code != 0 || stop.is_some() {
            stopped = stop;
            break;
        }
    }
    let inits_done = stopped.is_none()
        && init_states
            .iter()
            .all(|s| s["state"]["terminated"]["exitCode"] == 0);
    let phase = if inits_done {
        main_states = mains.iter().map(running).collect();
        set_pod_status(store, &key, "Running", &init_states, &main_states);
        // Each container's ending shows as it comes, as a kubelet reports it.
        let run = &run;
        let mut running: futures_util::stream::FuturesUnordered<_> = mains
            .iter()
            .enumerate()
            .map(|(index, container)| async move { (index, run.container(container).await) })
            .collect();
        let mut failed = false;
        while let Some((index, (code, state, stop))) =
            futures_util::StreamExt::next(&mut running).await
        {
            failed |= code != 0;
            stopped = stopped.or(stop);
            main_states[index] = state;
            set_pod_status(store, &key, "Running", &init_states, &main_states);
        }
        if failed { "Failed" } else { "Succeeded" }
    } else {
        "Failed"
    };
    set_pod_status(store, &key, phase, &init_states, &main_states);
    match stopped {
        Some(Stopped::Deadline) => store.set_status(&key, {
            let mut status = store
                .object("", "pods", &key.namespace, &key.name)
                .map(|p| p["status"].clone())
                .unwrap_or_default();
            status["reason"] = json!("DeadlineExceeded");
            status["message"] =
                json!("Pod was active on the node longer than the specified deadline");
            status
        }),
        // A pod deleted with a grace period goes once its containers have.
        Some(Stopped::Deleted) => store.remove(&key),
        Some(Stopped::Evicted) | None => {}
    }
}

/// What a pod's containers share: its store, images, volumes and deadline.
struct Run<'a> {
    store: &'a Store,
    kubelet: &'a Kubelet,
    key: &'a Key,
    volumes: &'a Volumes,
    deadline: Option<tokio::time::Instant>,
}

fn running(container: &Value) -> Value {
    state(
        container["name"].as_str().unwrap_or_default(),
        container["image"].as_str().unwrap_or_default(),
        json!({ "running": { "startedAt": now_rfc3339() } }),
        true,
    )
}

/// A container's environment: its `env` (values, and `secretKeyRef`s) and
/// its `envFrom` secrets; None while a secret it names does not exist (a
/// real kubelet reports `CreateContainerConfigError` and retries).
fn environment(store: &Store, namespace: &str, container: &Value) -> Option<Vec<(String, String)>> {
    use base64::Engine as _;
    let decode = |value: &Value| {
        value
            .as_str()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    };
    let secret = |name: &str| store.object("", "secrets", namespace, name);
    let mut vars = Vec::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(name) = from["secretRef"]["name"].as_str() {
            let secret = secret(name)?;
            for (key, value) in secret["data"].as_object().into_iter().flatten() {
                vars.push((key.clone(), decode(value)?));
            }
        }
    }
    for variable in container["env"].as_array().into_iter().flatten() {
        let Some(name) = variable["name"].as_str() else {
            continue;
        };
        if let Some(value) = variable["value"].as_str() {
            vars.push((name.to_string(), value.to_string()));
        } else if let Some(reference) = variable["valueFrom"]["secretKeyRef"].as_object() {
            let secret = secret(reference.get("name")?.as_str()?)?;
            let key = reference.get("key")?.as_str()?;
            vars.push((name.to_string(), decode(&secret["data"][key])?));
        }
    }
    Some(vars)
}

/// The sandbox's root: the machine's top-level folders read-only (but
/// `/proc`, `/dev`, `/sys` and `/tmp`, which are its own), on an empty
/// root where volumes can be mounted anywhere.
fn root_binds(volume_tops: &HashSet<String>) -> Vec<String> {
    let mut args = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir("/")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        if matches!(name.as_str(), "proc" | "dev" | "sys" | "tmp") || volume_tops.contains(&name) {
            continue;
        }
        let path = format!("/{name}");
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_symlink() {
            // `/bin -> usr/bin` on a merged-/usr machine stays a link.
            if let Ok(target) = std::fs::read_link(&path) {
                args.extend(["--symlink".to_string(), target.display().to_string(), path]);
            }
        } else if metadata.is_dir() {
            args.extend(["--ro-bind".to_string(), path.clone(), path]);
        }
    }
    args
}

impl Run<'_> {
    /// Writes the Secret volumes `container` mounts into their folders;
    /// false while a Secret they name does not exist.
    fn secret_volumes(&self, container: &Value) -> bool {
        use base64::Engine as _;
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let Some(volume) = mount["name"].as_str() else {
                continue;
            };
            let (Some((secret, items)), Some(dir)) = (
                self.volumes.secrets.get(volume),
                self.volumes.dirs.get(volume),
            ) else {
                continue;
            };
            let Some(object) = self
                .store
                .object("", "secrets", &self.key.namespace, secret)
            else {
                return false;
            };
            let data = object["data"].as_object().cloned().unwrap_or_default();
            let files: Vec<(String, String)> = if items.is_empty() {
                data.keys().map(|k| (k.clone(), k.clone())).collect()
            } else {
                items.clone()
            };
            for (key, path) in files {
                let Some(bytes) = data
                    .get(&key)
                    .and_then(|v| v.as_str())
                    .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                else {
                    return false;
                };
                let _ = std::fs::write(dir.join(path), bytes);
            }
        }
        true
    }

    /// Runs one container to its end: its exit code, its terminated state,
    /// and whether it was stopped. A pod deleted meanwhile kills it (exit
    /// 137) — TERM first when the deletion has a grace period.
    async fn container(&self, container: &Value) -> (i64, Value, Option<Stopped>) {
        let (store, key) = (self.store, self.key);
        let name = container["name"].as_str().unwrap_or_default().to_string();
        let image = container["image"].as_str().unwrap_or_default().to_string();
        let strings = |field: &str| -> Vec<String> {
            container[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let mut argv = match strings("command") {
            command if command.is_empty() => {
                self.kubelet.images.get(&image).cloned().unwrap_or_default()
            }
            command => command,
        };
        argv.extend(strings("args"));
        let started = now_rfc3339();
        let terminated = |code: i64, reason: &str| {
            state(
                &name,
                &image,
                json!({ "terminated": { "exitCode": code, "reason": reason,
                                        "startedAt": started, "finishedAt": now_rfc3339() } }),
                false,
            )
        };
        if argv.is_empty() {
            return (128, terminated(128, "ContainerCannotRun"), None);
        }
        // Its secrets first: a container whose secret is missing waits.
        let env = loop {
            if let (Some(env), true) = (
                environment(store, &key.namespace, container),
                self.secret_volumes(container),
            ) {
                break env;
            }
            if store
                .object("", "pods", &key.namespace, &key.name)
                .is_none()
            {
                return (137, terminated(137, "Error"), Some(Stopped::Deleted));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mounts: Vec<(String, PathBuf, bool)> = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let dir = self.volumes.dirs.get(m["name"].as_str()?)?;
                Some((
                    m["mountPath"].as_str()?.to_string(),
                    dir.clone(),
                    m["readOnly"] == true,
                ))
            })
            .collect();
        let tops: HashSet<String> = mounts
            .iter()
            .filter_map(|(path, _, _)| path.trim_start_matches('/').split('/').next())
            .map(str::to_string)
            .collect();
        let mut command = tokio::process::Command::new("bwrap");
        command.args(root_binds(&tops));
        command.args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
        for (path, dir, read_only) in &mounts {
            command
                .arg(if *read_only { "--ro-bind" } else { "--bind" })
                .arg(dir)
                .arg(path);
        }
        if let Some(dir) = container["workingDir"].as_str() {
            command.args(["--chdir", dir]);
        }
        command.args([
            "--unshare-all",
            "--share-net",
            "--die-with-parent",
            "--new-session",
            "--",
        ]);
        command
            .args(&argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOSTNAME", &key.name)
            .envs(env);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let Ok(mut child) = command.spawn() else {
            return (128, terminated(128, "ContainerCannotRun"), None);
        };
        let pipe = |reader: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
            let (key, name) = (key.clone(), name.clone());
            async move {
                let Some(reader) = reader else { return };
                // Bytes, as a container runtime reads them: invalid UTF-8
                // does not stop the log, and a line has no length limit.
                let mut reader = BufReader::new(reader);
                let mut line = Vec::new();
                while matches!(reader.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches('\n');
                    store.write_log(&key.namespace, &key.name, &name, &format!("{text}\n"));
                    line.clear();
                }
            }
        };
        let out = pipe(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        );
        let err = pipe(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        );
        let root = child.id();
        // Deleted (at once, or after its grace period once TERM was sent),
        // or past the pod's deadline.
        let deadline = self.deadline;
        let this = self;
        let stop = async move {
            let mut termed: Option<tokio::time::Instant> = None;
            let mut tick = 0_u64;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tick += 1;
                // A kubelet brings a Secret's changes into the containers
                // that mount it (within a minute or two on a real node).
                if tick.is_multiple_of(20) {
                    this.secret_volumes(container);
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return Stopped::Deadline;
                }
                if store.eviction(&key.namespace, &key.name).is_some() {
                    return Stopped::Evicted;
                }
                let Some(pod) = store.object("", "pods", &key.namespace, &key.name) else {
                    return Stopped::Deleted;
                };
                if let Some(grace) = pod["metadata"]["deletionGracePeriodSeconds"].as_u64() {
                    match termed {
                        None => {
                            if let Some(root) = root {
                                signal_tree(root, "TERM");
                            }
                            termed = Some(tokio::time::Instant::now() + Duration::from_secs(grace));
                        }
                        Some(until) if tokio::time::Instant::now() >= until => {
                            return Stopped::Deleted;
                        }
                        Some(_) => {}
                    }
                }
            }
        };
        // Over its memory limit, a container is killed, as the kernel's OOM
        // killer does in a real node's cgroup: exit 137, reason OOMKilled.
        let limit = container["resources"]["limits"]["memory"]
            .as_str()
            .and_then(bytes_of);
        let over_limit = async move {
            let (Some(limit), Some(root)) = (limit, root) else {
                return std::future::pending::<()>().await;
            };
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if resident(root) > limit {
                    return;
                }
            }
        };
        let waited = async {
            let (status, (), ()) = tokio::join!(child.wait(), out, err);
            status
        };
        let deleting = || {
            store
                .object("", "pods", &key.namespace, &key.name)
                .is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string())
        };
        tokio::select! {
            status = waited => {
                let code = status.ok().and_then(|s| s.code()).map_or(137, i64::from);
                let reason = if code == 0 { "Completed" } else { "Error" };
                // Ended by the TERM of its deletion: the pod still goes.
                let stopped = deleting().then_some(Stopped::Deleted);
                (code, terminated(code, reason), stopped)
            }
            stopped = stop => (137, terminated(137, "Error"), Some(stopped)),
            () = over_limit => (137, terminated(137, "OOMKilled"), None),
        }
    }
}

/// Sends `signal` to every process below `root` (the sandbox's own
/// processes; bubblewrap itself forwards nothing).
fn signal_tree(root: u32, signal: &str) {
    let pids: Vec<String> = descendants(root)
        .into_iter()
        .filter(|pid| *pid != root)
        .map(|pid| pid.to_string())
        .collect();
    if !pids.is_empty() {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .args(pids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A memory quantity (`64Mi`, `100M`, `1Gi`, `1048576`) in bytes.
fn bytes_of(quantity: &str) -> Option<u64> {
    let digits = quantity.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &quantity[digits.len()..];
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok().map(|n| n * factor)
}

/// Process `root` and all its descendants (from /proc).
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the name may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut at = 0;
    while at < tree.len() {
        let parent = tree[at];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        at += 1;
    }
    tree
}

/// The resident memory of process `root` and all its descendants, in
/// bytes (from /proc).
fn resident(root: u32) -> u64 {
    descendants(root)
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}
