//! Formatting shared by every view: timestamps and commit ids. Pure functions,
//! so the server render and the hydrated page always print the same text.

use crate::dto::UnixMillis;

/// The short form of a commit id shown in tables (full ids stay in tooltips).
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// `2026-11-28 06:14 UTC`: absolute and unambiguous, identical in SSR and WASM.
pub fn timestamp(at: UnixMillis) -> String {
    let seconds = at.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        second_of_day / 3600,
        (second_of_day % 3600) / 60
    )
}

/// Now, for relative times. Pages render on the server (only forms are
/// islands), so the server's clock is the one that counts.
pub fn now_millis() -> UnixMillis {
    #[cfg(feature = "ssr")]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
    #[cfg(not(feature = "ssr"))]
    {
        0
    }
}

/// `5 min ago`, `3 h ago`, `2 days ago`: how long before `now` `at` was;
/// `in 30 days` for a moment ahead.
pub fn ago(at: UnixMillis, now: UnixMillis) -> String {
    // A moment ahead (an expiry): "in 30 days"; a few seconds of clock
    // skew still read "just now".
    let ahead = (at - now) / 1000;
    if ahead > 44 {
        return match ahead {
            45..=3_599 => format!("in {} min", (ahead + 30) / 60),
            3_600..=86_399 => format!("in {} h", ahead / 3_600),
            86_400..=172_799 => "tomorrow".to_string(),
            _ => format!("in {} days", ahead / 86_400),
        };
    }
    let seconds = (now - at).max(0) / 1000;
    match seconds {
        0..=44 => "just now".to_string(),
        45..=3_599 => format!("{} min ago", (seconds + 30) / 60),
        3_600..=86_399 => format!("{} h ago", seconds / 3_600),
        86_400..=172_799 => "yesterday".to_string(),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// `under 1 s`, `42 s`, `3 min 5 s`, `1 h 2 min`: how long something took.
pub fn duration(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    match seconds {
        0 => "under 1 s".to_string(),
        1..=59 => format!("{seconds} s"),
        60..=3_599 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3_600, (seconds % 3_600) / 60),
    }
}

/// Characters a one-line summary keeps at most.
const LINE_MAX_CHARS: usize = 200;

/// The first non-blank line of a text, cut to 200 characters: a list's
/// one-line reason or commit subject. `None` for a blank text.
pub fn first_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
    Some(if line.chars().count() > LINE_MAX_CHARS {
        format!(
            "{}…",
            line.chars().take(LINE_MAX_CHARS - 1).collect::<String>()
        )
    } else {
        line.to_string()
    })
}

/// RFC 3339 in UTC, for `<time datetime>`.
pub fn iso(at: UnixMillis) -> String {
    let seconds = at.div_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        (of_day % 3600) / 60,
        of_day % 60
    )
}

/// Percent-encoding as `encodeURIComponent` and most URL libraries write
/// it (the server's secret masking uses it too).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a failed call says, in the person's terms: the framework's
/// prefixes ("error running server function: …") are not theirs.
pub fn plain(error: impl std::fmt::Display) -> String {
    let text = error.to_string();
    if let Some(message) = text.strip_prefix("error running server function: ") {
        return message.to_string();
    }
    if text.starts_with("error reaching server to call server function") {
        return "Gantry could not be reached; check the connection and try again.".to_string();
    }
    text
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so the WASM bundle needs no date library.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_one_line_summaries_read_short() {
        assert_eq!(duration(999), "under 1 s");
        assert_eq!(duration(59_999), "59 s");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(duration(3_720_000), "1 h 2 min");
        assert_eq!(duration(-5), "under 1 s");
        assert_eq!(
            first_line("\n  \n step test failed: exit 1\nmore"),
            Some("step test failed: exit 1".into())
        );
        assert_eq!(first_line(" \n "), None);
        let long = first_line(&"é".repeat(500)).unwrap();
        assert_eq!(long.chars().count(), 200);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn formats_epoch_leap_days_and_pre_epoch_instants() {
        assert_eq!(timestamp(0), "1970-01-01 00:00 UTC");
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(timestamp(1_709_251_199_000), "2024-02-29 23:59 UTC");
        // 2026-11-28T06:14:12Z
        assert_eq!(timestamp(1_795_846_452_000), "2026-11-28 06:14 UTC");
        // One second before the epoch.
        assert_eq!(timestamp(-1000), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn relative_times_round_to_what_a_person_would_say() {
        let now = 1_795_846_452_000;
        assert_eq!(ago(now - 10_000, now), "just now");
        assert_eq!(ago(now - 5 * 60_000, now), "5 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 30 * 3_600_000, now), "yesterday");
        assert_eq!(ago(now - 5 * 86_400_000, now), "5 days ago");
        // A clock a little behind another's never says "in the future".
        assert_eq!(ago(now + 5_000, now), "just now");
        assert_eq!(ago(now + 10 * 60_000, now), "in 10 min");
        assert_eq!(ago(now + 5 * 3_600_000, now), "in 5 h");
        assert_eq!(ago(now + 30 * 3_600_000, now), "tomorrow");
        assert_eq!(ago(now + 30 * 86_400_000, now), "in 30 days");
        assert_eq!(iso(1_795_846_452_000), "2026-11-28T06:14:12Z");
    }

    #[test]
    fn a_search_is_escaped_for_the_address() {
        assert_eq!(percent_encode("shop"), "shop");
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(percent_encode("ü"), "%C3%BC");
    }

    #[test]
    fn failures_read_without_the_frameworks_words() {
        assert_eq!(
            plain("error running server function: Sign in to see this."),
            "Sign in to see this."
        );
        assert_eq!(
            plain("error reaching server to call server function: TypeError: fetch failed"),
            "Gantry could not be reached; check the connection and try again."
        );
        assert_eq!(plain("the app has no stack"), "the app has no stack");
    }

    #[test]
    fn short_sha_keeps_seven_characters_and_tolerates_short_input() {
        assert_eq!(short_sha("0123456789abcdef"), "0123456");
        assert_eq!(short_sha("abc"), "abc");
    }
}
