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
    store.set_status(
        key,
        json!({
            "phase": phase,
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Ready", "status": if ready { "True" } else { "False" } },
            ],
            "initContainerStatuses": init,
            "containerStatuses": main,
            "startTime": now_rfc3339(),
        }),
    );
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
    set_pod_status(store, &key, "Pending", &init_states, &main_states);
    for (index, container) in inits.iter().enumerate() {
        init_states[index] = running(container);
        set_pod_status(store, &key, "Pending", &init_states, &main_states);
        let (code, terminated) = run_container(store, kubelet, &key, container).await;
        init_states[index] = terminated;
        if code != 0 {
            set_pod_status(store, &key, "Failed", &init_states, &main_states);
            return;
        }
    }
    main_states = mains.iter().map(running).collect();
    set_pod_status(store, &key, "Running", &init_states, &main_states);
    let ended = futures_util::future::join_all(
        mains
            .iter()
            .map(|container| run_container(store, kubelet, &key, container)),
    )
    .await;
    let failed = ended.iter().any(|(code, _)| *code != 0);
    main_states = ended.into_iter().map(|(_, state)| state).collect();
    let phase = if failed { "Failed" } else { "Succeeded" };
    set_pod_status(store, &key, phase, &init_states, &main_states);
}

fn running(container: &Value) -> Value {
    state(
        container["name"].as_str().unwrap_or_default(),
        container["image"].as_str().unwrap_or_default(),
        json!({ "running": { "startedAt": now_rfc3339() } }),
        true,
    )
}

/// Runs one container to its end: its exit code and terminated state. A
/// pod deleted meanwhile kills it (exit 137).
async fn run_container(
    store: &Store,
    kubelet: &Kubelet,
    key: &Key,
    container: &Value,
) -> (i64, Value) {
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
        command if command.is_empty() => kubelet.images.get(&image).cloned().unwrap_or_default(),
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
        return (128, terminated(128, "ContainerCannotRun"));
    }
    let mut command = tokio::process::Command::new("bwrap");
    command.args([
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
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
        .env("HOSTNAME", &key.name);
    for variable in container["env"].as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (variable["name"].as_str(), variable["value"].as_str()) {
            command.env(name, value);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let Ok(mut child) = command.spawn() else {
        return (128, terminated(128, "ContainerCannotRun"));
    };
    let pipe = |reader: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        let (key, name) = (key.clone(), name.clone());
        async move {
            let Some(reader) = reader else { return };
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                store.write_log(&key.namespace, &key.name, &name, &format!("{line}\n"));
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
    let gone = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if store
                .object("", "pods", &key.namespace, &key.name)
                .is_none()
            {
                return;
            }
        }
    };
    // Over its memory limit, a container is killed, as the kernel's OOM
    // killer does in a real node's cgroup: exit 137, reason OOMKilled.
    let limit = container["resources"]["limits"]["memory"]
        .as_str()
        .and_then(bytes_of);
    let root = child.id();
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
    tokio::select! {
        status = waited => {
            let code = status.ok().and_then(|s| s.code()).map_or(137, i64::from);
            let reason = if code == 0 { "Completed" } else { "Error" };
            (code, terminated(code, reason))
        }
        () = gone => (137, terminated(137, "Error")),
        () = over_limit => (137, terminated(137, "OOMKilled")),
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

/// The resident memory of process `root` and all its descendants, in
/// bytes (from /proc).
fn resident(root: u32) -> u64 {
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
    tree.iter()
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
