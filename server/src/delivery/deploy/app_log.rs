//! A local app's output, kept in its log file beside its build. The app is
//! a developer's: it may print without end, or a line of gigabytes. So the
//! log is capped: past its limit the file is rotated (one generation, the
//! `.1` file), at a line's end — a line longer than the whole limit is cut
//! and its rest dropped with a note — so the app's output costs at most
//! twice the limit on disk, and a new file always begins at a line. Its
//! tail, for error messages, is read from the end, never the whole file.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::secrets::mask::Masker;

/// How much of the end of the log a tail reads.
const TAIL_BYTES: u64 = 64 * 1024;
/// How long a line of a tail may be (the rest is elided).
const TAIL_LINE_CHARS: usize = 2_000;

/// The rotated generation of `log`.
pub fn previous(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The log being written, and how much it holds.
struct Writer {
    path: PathBuf,
    file: tokio::fs::File,
    written: u64,
    limit: u64,
    /// Dropping the rest of an overlong line (until its newline).
    dropping: bool,
}

impl Writer {
    async fn open(path: &Path, limit: u64) -> std::io::Result<Writer> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let written = file.metadata().await?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            written,
            limit,
            dropping: false,
        })
    }

    async fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush().await?;
        tokio::fs::rename(&self.path, previous(&self.path)).await?;
        self.file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        self.written = 0;
        Ok(())
    }

    async fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.dropping {
                match bytes.iter().position(|b| *b == b'\n') {
                    Some(end) => {
                        self.dropping = false;
                        bytes = &bytes[end + 1..];
                    }
                    None => return Ok(()),
                }
                continue;
            }
            let room = self.limit.saturating_sub(self.written);
            if (bytes.len() as u64) <= room {
                self.file.write_all(bytes).await?;
                self.written += bytes.len() as u64;
                return Ok(());
            }
            // Full: write up to the last line end that fits, then rotate.
            let fits = &bytes[..usize::try_from(room).unwrap_or(usize::MAX)];
            match fits.iter().rposition(|b| *b == b'\n') {
                Some(end) => {
                    self.file.write_all(&bytes[..=end]).await?;
                    bytes = &bytes[end + 1..];
                    self.rotate().await?;
                }
                None if self.written > 0 => self.rotate().await?,
                None => {
                    // One line longer than the whole limit: its start, a
                    // note, and the rest dropped.
                    self.file.write_all(fits).await?;
                    self.file
                        .write_all(b"\n[gantry: this line was longer than the log's limit; the rest of it was dropped]\n")
                        .await?;
                    self.rotate().await?;
                    self.dropping = true;
                    bytes = &bytes[fits.len()..];
                }
            }
        }
        Ok(())
    }
}

/// Copies an app's stdout and stderr into its log at `path`, at most
/// `limit` bytes a file, until both close (the app ended).
pub async fn keep<O, E>(stdout: O, stderr: E, path: PathBuf, limit: u64)
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let mut writer = match Writer::open(&path, limit.max(1)).await {
        Ok(writer) => writer,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot open an app's log; its output is dropped");
            drain(stdout, stderr).await;
            return;
        }
    };
    let (mut out, mut err) = (stdout, stderr);
    let (mut out_buf, mut err_buf) = (vec![0_u8; 16 * 1024], vec![0_u8; 16 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let chunk = tokio::select! {
            read = out.read(&mut out_buf), if out_open => match read {
                Ok(0) | Err(_) => { out_open = false; None }
                Ok(n) => Some(&out_buf[..n]),
            },
            read = err.read(&mut err_buf), if err_open => match read {
                Ok(0) | Err(_) => { err_open = false; None }
                Ok(n) => Some(&err_buf[..n]),
            },
        };
        if let Some(chunk) = chunk
            && let Err(error) = writer.write(chunk).await
        {
            tracing::warn!(path = %path.display(), %error, "writing an app's log failed; the rest is dropped");
            drain(out, err).await;
            return;
        }
    }
    let _ = writer.file.flush().await;
}

/// Reads what is left, so the app never blocks on a pipe nobody reads.
async fn drain<O: AsyncRead + Unpin, E: AsyncRead + Unpin>(mut out: O, mut err: E) {
    let (mut first, mut second) = (tokio::io::sink(), tokio::io::sink());
    let _ = tokio::join!(
        tokio::io::copy(&mut out, &mut first),
        tokio::io::copy(&mut err, &mut second)
    );
}

/// The last `lines` lines of the log, masked: read from its last 64 KiB
/// (a line begun before them is not shown), each line at most 2,000
/// characters.
pub async fn tail(path: &Path, lines: usize, masker: &Masker) -> String {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return String::new();
    };
    let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let from = length.saturating_sub(TAIL_BYTES);
    if file.seek(std::io::SeekFrom::Start(from)).await.is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if (&mut file)
        .take(TAIL_BYTES)
        .read_to_end(&mut bytes)
        .await
        .is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    if from > 0 && !all.is_empty() {
        // Begun before what was read: a fragment, perhaps of a secret.
        all.remove(0);
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| {
            let masked = masker.mask(line);
            match masked.char_indices().nth(TAIL_LINE_CHARS) {
                Some((at, _)) => format!("{}…", &masked[..at]),
                None => masked,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn write_all(path: &Path, limit: u64, chunks: &[&[u8]]) {
        let joined: Vec<u8> = chunks.concat();
        keep(&joined[..], &b""[..], path.to_path_buf(), limit).await;
    }

    #[tokio::test]
    async fn an_app_printing_without_end_costs_at_most_twice_the_limit() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("app.log");
        let line = b"a line of output, printed again and again\n";
        let flood: Vec<u8> = line.repeat(10_000);
        write_all(&log, 4096, &[&flood]).await;
        let current = std::fs::metadata(&log).expect("log").len();
        let rotated = std::fs::metadata(previous(&log)).expect("rotated").len();
        assert!(current <= 4096 && rotated <= 4096, "{current} {rotated}");
        // Each file begins at a line.
        for file in [&log, &previous(&log)] {
            let text = std::fs::read_to_string(file).expect("text");
            assert!(text.starts_with("a line"), "{text:.60}");
        }
    }

    #[tokio::test]
    async fn a_line_longer_than_the_limit_is_cut_and_its_rest_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("app.log");
        let huge = vec![b'x'; 20_000];
        write_all(&log, 1000, &[b"before\n", &huge, b"\nafter\n"]).await;
        let rotated = std::fs::read_to_string(previous(&log)).expect("rotated");
        assert!(rotated.contains("the rest of it was dropped"), "{rotated}");
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "after\n");
    }

    #[tokio::test]
    async fn the_tail_is_read_from_the_end_and_masked() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("app.log");
        let mut text = String::new();
        for n in 0..20_000 {
            text.push_str(&format!("line {n}\n"));
        }
        text.push_str("token=s3cr3t-value\n");
        std::fs::write(&log, &text).expect("write");
        let masker = Masker::new(["s3cr3t-value"]);
        let tail = tail(&log, 3, &masker).await;
        assert_eq!(tail, "line 19998\nline 19999\ntoken=***");
        assert_eq!(super::tail(&dir.path().join("none"), 3, &masker).await, "");
    }
}
