//! One command step as a pod: its workspace packed and offered once, the
//! pod (and its secrets, owned by it) created, its log followed into the
//! step's log, its ending read from its status, the checkout taken back,
//! and the pod deleted — and gone — before the step is over, whatever
//! happened (a cancel, a timeout, a failure).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::BuildError;
use super::archive::{self, Archives};
use super::follow::{self, Lines, Resume};
use super::pod::{self, PodPlan};
use super::reattach;
use super::verdict::{self, Verdict};
use crate::error::Rejected;
use crate::git::ExportLimits;
use crate::gitops::builds::{BuildPod, KubernetesExecutor};
use crate::gitops::schema::CommandStep;
use crate::runs::logs::{LineSplitter, LogSink};
use crate::runs::workspace::Workspace;

/// How long the checkout may take to come back once the script ended.
const COLLECT: Duration = Duration::from_secs(120);
/// How long a deleted pod may take to go.
const GONE: Duration = Duration::from_secs(60);
/// How long one question to the build cluster may take (its client retries
/// an API server that fails, with backoff).
const POLL: Duration = Duration::from_secs(5);

/// What running steps as pods needs of Gantry.
pub struct Builds<'a> {
    pub clusters: crate::clusters::Registry<'a>,
    pub archives: &'a Archives,
    pub helper_image: &'a str,
    /// Where pods reach this replica.
    pub callback: &'a url::Url,
    /// The installation's tag, on every pod it makes.
    pub instance: &'a str,
    pub limits: ExportLimits,
    /// Where steps run when nothing in the pipeline repo says.
    pub fallback: crate::gitops::builds::Executor,
    /// How long a build cluster may not answer before the step fails.
    pub unreachable_after: Duration,
}

/// The step to run.
pub struct BuildStep<'a> {
    pub app: &'a str,
    pub run_id: i64,
    pub attempt: i64,
    pub step_id: i64,
    /// Its place in the pipeline (in its pod's name).
    pub position: usize,
    pub step: &'a CommandStep,
    pub executor: &'a KubernetesExecutor,
    pub settings: &'a BuildPod,
    pub image: &'a str,
    pub env: &'a [(String, String)],
    /// What goes into the pod's Secret: the step's listed secrets only.
    pub secrets: &'a [(String, String)],
    pub workspace: &'a Workspace,
    /// The pod an earlier attempt started for this step, followed on
    /// instead of a new one; with the lines of its log already stored.
    pub reattach: Option<Reattach<'a>>,
    /// Set when this replica lost the run to another: its pod is left
    /// running for the attempt that took the run over.
    pub lost: &'a AtomicBool,
}

/// A pod to follow on (see `reattach`).
#[derive(Clone, Copy)]
pub struct Reattach<'a> {
    pub pod: &'a str,
    /// Its log lines the step's log already holds.
    pub logged: usize,
}

/// How a step's pod ended.
#[derive(Debug, PartialEq)]
pub enum PodEnding {
    /// The script ended with this code (and the checkout came back).
    Exited(i64),
    /// The step failed without its script saying so (the reason reads
    /// after "the step").
    Failed(String),
    TimedOut,
    Cancelled,
}

/// The pods of a build namespace.
pub(super) fn pods(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
    )
}

fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Runs `step` as a pod, its output into `sink` (or follows on the pod
/// an earlier attempt started, when `step.reattach` names one).
pub async fn run(
    builds: &Builds<'_>,
    step: &BuildStep<'_>,
    sink: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<PodEnding, BuildError> {
    let executor = step.executor;
    let client = builds.clusters.client(&executor.cluster).await?;
    let root = &step.workspace.root;
    let offered = root.join(format!("fetch-{}.tar", step.step_id));
    let returned = root.join(format!("upload-{}.tar", step.step_id));
    let (upload_token, uploaded) =
        builds
            .archives
            .upload(step.run_id, step.step_id, returned.clone())?;
    let upload_url = url(builds, step, &upload_token)?;
    let api = pods(&client, &executor.namespace);
    let started = match step.reattach {
        Some(earlier) => {
            sink.note(&format!(
                "follows on pod {} in namespace {} of cluster {}, started by an earlier attempt; its log goes on below",
                earlier.pod, executor.namespace, executor.cluster
            ))
            .await?;
            reattach::take(&client, &executor.namespace, earlier.pod, &upload_url)
                .await
                .map(|()| (earlier.pod.to_string(), earlier.logged))
                .map_err(|error| BuildError::Create {
                    cluster: executor.cluster.clone(),
                    namespace: executor.namespace.clone(),
                    message: format!(
                        "the pod {} of an earlier attempt could not be taken over: {}",
                        earlier.pod,
                        api_message(&error)
                    ),
                })
        }
        None => start(builds, step, &client, &offered, &upload_url, sink)
            .await
            .map(|name| (name, 0)),
    };
    let (name, logged) = match started {
        Ok(started) => started,
        Err(error) => {
            cleanup_tickets(builds, step, &[&offered, &returned]).await;
            return Err(error);
        }
    };
    let ending = match supervise(
        &client,
        step,
        &name,
        logged,
        sink,
        cancel,
        builds.unreachable_after,
    )
    .await
    {
        Ok(PodEnding::Exited(code)) if !step.lost.load(Ordering::Relaxed) => {
            take_back(builds, step, &api, &name, uploaded, &returned, sink)
                .await
                .map(|taken| match taken {
                    None => PodEnding::Exited(code),
                    Some(why) => PodEnding::Failed(why),
                })
        }
        other => other,
    };
    // The run went to another replica, whose attempt follows this pod on:
    // the pod stays, and so do the step's tickets (the step is the same
    // row for every attempt; the run's end revokes them).
    if step.lost.load(Ordering::Relaxed) {
        for file in [&offered, &returned] {
            let _ = tokio::fs::remove_file(file).await;
        }
        sink.note(&format!(
            "this replica lost the run; its pod {name} is left for the attempt that took it over"
        ))
        .await?;
        return Ok(PodEnding::Cancelled);
    }
    cleanup_tickets(builds, step, &[&offered, &returned]).await;
    // Whatever else happened, the pod goes (and its secret with it)
    // before the step is over.
    if let Err(why) = delete(&api, &name).await {
        sink.note(&format!(
            "the pod {name} could not be deleted: {why}; the clean-up loop will collect it"
        ))
        .await?;
    }
    ending
}

/// The URL of the step's workspace with `token`.
fn url(builds: &Builds<'_>, step: &BuildStep<'_>, token: &str) -> Result<String, BuildError> {
    builds
        .callback
        .join(&format!(
            "builds/v1/runs/{}/steps/{}/workspace?token={token}",
            step.run_id, step.step_id
        ))
        .map(String::from)
        .map_err(|e| BuildError::Io(std::io::Error::other(e)))
}

/// Packs and offers the workspace, and creates the step's pod and its
/// Secret: the pod's name.
async fn start(
    builds: &Builds<'_>,
    step: &BuildStep<'_>,
    client: &kube::Client,
    offered: &std::path::Path,
    upload_url: &str,
    sink: &mut LogSink<'_>,
) -> Result<String, BuildError> {
    let executor = step.executor;
    {
        let (app, pipeline, offered) = (
            step.workspace.app(),
            step.workspace.pipeline(),
            offered.to_path_buf(),
        );
        tokio::task::spawn_blocking(move || {
            archive::pack(&[("workspace", &app), ("pipeline", &pipeline)], &offered)
        })
        .await
        .map_err(std::io::Error::other)??;
    }
    let fetch_token = builds
        .archives
        .fetch(step.run_id, step.step_id, offered.to_path_buf())?;
    let name = pod::name(step.app, step.run_id, step.attempt, step.position);
    let secret = pod::secret_name(&name);
    let secret_names: Vec<String> = step.secrets.iter().map(|(key, _)| key.clone()).collect();
    let urls = [
        (pod::FETCH_KEY.to_string(), url(builds, step, &fetch_token)?),
        (pod::UPLOAD_KEY.to_string(), upload_url.to_string()),
    ];
    let manifest = pod::manifest(&PodPlan {
        name: &name,
        namespace: &executor.namespace,
        app: step.app,
        run_id: step.run_id,
        attempt: step.attempt,
        step: &step.step.name,
        position: step.position,
        instance: builds.instance,
        image: step.image,
        helper_image: builds.helper_image,
        script: &step.step.run,
        env: step.env,
        secret: &secret,
        secret_names: &secret_names,
        resources: &step.step.resources,
        timeout_seconds: step.step.timeout_seconds,
        settings: step.settings,
    });
    sink.note(&format!(
        "runs as pod {name} in namespace {} of cluster {}, image {}",
        executor.namespace, executor.cluster, step.image
    ))
    .await?;
    let create_failed = |error: &kube::Error| BuildError::Create {
        cluster: executor.cluster.clone(),
        namespace: executor.namespace.clone(),
        message: api_message(error),
    };
    let object: DynamicObject =
        serde_json::from_value(manifest).map_err(|e| BuildError::Io(std::io::Error::other(e)))?;
    let created = pods(client, &executor.namespace)
        .create(&PostParams::default(), &object)
        .await
        .map_err(|e| create_failed(&e))?;
    let uid = created.metadata.uid.clone().unwrap_or_default();
    if let Err(error) = create_secret(client, step, &name, &uid, &secret, &urls).await {
        // The pod waits for its Secret forever: it goes.
        let _ = delete(&pods(client, &executor.namespace), &name).await;
        return Err(create_failed(&error));
    }
    Ok(name)
}

async fn cleanup_tickets(builds: &Builds<'_>, step: &BuildStep<'_>, files: &[&std::path::Path]) {
    builds.archives.revoke_step(step.step_id);
    for file in files {
        let _ = tokio::fs::remove_file(file).await;
    }
}

/// The step's secrets and its workspace URLs, in a Secret the pod owns
/// (deleted with it).
async fn create_secret(
    client: &kube::Client,
    step: &BuildStep<'_>,
    pod_name: &str,
    uid: &str,
    name: &str,
    urls: &[(String, String)],
) -> Result<(), kube::Error> {
    let engine = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = step
        .secrets
        .iter()
        .chain(urls)
        .map(|(key, value)| (key.clone(), json!(engine.encode(value))))
        .collect();
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": step.executor.namespace,
            "labels": { pod::MANAGED_BY.0: pod::MANAGED_BY.1, pod::RUN_LABEL: step.run_id.to_string() },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": uid,
                                  "blockOwnerDeletion": true }],
        },
        "data": data,
    });
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &step.executor.namespace,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let object: DynamicObject = serde_json::from_value(secret).map_err(kube::Error::SerdeError)?;
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
}

