//! Masking secret values wherever Gantry shows text that a step, an app or
//! a deploy produced: step logs, Gantry's own notes, deployment and
//! environment details, notification texts. A value is masked as it is,
//! line by line (a PEM key printed over many lines), and in the forms a
//! script commonly prints it: base64 (standard and URL-safe, padded or not)
//! and percent-encoded.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

pub const MASK: &str = "***";

/// Parts of a multi-line value shorter than this are not masked alone: a
/// line like `}` or `--` would mask ordinary text everywhere.
const MIN_PART: usize = 4;

/// The values to hide, and their encodings.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    needles: Vec<String>,
}

impl Masker {
    pub fn new<I, S>(values: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut needles = Vec::new();
        for value in values {
            let value = value.as_ref();
            if value.is_empty() {
                continue;
            }
            needles.push(value.to_string());
            let trimmed = value.trim();
            for line in trimmed.lines().map(|l| l.trim_end_matches('\r').trim()) {
                if line.len() >= MIN_PART {
                    needles.push(line.to_string());
                }
            }
            for form in [value, trimmed] {
                for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                    needles.push(engine.encode(form));
                }
                needles.push(app::format::percent_encode(form));
            }
        }
        needles.retain(|needle| !needle.is_empty());
        needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        needles.dedup();
        Masker { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Where a cut of `bytes` at `at` is safe: `at`, or the start of the
    /// earliest secret (or encoding) that would straddle it — moved back
    /// until none does, so neither piece holds part of a value that the
    /// masking of each piece would miss.
    pub fn safe_cut(&self, bytes: &[u8], mut at: usize) -> usize {
        loop {
            let crossing = self
                .needles
                .iter()
                .filter_map(|needle| {
                    let needle = needle.as_bytes();
                    let from = at.saturating_sub(needle.len() - 1);
                    let to = (at + needle.len() - 1).min(bytes.len());
                    bytes[from..to]
                        .windows(needle.len())
                        .position(|window| window == needle)
                        .map(|p| from + p)
                        .filter(|start| *start < at)
                })
                .min();
            match crossing {
                Some(start) if start > 0 => at = start,
                _ => return at,
            }
        }
    }

    /// The longest form of a value it masks (0 without values).
    pub fn longest(&self) -> usize {
        self.needles.first().map_or(0, String::len)
    }

    /// `text` with every secret (and encoding of one) replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut text = text.to_string();
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = text.replace(needle.as_str(), MASK);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n";

    #[test]
    fn every_line_of_a_multi_line_secret_is_masked() {
        let masker = Masker::new([PEM]);
        for line in PEM.lines() {
            assert_eq!(masker.mask(&format!("log: {line}")), "log: ***", "{line}");
        }
        assert!(!masker.mask(PEM).contains("MIIE"));
    }

    #[test]
    fn encoded_forms_are_masked_too() {
        let secret = "p@ss w/rd+?";
        let masker = Masker::new([secret]);
        for form in [
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            app::format::percent_encode(secret),
            "p@ss w/rd+?".to_string(),
        ] {
            assert_eq!(masker.mask(&format!("x={form};")), "x=***;", "{form}");
        }
        assert_eq!(masker.mask("nothing secret"), "nothing secret");
    }

    #[test]
    fn short_lines_of_a_value_do_not_mask_everything() {
        let masker = Masker::new(["{\n  \"k\": \"long-secret-value\"\n}"]);
        assert_eq!(masker.mask("} done"), "} done");
        assert_eq!(masker.mask("\"k\": \"long-secret-value\""), "***");
        assert!(Masker::new([""]).is_empty());
    }

    #[test]
    fn a_cut_never_falls_inside_a_value() {
        let masker = Masker::new(["s3cr3t-token"]);
        let text = b"xxxxxxxxs3cr3t-tokenyyyy";
        // A cut inside the value moves to its start; elsewhere it stays.
        assert_eq!(masker.safe_cut(text, 12), 8);
        assert_eq!(masker.safe_cut(text, 8), 8);
        assert_eq!(masker.safe_cut(text, 21), 21);
        assert_eq!(Masker::default().safe_cut(text, 12), 12);
    }
}
