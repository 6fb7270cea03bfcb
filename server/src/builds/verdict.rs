//! What a build pod's status says of its step: still going, or how it
//! ended — with a reason that reads as plainly as a local step's ("exited
//! with code 2", "was stopped: out of memory (OOMKilled)", "image … cannot
//! be pulled"), known as soon as the status shows it.

use serde_json::Value;

use super::pod::{FETCH, STEP};

/// Waiting reasons that never resolve by themselves: the step fails at once.
const HOPELESS: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerError",
];

/// Where a build pod's step is.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not started: scheduling, pulling, fetching the workspace. The
    /// reason, when the status gives one worth saying.
    Waiting(Option<String>),
    /// The step's container runs.
    Running,
    /// The step's container ended with this code.
    Exited(i64),
    /// The step failed without its script saying so.
    Failed(String),
}

impl Verdict {
    pub fn ended(&self) -> bool {
        matches!(self, Verdict::Exited(_) | Verdict::Failed(_))
    }

    /// Whether the step's container has started (its log can be read).
    pub fn started(&self) -> bool {
        matches!(self, Verdict::Running | Verdict::Exited(_))
    }
}

fn statuses<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    pod["status"][field].as_array().into_iter().flatten()
}

/// Reads the pod (None: it is gone) as the step's verdict. `image` is the
/// step's, for the message.
pub fn of(pod: Option<&Value>) -> Verdict {
    let Some(pod) = pod else {
        return Verdict::Failed(
            "its pod is gone before the step ended (deleted, or its node was lost)".into(),
        );
    };
    let status = &pod["status"];
    let step = statuses(pod, "containerStatuses").find(|c| c["name"] == STEP);
    // The step's own ending comes first: it is what the script did.
    if let Some(terminated) = step
        .map(|c| &c["state"]["terminated"])
        .filter(|t| t.is_object())
    {
        let code = terminated["exitCode"].as_i64().unwrap_or(-1);
        return match terminated["reason"].as_str() {
            Some("OOMKilled") => Verdict::Failed(
                "was stopped: it used more than its memory limit (OOMKilled)".into(),
            ),
            _ if status["reason"] == "DeadlineExceeded" => Verdict::Failed(deadline()),
            _ if status["reason"] == "Evicted" => Verdict::Failed(evicted(status)),
            _ => Verdict::Exited(code),
        };
    }
    match status["reason"].as_str() {
        Some("DeadlineExceeded") => return Verdict::Failed(deadline()),
        Some("Evicted") => return Verdict::Failed(evicted(status)),
        Some("NodeLost") => return Verdict::Failed("its node was lost".into()),
        _ => {}
    }
    if status["phase"] == "Unknown" {
        return Verdict::Failed("its node stopped reporting (pod phase Unknown)".into());
    }
    let all = statuses(pod, "initContainerStatuses").chain(statuses(pod, "containerStatuses"));
    for container in all {
        let waiting = &container["state"]["waiting"];
        let reason = waiting["reason"].as_str().unwrap_or_default();
        if HOPELESS.contains(&reason) {
            let image = container["image"].as_str().unwrap_or_default();
            let message = waiting["message"].as_str().unwrap_or_default();
            return Verdict::Failed(format!(
                "image {image} cannot be pulled ({reason}{}{message})",
                if message.is_empty() { "" } else { ": " }
            ));
        }
    }
    if let Some(fetch) = statuses(pod, "initContainerStatuses").find(|c| c["name"] == FETCH) {
        let terminated = &fetch["state"]["terminated"];
        if terminated.is_object() && terminated["exitCode"] != 0 {
            return Verdict::Failed(format!(
                "the pod could not fetch its workspace (exit code {})",
                terminated["exitCode"]
            ));
        }
    }
    if status["phase"] == "Failed" {
        let why = status["message"].as_str().unwrap_or("the pod failed");
        return Verdict::Failed(why.to_string());
    }
    if step.is_some_and(|c| c["state"]["running"].is_object()) {
        return Verdict::Running;
    }
    let unscheduled = statuses(pod, "conditions")
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        .and_then(|c| c["message"].as_str())
        .map(|m| format!("waiting for a node: {m}"));
    Verdict::Waiting(unscheduled)
}

/// Whether the step's container has started (it has a log).
pub fn step_started(pod: &Value) -> bool {
    statuses(pod, "containerStatuses")
        .find(|c| c["name"] == STEP)
        .is_some_and(|c| c["state"]["running"].is_object() || c["state"]["terminated"].is_object())
}

/// Whether container `name` of the pod has ended.
pub fn ended_container(pod: &Value, name: &str) -> bool {
    statuses(pod, "containerStatuses")
        .find(|c| c["name"] == name)
        .is_some_and(|c| c["state"]["terminated"].is_object())
}

fn deadline() -> String {
    "timed out: its pod ran past its deadline (activeDeadlineSeconds)".into()
}

fn evicted(status: &Value) -> String {
    match status["message"].as_str() {
        Some(message) => format!("its pod was evicted: {message}"),
        None => "its pod was evicted".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: Value) -> Value {
        json!({ "status": status })
    }

    #[test]
    fn a_pod_status_reads_as_the_steps_ending() {
        let step = |state: Value| json!({ "containerStatuses": [{ "name": "step", "image": "rust:1", "state": state }] });
        assert_eq!(
            of(Some(&pod(step(json!({ "running": {} }))))),
            Verdict::Running
        );
        assert_eq!(
            of(Some(&pod(step(
                json!({ "terminated": { "exitCode": 2, "reason": "Error" } })
            )))),
            Verdict::Exited(2)
        );
        let oom = of(Some(&pod(step(
            json!({ "terminated": { "exitCode": 137, "reason": "OOMKilled" } }),
        ))));
        assert!(
            matches!(&oom, Verdict::Failed(why) if why.contains("OOMKilled")),
            "{oom:?}"
        );
        let pull = of(Some(&pod(step(
            json!({ "waiting": { "reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope:1\"" } }),
        ))));
        assert!(
            matches!(&pull, Verdict::Failed(why) if why.starts_with("image rust:1 cannot be pulled (ImagePullBackOff")),
            "{pull:?}"
        );
        let evicted = of(Some(&pod(
            json!({ "phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory." }),
        )));
        assert_eq!(
            evicted,
            Verdict::Failed("its pod was evicted: The node was low on resource: memory.".into())
        );
        let late = of(Some(&pod(
            json!({ "phase": "Failed", "reason": "DeadlineExceeded" }),
        )));
        assert!(matches!(&late, Verdict::Failed(why) if why.starts_with("timed out")));
        assert!(matches!(of(None), Verdict::Failed(why) if why.contains("gone")));
        let fetch = of(Some(&pod(
            json!({ "phase": "Failed", "initContainerStatuses": [{ "name": "fetch", "state": { "terminated": { "exitCode": 1 } } }] }),
        )));
        assert!(
            matches!(&fetch, Verdict::Failed(why) if why.contains("fetch its workspace")),
            "{fetch:?}"
        );
        let pending = of(Some(&pod(
            json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False", "message": "0/3 nodes are available" }] }),
        )));
        assert_eq!(
            pending,
            Verdict::Waiting(Some("waiting for a node: 0/3 nodes are available".into()))
        );
    }
}
