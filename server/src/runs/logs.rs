//! Step output: masked, stored in chunks, capped, and broadcast live.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::db::{self, Db, now_millis};
use crate::secrets::mask::Masker;

/// A chunk is stored once it holds this much, or when the step's flush
/// timer fires, whichever comes first.
pub const CHUNK_BYTES: usize = 32 * 1024;
/// A line longer than this is cut (and masking works per piece).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What live viewers of a run receive.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    Log {
        step_id: i64,
        seq: i64,
        text: String,
    },
    Step {
        step_id: i64,
        state: String,
    },
    Run {
        state: String,
    },
}

/// One broadcast channel per run with live viewers or a live runner. With
/// several replicas, what a runner sends also reaches viewers on the other
/// replicas (`crate::jobs::relay`).
#[derive(Debug, Default)]
pub struct RunEvents {
    channels: Mutex<HashMap<i64, broadcast::Sender<RunEvent>>>,
    relay: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<(i64, RunEvent)>>,
}

impl RunEvents {
    pub fn subscribe(&self, run_id: i64) -> broadcast::Receiver<RunEvent> {
        self.sender(run_id).subscribe()
    }

    /// Tells the run's viewers here and on the other replicas.
    pub fn send(&self, run_id: i64, event: RunEvent) {
        if let Some(relay) = self.relay.get() {
            let _ = relay.send((run_id, event.clone()));
        }
        self.send_here(run_id, event);
    }

    /// Tells the run's viewers on this replica (an event another replica's
    /// runner sent).
    pub fn send_here(&self, run_id: i64, event: RunEvent) {
        // Nobody listening is normal.
        let _ = self.sender(run_id).send(event);
    }

    pub fn relay_to(&self, relay: tokio::sync::mpsc::UnboundedSender<(i64, RunEvent)>) {
        let _ = self.relay.set(relay);
    }

    /// Forgets a finished run's channel once nobody listens any more.
    pub fn close(&self, run_id: i64) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels
            .get(&run_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            channels.remove(&run_id);
        }
    }

    fn sender(&self, run_id: i64) -> broadcast::Sender<RunEvent> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(run_id)
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }
}

/// How long a step's log waits for a database that went away.
const OUTAGE: std::time::Duration = std::time::Duration::from_secs(30);
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Collects one step's output.
/// What Gantry's own lines in a step's log start with.
pub const NOTE: &str = "[gantry] ";

pub struct LogSink<'a> {
    db: &'a Db,
    events: &'a RunEvents,
    run_id: i64,
    step_id: i64,
    seq: i64,
    /// The step's log so far was looked up: a later attempt's chunks
    /// follow the earlier attempt's.
    resumed: bool,
    buffer: String,
    masker: Masker,
    limit: u64,
    stored: u64,
    total: u64,
    truncated: bool,
}

impl<'a> LogSink<'a> {
    /// Everything written is masked with `masker`.
    pub fn new(
        db: &'a Db,
        events: &'a RunEvents,
        run_id: i64,
        step_id: i64,
        masker: Masker,
        limit: u64,
    ) -> Self {
        LogSink {
            db,
            events,
            run_id,
            step_id,
            seq: 0,
            resumed: false,
            buffer: String::new(),
            masker,
            limit,
            stored: 0,
            total: 0,
            truncated: false,
        }
    }

    /// Adds one line (without its newline).
    pub async fn line(&mut self, line: &str) -> Result<(), crate::db::QueryError> {
        let mut text = self.masker.mask(line);
        // Only Gantry's own notes start with its marker: a step's line
        // that does is shifted, so it can neither pass for one nor throw
        // off who counts the step's lines (`builds::reattach`).
        if text.starts_with(NOTE) {
            text.insert(0, ' ');
        }
        let size = text.len() as u64 + 1;
        self.total += size;
        if self.stored + size > self.limit {
            self.truncated = true;
            return Ok(());
        }
        self.stored += size;
        self.buffer.push_str(&text);
        self.buffer.push('\n');
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// A line Gantry itself writes into the step's log (masked too: it may
    /// quote an app's output or an error holding a value).
    pub async fn note(&mut self, text: &str) -> Result<(), crate::db::QueryError> {
        let text = self.masker.mask(text);
        self.buffer.push_str(NOTE);
        self.buffer.push_str(&text);
        self.buffer.push('\n');
        self.flush().await
    }

    /// Stores and broadcasts what is buffered.
    pub async fn flush(&mut self) -> Result<(), crate::db::QueryError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        // A database away for a moment (a restart, a dropped connection)
        // does not fail the step: the chunk is written once it is back.
        let deadline = tokio::time::Instant::now() + OUTAGE;
        let away =
            |error: &db::QueryError| error.is_transient() && tokio::time::Instant::now() < deadline;
        while !self.resumed {
            match db::steps::last_seq(self.db.pool(), self.step_id).await {
                Ok(seq) => {
                    self.seq = seq;
                    self.resumed = true;
                }
                Err(error) if away(&error) => tokio::time::sleep(RETRY).await,
                Err(error) => return Err(error),
            }
        }
        let text = std::mem::take(&mut self.buffer);
        // A replica that lost this run may still write a chunk or two of
        // the earlier attempt's output before it finds out; this attempt's
        // chunk then follows those instead of failing on their number.
        let mut tries = 0;
        loop {
            self.seq += 1;
            match db::steps::append_log(self.db.pool(), self.step_id, self.seq, &text, now_millis())
                .await
            {
                Ok(()) => break,
                Err(error) if error.is_conflict() && tries < 3 => {
                    tries += 1;
                    self.seq = db::steps::last_seq(self.db.pool(), self.step_id).await?;
                }
                Err(error) if away(&error) => {
                    self.seq -= 1;
                    tokio::time::sleep(RETRY).await;
                }
                Err(error) => return Err(error),
            }
        }
        self.events.send(
            self.run_id,
            RunEvent::Log {
                step_id: self.step_id,
                seq: self.seq,
                text,
            },
        );
        Ok(())
    }

