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
    /// Wait for a file, then upload a folder (as `workspace/`) and the
    /// step's outputs file (as `outputs`) as a tar archive (to the URL in
    /// `--url-file`).
    Collect {
        #[arg(long)]
        url_file: PathBuf,
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        after: PathBuf,
        #[arg(long)]
        outputs: Option<PathBuf>,
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
            outputs,
        } => collect(|| read(&url_file), &from, &after, outputs.as_deref()).await,
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

/// How long `collect` keeps offering the checkout while no Gantry takes
/// it: the replica that started the pod may be gone, and the one that
/// takes its run over re-attaches and writes its own URL into the pod's
/// Secret, which the kubelet brings into the pod within a minute or two.
const COLLECT_FOR: Duration = Duration::from_secs(10 * 60);

async fn collect(
    url: impl Fn() -> anyhow::Result<String>,
    from: &Path,
    after: &Path,
    outputs: Option<&Path>,
) -> anyhow::Result<()> {
    // The step's script writes `after` when it ends; if it never does (it
    // was killed), Gantry deletes the pod.
    while !after.exists() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = client()?;
    let deadline = tokio::time::Instant::now() + COLLECT_FOR;
    let mut wait = Duration::from_millis(250);
    loop {
        // Read again on every try: a Gantry that took the run over has put
        // its own URL there.
        // An unreadable file (the kubelet swapping it) is tried again too.
        let tried = match url() {
            Ok(url) => upload(&client, &url, from, outputs).await,
            Err(error) => Err(Upload::NotTaken(error)),
        };
        let error = match tried {
            Ok(()) => {
                eprintln!("gantry build-helper: workspace sent back");
                return Ok(());
            }
            Err(Upload::Refused(error)) => return Err(error),
            Err(Upload::NotTaken(error)) => error,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(error.context(format!(
                "no Gantry took the workspace in {} s",
                COLLECT_FOR.as_secs()
            )));
        }
        eprintln!(
            "gantry build-helper: the workspace was not taken ({error:#}); offering it again"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Why an upload did not go through.
enum Upload {
    /// No Gantry took it: unreachable, gone mid-way, or a URL no replica
    /// knows (yet). Offered again.
    NotTaken(anyhow::Error),
    /// Gantry read it and said no (too large, not an archive): final.
    Refused(anyhow::Error),
}

/// Packs `from` and streams it to `url` (packed anew on every try: a
/// streamed body cannot be sent twice).
async fn upload(
    client: &reqwest::Client,
    url: &str,
    from: &Path,
    outputs: Option<&Path>,
) -> Result<(), Upload> {
    let (writer, reader) = tokio::io::duplex(256 * 1024);
    let bridge = SyncIoBridge::new(writer);
    let (from, outputs) = (from.to_path_buf(), outputs.map(Path::to_path_buf));
    let packing = tokio::task::spawn_blocking(move || {
        let files: Vec<(&str, &Path)> = outputs.iter().map(|o| ("outputs", o.as_path())).collect();
        crate::builds::archive::pack_with_files(&[("workspace", &from)], &files, bridge).and_then(
            |mut bridge| {
                use std::io::Write;
                bridge.flush()
            },
        )
    });
    let body = reqwest::Body::wrap_stream(ReaderStream::new(reader));
    let response = client.put(url).body(body).send().await;
    let packed = packing.await;
    let response = response.map_err(|e| Upload::NotTaken(e.into()))?;
    let status = response.status();
    if status.is_success() {
        return packed
            .map_err(|e| Upload::Refused(e.into()))?
            .context("packing the workspace")
            .map_err(Upload::Refused);
    }
    let error = anyhow::anyhow!("uploading the workspace: {status}");
    // 404: a URL this replica does not know (it was revoked as the run
    // went elsewhere); 400/408: an upload that broke off (its ticket was
    // given back); 5xx: a replica stopping. Each may change.
    let again = [
        reqwest::StatusCode::NOT_FOUND,
        reqwest::StatusCode::BAD_REQUEST,
        reqwest::StatusCode::REQUEST_TIMEOUT,
    ];
    if again.contains(&status) || status.is_server_error() {
        Err(Upload::NotTaken(error))
    } else {
        Err(Upload::Refused(error))
    }
}
