//! Following a build container's log through `pods/log`, resumed after a
//! dropped stream from the last line received: a reconnect asks from that
//! line's second (`sinceTime` has second precision) with timestamps, and
//! what it had already is dropped — by time, and among lines of the very
//! same instant by count — so nothing is lost and nothing repeated.

use std::pin::Pin;

use futures_util::{AsyncBufReadExt, Stream};

/// The longest piece of a line read at once.
const MAX_PIECE: u64 = 64 * 1024;

/// A log's lines as bytes, each with its timestamp in front.
pub type Lines = Pin<Box<dyn Stream<Item = std::io::Result<Vec<u8>>> + Send>>;

/// Opens `container`'s log, followed, timestamped, from `since`.
pub async fn open(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: &str,
    since: Option<&str>,
) -> Result<Lines, kube::Error> {
    let mut path = format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}/log?container={container}&follow=true&timestamps=true"
    );
    if let Some(since) = since {
        path.push_str("&sinceTime=");
        path.push_str(since);
    }
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let reader = client.request_stream(request).await?;
    let reader = Box::pin(reader);
    Ok(Box::pin(futures_util::stream::unfold(
        reader,
        |mut reader| async move {
            // A line without an end (a step printing gigabytes of it) comes
            // in pieces: memory stays bounded, the log's own cap applies.
            let mut line = Vec::new();
            match futures_util::AsyncReadExt::take(&mut reader, MAX_PIECE)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) => None,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    Some((Ok(line), reader))
                }
                Err(error) => Some((Err(error), reader)),
            }
        },
    )))
}

/// Where a followed log is.
#[derive(Debug, Default)]
pub struct Resume {
    /// The last line's time, in nanoseconds.
    last: Option<i64>,
    /// How many lines received carried that very time.
    at_last: usize,
    /// How many of those this stream has brought again.
    again: usize,
}

impl Resume {
    /// A new stream begins (it brings the last second again).
    pub fn reconnect(&mut self) {
        self.again = 0;
    }

    /// `sinceTime` for the next stream: the last line's second.
    pub fn since(&self) -> Option<String> {
        let last = self.last?;
        let second = chrono::DateTime::from_timestamp(last.div_euclid(1_000_000_000), 0)?;
        Some(second.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }

    /// A line as received (`<RFC 3339 time> <text>`): its text, when it is
    /// new.
    pub fn accept<'l>(&mut self, line: &'l [u8]) -> Option<&'l [u8]> {
        let space = line.iter().position(|b| *b == b' ');
        let stamp = space
            .and_then(|at| std::str::from_utf8(&line[..at]).ok())
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .and_then(|time| time.timestamp_nanos_opt());
        let (Some(at), Some(space)) = (stamp, space) else {
            // No time in front (not a timestamped log): taken as it is.
            return Some(line);
        };
        let text = &line[space + 1..];
        match self.last {
            Some(last) if at < last => None,
            Some(last) if at == last => {
                self.again += 1;
                if self.again <= self.at_last {
                    None
                } else {
                    self.at_last += 1;
                    Some(text)
                }
            }
            _ => {
                self.last = Some(at);
                self.at_last = 1;
                self.again = 1;
                Some(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(resume: &mut Resume, lines: &[&str]) -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| resume.accept(l.as_bytes()))
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    }

    #[test]
    fn a_resumed_stream_loses_nothing_and_repeats_nothing() {
        let mut resume = Resume::default();
        let first = take(
            &mut resume,
            &[
                "2026-12-07T10:00:00.5Z a",
                "2026-12-07T10:00:01.25Z b",
                "2026-12-07T10:00:01.25Z c",
            ],
        );
        assert_eq!(first, ["a", "b", "c"]);
        assert_eq!(resume.since().as_deref(), Some("2026-12-07T10:00:01Z"));
        // Cut; the reconnect brings the last second again, then more,
        // including a third line of that same instant.
        resume.reconnect();
        let second = take(
            &mut resume,
            &[
                "2026-12-07T10:00:01.1Z before",
                "2026-12-07T10:00:01.25Z b",
                "2026-12-07T10:00:01.25Z c",
                "2026-12-07T10:00:01.25Z d",
                "2026-12-07T10:00:02.000000001Z e",
            ],
        );
        assert_eq!(second, ["d", "e"]);
    }
}
