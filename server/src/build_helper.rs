//! `gantry build-helper`: what runs inside a build pod beside the step,
//! from Gantry's own image. `fetch` downloads the step's workspace from
//! its one-time URL and unpacks it; `collect` waits until the step's
//! script has ended and uploads the checkout to its one-time URL. Neither
//! reads the configuration, the database or a credential: the URL is all
//! they have, and it is good once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::TryStreamExt;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

#[derive(Debug, clap::Subcommand)]
pub enum BuildHelper {
    /// Download the workspace (from the URL in `--url-file`) and unpack it
    /// into a folder.
    Fetch {
        #[arg(long)]
        url_file: PathBuf,
        #[arg(long)]
        into: PathBuf,
    },
    /// Wait for a file, then upload a folder as a tar archive (to the URL
    /// in `--url-file`).
    Collect {
        #[arg(long)]
        url_file: PathBuf,
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        after: PathBuf,
    },
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

/// Sends the request built by `request`, retrying only what never reached
/// Gantry (a refused connection while its Service settles): a reached
/// one-time URL is not asked twice.
async fn send(request: impl Fn() -> reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
    let mut wait = Duration::from_millis(250);
    for _ in 0..8 {
        match request().send().await {
            Err(error) if error.is_connect() => {
                eprintln!("gantry build-helper: cannot reach Gantry yet ({error}); retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return Ok(other?.error_for_status()?),
        }
    }
    anyhow::bail!("Gantry did not answer")
}

pub async fn run(command: BuildHelper) -> anyhow::Result<()> {
    // The URL is a file of the pod's Secret: never an argument, which
    // anyone reading the pod's spec would see.
    let read = |file: &Path| {
        std::fs::read_to_string(file)
            .map(|url| url.trim().to_string())
            .with_context(|| format!("reading {}", file.display()))
    };
    match command {
        BuildHelper::Fetch { url_file, into } => fetch(&read(&url_file)?, &into).await,
        BuildHelper::Collect {
            url_file,
            from,
            after,
        } => collect(&read(&url_file)?, &from, &after).await,
    }
}

async fn fetch(url: &str, into: &Path) -> anyhow::Result<()> {
    let client = client()?;
    let response = send(|| client.get(url))
        .await
        .context("downloading the workspace")?;
    let stream = response.bytes_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let into = into.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(false);
        archive.set_preserve_mtime(true);
        archive.unpack(&into)
    })
    .await?
    .context("unpacking the workspace")?;
    eprintln!("gantry build-helper: workspace fetched");
    Ok(())
}

async fn collect(url: &str, from: &Path, after: &Path) -> anyhow::Result<()> {
    // The step's script writes `after` when it ends; if it never does (it
    // was killed), Gantry deletes the pod.
    while !after.exists() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = client()?;
    let (writer, reader) = tokio::io::duplex(256 * 1024);
    let bridge = SyncIoBridge::new(writer);
    let from = from.to_path_buf();
    let packing = tokio::task::spawn_blocking(move || {
        crate::builds::archive::pack_into(&[("", &from)], bridge).and_then(|mut bridge| {
            use std::io::Write;
            bridge.flush()
        })
    });
    let body = reqwest::Body::wrap_stream(ReaderStream::new(reader));
    // A streamed body cannot be sent twice: no retry here.
    let response = client.put(url).body(body).send().await;
    packing.await?.context("packing the workspace")?;
    response?
        .error_for_status()
        .context("uploading the workspace")?;
    eprintln!("gantry build-helper: workspace sent back");
    Ok(())
}