/// Follows the pod until its step ended (or timed out, or was cancelled):
/// its log into `sink`, its status read every half second.
async fn supervise(
    client: &kube::Client,
    step: &BuildStep<'_>,
    name: &str,
    mut logged: usize,
    sink: &mut LogSink<'_>,
    cancel: &CancellationToken,
    unreachable_after: Duration,
) -> Result<PodEnding, BuildError> {
    let namespace = &step.executor.namespace;
    let api = pods(client, namespace);
    let mut resume = Resume::default();
    let mut lines: Option<Lines> = None;
    let mut splitter = LineSplitter::masked_by(sink.masker());
    let mut verdict = Verdict::Waiting(None);
    let mut started = false;
    // Once the step ended: its log read to its end, or given up on.
    let (mut drained, mut reopened_after_end) = (false, 0);
    let mut said: Option<String> = None;
    let mut unanswered: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let timeout = tokio::time::sleep(Duration::from_secs(step.step.timeout_seconds));
    tokio::pin!(timeout);
    let ending = loop {
        tokio::select! {
            line = next(&mut lines), if lines.is_some() => match line {
                Some(Ok(bytes)) => {
                    if let Some(text) = resume.accept(&bytes) {
                        let mut text = text.to_vec();
                        text.push(b'\n');
                        for line in splitter.feed(&text) {
                            // Stored by the attempt this one took over from.
                            if logged > 0 {
                                logged -= 1;
                                continue;
                            }
                            sink.line(&line).await?;
                        }
                    }
                }
                // Dropped (an error) or ended: reopened on the next tick
                // unless the step is over and its log was read to the end.
                end => {
                    lines = None;
                    if verdict.ended() && end.is_none() {
                        drained = true;
                    }
                }
            },
            _ = tick.tick() => {
                sink.flush().await?;
                // The client retries a failing API server with backoff:
                // bounded here, so a cancel or a timeout is not kept
                // waiting behind it.
                let asked = tokio::time::Instant::now();
                let polled = tokio::time::timeout(POLL, api.get_opt(name))
                    .await
                    .unwrap_or_else(|_| Err(kube::Error::Service(format!("no answer in {} s", POLL.as_secs()).into())));
                match polled {
                    Ok(pod) => {
                        unanswered = None;
                        let pod = pod.map(|p| serde_json::to_value(p).unwrap_or_default());
                        verdict = verdict::of(pod.as_ref());
                        started |= pod.as_ref().is_some_and(verdict::step_started);
                    }
                    Err(error) => {
                        let since = *unanswered.get_or_insert(asked);
                        if since.elapsed() >= unreachable_after {
                            flush_rest(&mut splitter, sink).await?;
                            return Err(BuildError::Unreachable {
                                cluster: step.executor.cluster.clone(),
                                seconds: since.elapsed().as_secs(),
                                message: api_message(&error),
                            });
                        }
                        continue;
                    }
                }
                if let Verdict::Waiting(Some(why)) = &verdict
                    && said.as_ref() != Some(why)
                {
                    sink.note(why).await?;
                    said = Some(why.clone());
                }
                if verdict.ended() && (drained || !started || reopened_after_end >= 5) {
                    break verdict.clone();
                }
                if lines.is_none() && started {
                    if verdict.ended() {
                        reopened_after_end += 1;
                    }
                    resume.reconnect();
                    let since = resume.since();
                    let opened = follow::open(client, namespace, name, pod::STEP, since.as_deref());
                    if let Ok(Ok(stream)) = tokio::time::timeout(POLL, opened).await {
                        lines = Some(stream);
                    }
                }
            }
            () = &mut timeout => {
                flush_rest(&mut splitter, sink).await?;
                return Ok(PodEnding::TimedOut);
            }
            () = cancel.cancelled() => {
                // A line cut short stays unwritten when the run went
                // elsewhere: the attempt that follows the pod on writes it
                // whole.
                if !step.lost.load(Ordering::Relaxed) {
                    flush_rest(&mut splitter, sink).await?;
                }
                return Ok(PodEnding::Cancelled);
            }
        }
    };
    flush_rest(&mut splitter, sink).await?;
    Ok(match ending {
        Verdict::Exited(code) => PodEnding::Exited(code),
        Verdict::Failed(why) => PodEnding::Failed(why),
        // `ended()` was true: not reached.
        Verdict::Waiting(_) | Verdict::Running => PodEnding::Failed("ended unexpectedly".into()),
    })
}