    /// Flushes and, if output was dropped, says so in the log itself.
    pub async fn finish(&mut self) -> Result<(), crate::db::QueryError> {
        if self.truncated {
            let dropped = self.total - self.stored;
            self.flush().await?;
            self.note(&format!(
                "log truncated: {dropped} more bytes were printed and not stored (limit {} bytes)",
                self.limit
            ))
            .await?;
        }
        self.flush().await
    }

    /// What this log masks with.
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// `text` masked as this log masks it (for details stored elsewhere).
    pub fn mask(&self, text: &str) -> String {
        self.masker.mask(text)
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

/// Splits a byte stream into lines, cutting lines longer than
/// [`MAX_LINE_BYTES`] so a step printing gigabytes without a newline cannot
/// exhaust memory. A cut never falls inside a secret the log masks: each
/// piece is masked alone, so a value split in two would show in halves.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    masker: Masker,
}

impl LineSplitter {
    /// A splitter whose cuts keep clear of `masker`'s values.
    pub fn masked_by(masker: &Masker) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            masker: masker.clone(),
        }
    }

    /// Feeds bytes; returns the complete lines they finish.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                lines.push(self.take());
            } else {
                self.pending.push(byte);
                if self.pending.len() >= MAX_LINE_BYTES + self.masker.longest() {
                    lines.push(self.cut());
                }
            }
        }
        lines
    }

    /// The first [`MAX_LINE_BYTES`] of an overlong line — less, to the
    /// start of a value that would straddle the cut.
    fn cut(&mut self) -> String {
        let at = self.masker.safe_cut(&self.pending, MAX_LINE_BYTES).max(1);
        let rest = self.pending.split_off(at);
        let piece = std::mem::replace(&mut self.pending, rest);
        String::from_utf8_lossy(&piece).into_owned()
    }

    /// What is left at the end of the stream.
    pub fn rest(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let bytes = std::mem::take(&mut self.pending);
        let text = String::from_utf8_lossy(&bytes);
        text.strip_suffix('\r').unwrap_or(&text).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::mask::MASK;

    #[test]
    fn lines_are_split_and_overlong_ones_cut() {
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.feed(b"one\ntw"), ["one"]);
        assert_eq!(splitter.feed(b"o\r\nthree"), ["two"]);
        assert_eq!(splitter.rest().as_deref(), Some("three"));
        let huge = vec![b'x'; MAX_LINE_BYTES * 2 + 5];
        let lines = splitter.feed(&huge);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE_BYTES));
        assert_eq!(splitter.rest().map(|r| r.len()), Some(5));
    }

    #[test]
    fn a_secret_printed_across_the_cut_of_an_overlong_line_stays_masked() {
        let secret = "tok-0123456789abcdef";
        let masker = Masker::new([secret]);
        let mut splitter = LineSplitter::masked_by(&masker);
        // The secret begins 5 bytes before the cut.
        let mut line = vec![b'x'; MAX_LINE_BYTES - 5];
        line.extend_from_slice(secret.as_bytes());
        line.extend_from_slice(&vec![b'y'; MAX_LINE_BYTES]);
        line.push(b'\n');
        let pieces = splitter.feed(&line);
        assert!(pieces.len() >= 2);
        let shown: Vec<String> = pieces.iter().map(|p| masker.mask(p)).collect();
        for piece in &shown {
            assert!(
                !piece.contains("tok-0") && !piece.contains("abcdef"),
                "a half shows"
            );
            assert!(piece.len() <= MAX_LINE_BYTES + secret.len());
        }
        assert_eq!(shown.iter().filter(|p| p.contains(MASK)).count(), 1);
        // Without the masker's help, the cut splits it (what this prevents).
        let mut plain = LineSplitter::default();
        let halves = plain.feed(&line);
        assert!(
            halves
                .iter()
                .map(|p| masker.mask(p))
                .any(|p| p.ends_with("tok-0"))
        );
    }
}
