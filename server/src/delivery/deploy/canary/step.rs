//! An analysis step: a command run against the canary alone at each
//! check, sandboxed as a step is (a uid of its own, an empty working
//! folder, its own network), reaching the canary at `$CANARY_URL` —
//! through its relay to the preview socket, whose `/canary/…` route goes
//! to the canary process only and is not counted in its traffic. Exit 0
//! passes; another code fails; a step that cannot start, or does not end
//! within its timeout, says nothing of the canary: inconclusive.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::analysis::Check;
use crate::delivery::deploy::lifecycle::Subject;
use crate::delivery::deploy::local::LocalRuntime;
use crate::gitops::strategy::AnalysisStep;
use crate::sandbox::{Limits, Mount, Network, Spec};

/// What a step may use: enough for curl, a script or a small test runner.
const LIMITS: Limits = Limits {
    memory_bytes: 512 << 20,
    pids: 256,
    cpu_millis: 1000,
    tmp_bytes: 64 << 20,
};
/// How much of its output is kept (its end), for the log.
const KEPT_OUTPUT: usize = 4096;

/// Runs the step once: its verdict and what it said, for the log.
pub async fn check(
    local: &LocalRuntime,
    subject: &Subject<'_>,
    step: &AnalysisStep,
    cancel: &CancellationToken,
) -> (Check, String) {
    let inconclusive = |why: String| (Check::Inconclusive(why.clone()), format!("step: {why}"));
    let sandbox = local.sandbox();
    let Some(port) = sandbox.relay_port() else {
        return inconclusive(
            "no step reaches the canary: environments are not served on this host's loopback (server.public_url)".into(),
        );
    };
    let url = format!(
        "http://localhost:{port}/canary/{}/{}/",
        subject.app, subject.environment
    );
    let scratch = local.scratch_root().join(format!(
        ".analysis-{}-{}",
        subject.environment_id,
        std::process::id()
    ));
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    if let Err(error) = tokio::fs::create_dir_all(&scratch).await {
        return inconclusive(format!("cannot make its folder: {error}"));
    }
    let user = sandbox.lease_user();
    let ids = user.as_ref().map(crate::sandbox::users::UserLease::ids);
    let judged = async {
        sandbox
            .hand_over(&scratch, ids)
            .await
            .map_err(|e| format!("cannot make its folder: {e}"))?;
        let cwd = Mount::writable(&scratch, "/work");
        let spec = Spec {
            script: step.run.clone(),
            mounts: vec![cwd.clone()],
            cwd,
            env: vec![
                ("CANARY_URL".into(), url.clone()),
                ("GANTRY_APP".into(), subject.app.to_string()),
                ("GANTRY_ENVIRONMENT".into(), subject.environment.to_string()),
                ("HOME".into(), "/work".into()),
            ],
            limits: LIMITS,
            network: Network::Isolated,
            publish: None,
            hosts: Vec::new(),
            user: ids,
            builder: false,
            stdout: std::process::Stdio::piped(),
            stderr: std::process::Stdio::piped(),
        };
        let mut child = sandbox
            .spawn(spec)
            .await
            .map_err(|e| format!("cannot start: {e}"))?;
        let (stdout, stderr) = (child.child.stdout.take(), child.child.stderr.take());
        let ran = async {
            let (out, err) = tokio::join!(tail(stdout), tail(stderr));
            (child.wait().await, format!("{out}{err}"))
        };
        let limit = Duration::from_secs(step.timeout_seconds);
        let outcome = tokio::select! {
            ran = tokio::time::timeout(limit, ran) => ran.map_err(|_| format!("it did not end within {}s", step.timeout_seconds)),
            () = cancel.cancelled() => Err("the run was cancelled".to_string()),
        };
        let verdict = match outcome {
            Ok((Ok(exit), output)) => {
                let said = output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
                match exit.problem(&LIMITS) {
                    None => Ok((Check::Success, said)),
                    Some(problem) => Ok((Check::Failure(format!("the step {problem}")), said)),
                }
            }
            Ok((Err(error), _)) => Err(format!("cannot wait for it: {error}")),
            Err(why) => {
                child.terminate(Duration::from_secs(2)).await;
                Err(why)
            }
        };
        child.finish().await;
        verdict
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    match judged {
        Ok((check, said)) => {
            let verdict = match &check {
                Check::Success => "passed".to_string(),
                Check::Failure(why) | Check::Inconclusive(why) => why.clone(),
            };
            let said = if said.is_empty() {
                String::new()
            } else {
                format!(" — {said}")
            };
            (check, format!("step {verdict}{said}"))
        }
        Err(why) => inconclusive(why),
    }
}

/// What a pipe says until it closes, keeping the end only.
async fn tail(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buffer = [0_u8; 4096];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > KEPT_OUTPUT {
            kept.drain(..kept.len() - KEPT_OUTPUT);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
