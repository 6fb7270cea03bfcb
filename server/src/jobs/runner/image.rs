//! After the image step's build: Gantry pushes the OCI layout the sandbox
//! left (`builds::image`), tagged with the commit, with the credentials
//! only it holds, and records `image=<repository>@sha256:…` as the step's
//! output — what the deploy renders as `{{ image }}` and what promotion
//! carries to the next environment. The build's folder goes either way.

use std::sync::Arc;

use app::dto::StepState;
use tokio_util::sync::CancellationToken;

use super::command::StepResult;
use crate::builds::image::{Credentials, ImageError, Layout, Registry};
use crate::db::{self, runs::RunRow};
use crate::gitops::image::{ImageBuild, LAYOUT_DIR, WORK_DIR};
use crate::gitops::schema::CommandStep;
use crate::runs::logs::LogSink;
use crate::runs::workspace::Workspace;
use crate::secrets::mask::Masker;
use crate::state::App;

pub async fn push(
    app: &App,
    run: &RunRow,
    (step, build): (&CommandStep, &ImageBuild),
    workspace: &Workspace,
    sink: &mut LogSink<'_>,
    (result, cancel): (StepResult, &CancellationToken),
) -> Result<StepResult, super::RunError> {
    let work = workspace.home().join(WORK_DIR);
    let pushed = if result.state != StepState::Succeeded {
        Ok(result)
    } else if let Some(fork) = &run.from_fork {
        sink.note(&format!(
            "this build comes from the fork {fork}: its image is built, never pushed"
        ))
        .await?;
        Ok(result)
    } else {
        // The push has the step's timeout of its own: a registry that
        // trickles its answers does not hold the run for ever.
        let limit = std::time::Duration::from_secs(step.timeout_seconds);
        tokio::select! {
            pushed = tokio::time::timeout(limit, publish(app, run, (step, build), &work, sink)) => match pushed {
                Ok(pushed) => pushed.map(|()| result),
                Err(_) => Err(Failure::Push(format!(
                    "image not pushed: the push took longer than the step's timeout ({})",
                    crate::config::duration::HumanDuration(limit)
                ))),
            },
            () = cancel.cancelled() => {
                sink.note("cancelled while pushing the image").await?;
                return finish(&work, StepResult {
                    state: StepState::Cancelled,
                    ..StepResult::failed("cancelled".into())
                }).await;
            }
        }
    };
    let result = match pushed {
        Ok(result) => result,
        Err(Failure::Run(error)) => {
            crate::runs::workspace::remove_any(&work).await;
            return Err(error);
        }
        Err(Failure::Push(why)) => {
            sink.note(&why).await?;
            // The build succeeded: a failed push has no exit code.
            StepResult::failed(why)
        }
    };
    finish(&work, result).await
}

async fn finish(work: &std::path::Path, result: StepResult) -> Result<StepResult, super::RunError> {
    crate::runs::workspace::remove_any(work).await;
    Ok(result)
}

enum Failure {
    Run(super::RunError),
    /// Why the image was not pushed, for the step's log and error.
    Push(String),
}

impl<E: Into<super::RunError>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::Run(error.into())
    }
}

async fn publish(
    app: &App,
    run: &RunRow,
    (step, build): (&CommandStep, &ImageBuild),
    work: &std::path::Path,
    sink: &mut LogSink<'_>,
) -> Result<(), Failure> {
    let credentials = match &build.credentials {
        Some(name) => {
            let values = app
                .secrets()
                .resolve(run.app_id, std::slice::from_ref(name))
                .await
                .map_err(|e| Failure::Push(e.to_string()))?;
            let value = values
                .into_iter()
                .next()
                .map(|(_, v)| v)
                .unwrap_or_default();
            let parsed = Credentials::parse(&value).ok_or_else(|| {
                Failure::Push(format!(
                    "the secret {name} (image.credentials) is not user:password"
                ))
            })?;
            // The pair, and the password alone, as a registry might echo it.
            let masker = Masker::new([value.as_str(), parsed.password.as_str()]);
            Some((parsed, masker))
        }
        None => None,
    };
    // Whatever a registry answers is shown masked with the credentials.
    let masker = credentials
        .as_ref()
        .map(|(_, masker)| masker.clone())
        .unwrap_or_default();
    let refused =
        |error: ImageError| Failure::Push(masker.mask(&format!("image not pushed: {error}")));

    let home = work
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let (layout, image) = tokio::task::spawn_blocking(move || {
        let layout = Layout::open(&home, &format!("{WORK_DIR}/{LAYOUT_DIR}"))?;
        let image = layout.image()?;
        Ok::<_, ImageError>((Arc::new(layout), image))
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(refused)?;

    let repository = &build.repository;
    let registry = Registry::connect(repository, credentials.as_ref().map(|(c, _)| c))
        .await
        .map_err(refused)?;
    let mut sent = 0;
    for blob in &image.blobs {
        let file = {
            let layout = Arc::clone(&layout);
            let blob = blob.clone();
            tokio::task::spawn_blocking(move || layout.blob(&blob))
                .await
                .map_err(std::io::Error::other)?
                .map_err(refused)?
        };
        if registry.push_blob(blob, file).await.map_err(refused)? {
            sent += 1;
        }
    }
    let tag = &run.commit_sha;
    registry.push_manifest(&image, tag).await.map_err(refused)?;
    let reference = format!("{repository}@{}", image.digest);
    sink.note(&format!(
        "pushed {repository}:{tag} ({} of {} blobs sent, {} bytes in all): {reference}",
        sent,
        image.blobs.len(),
        image.total_bytes()
    ))
    .await?;
    db::artifacts::record_outputs(
        app.db.pool(),
        (run.id, run.attempt, &app.replica.id),
        &step.name,
        &[("image".to_string(), reference)],
    )
    .await?;
    sink.note("outputs: image").await?;
    Ok(())
}