async fn next(lines: &mut Option<Lines>) -> Option<std::io::Result<Vec<u8>>> {
    match lines {
        Some(lines) => futures_util::StreamExt::next(lines).await,
        None => std::future::pending().await,
    }
}

async fn flush_rest(splitter: &mut LineSplitter, sink: &mut LogSink<'_>) -> Result<(), BuildError> {
    if let Some(rest) = splitter.rest() {
        sink.line(&rest).await?;
    }
    sink.flush().await?;
    Ok(())
}

/// Takes the checkout back from the pod once its script ended: waits for
/// the upload (or for `collect` to end without one), unpacks it within the
/// limits and puts it in place. None when it came back; else why not.
async fn take_back(
    builds: &Builds<'_>,
    step: &BuildStep<'_>,
    api: &Api<DynamicObject>,
    name: &str,
    uploaded: archive::Uploaded,
    file: &std::path::Path,
    sink: &mut LogSink<'_>,
) -> Result<Option<String>, BuildError> {
    let collect_ended = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ended = match api.get_opt(name).await {
                Ok(Some(pod)) => serde_json::to_value(pod)
                    .ok()
                    .is_some_and(|pod| verdict::ended_container(&pod, pod::COLLECT)),
                Ok(None) => true,
                Err(_) => false,
            };
            if ended {
                // Its upload may be a moment behind its exit.
                tokio::time::sleep(Duration::from_secs(1)).await;
                return;
            }
        }
    };
    let came = tokio::select! {
        came = uploaded.wait() => came,
        () = collect_ended => false,
        () = tokio::time::sleep(COLLECT) => false,
    };
    if !came {
        return Ok(Some(
            "ended, but its workspace did not come back from the pod".to_string(),
        ));
    }
    let next = step.workspace.root.join("app.next");
    let _ = tokio::fs::remove_dir_all(&next).await;
    let (from, into, limits) = (file.to_path_buf(), next.clone(), builds.limits);
    let unpacked = tokio::task::spawn_blocking(move || archive::unpack(&from, &into, &limits))
        .await
        .map_err(std::io::Error::other)?;
    if let Err(error) = unpacked {
        let _ = tokio::fs::remove_dir_all(&next).await;
        sink.note(&error.to_string()).await?;
        return Ok(Some(error.to_string()));
    }
    // `workspace/` is the checkout (a real folder, never a link out), and
    // `outputs` the step's outputs file; nothing else is kept.
    let checkout = next.join("workspace");
    match tokio::fs::symlink_metadata(&checkout).await {
        Ok(metadata) if metadata.is_dir() => {}
        Err(_) => tokio::fs::create_dir_all(&checkout).await?,
        Ok(_) => {
            let _ = tokio::fs::remove_dir_all(&next).await;
            let why = "the workspace that came back is not a folder".to_string();
            sink.note(&why).await?;
            return Ok(Some(why));
        }
    }
    let outputs = step.workspace.outputs();
    crate::runs::workspace::remove_any(&outputs).await;
    let _ = tokio::fs::rename(next.join("outputs"), &outputs).await;
    let app = step.workspace.app();
    let old = step.workspace.root.join("app.old");
    let _ = tokio::fs::remove_dir_all(&old).await;
    tokio::fs::rename(&app, &old).await?;
    tokio::fs::rename(&checkout, &app).await?;
    let _ = tokio::fs::remove_dir_all(&old).await;
    let _ = tokio::fs::remove_dir_all(&next).await;
    Ok(None)
}

/// Deletes the pod and waits until it is gone.
async fn delete(api: &Api<DynamicObject>, name: &str) -> Result<(), Rejected> {
    match tokio::time::timeout(POLL, api.delete(name, &DeleteParams::default())).await {
        Ok(Ok(_)) => {}
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => return Ok(()),
        Ok(Err(error)) => return Err(api_message(&error).into()),
        Err(_) => return Err(format!("the cluster did not answer in {} s", POLL.as_secs()).into()),
    }
    let deadline = tokio::time::Instant::now() + GONE;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(POLL, api.get_opt(name)).await {
            Ok(Ok(None)) => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Err(format!("it was still there after {} s", GONE.as_secs()).into())
}
