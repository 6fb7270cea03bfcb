//! Durations as people write them in YAML: `90s`, `10m`, `1h30m`, `72h`, `2d`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration parsed from `<n><unit>` parts, units `s`, `m`, `h`, `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(text: &str) -> Result<HumanDuration, crate::error::Rejected> {
        let text = text.trim();
        if text.is_empty() {
            return Err("expected a duration like 30s, 10m, 2h or 3d".into());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(format!("unknown unit {c:?} in {text:?}; use s, m, h or d").into()),
            };
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("expected a number before {c:?} in {text:?}"))?;
            total = n
                .checked_mul(unit)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| format!("{text:?} is too long"))?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(format!("{text:?} needs a unit (s, m, h or d) after {digits}").into());
        }
        if total == 0 {
            return Err(format!("{text:?} must be longer than zero").into());
        }
        Ok(HumanDuration(Duration::from_secs(total)))
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        if rest > 0 || self.0.as_secs() == 0 {
            write!(f, "{rest}s")?;
        }
        Ok(())
    }
}

impl From<HumanDuration> for String {
    fn from(duration: HumanDuration) -> String {
        duration.to_string()
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_compound_durations() {
        assert_eq!(HumanDuration::parse("90s").map(|d| d.as_secs()), Ok(90));
        assert_eq!(HumanDuration::parse("1h30m").map(|d| d.as_secs()), Ok(5400));
        assert_eq!(
            HumanDuration::parse("72h").map(|d| d.to_string()),
            Ok("3d".into())
        );
        assert_eq!(HumanDuration::parse("2d").map(|d| d.as_secs()), Ok(172_800));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(
            HumanDuration::parse("10")
                .unwrap_err()
                .0
                .contains("needs a unit")
        );
        assert!(
            HumanDuration::parse("5w")
                .unwrap_err()
                .0
                .contains("unknown unit")
        );
        assert!(
            HumanDuration::parse("0s")
                .unwrap_err()
                .0
                .contains("longer than zero")
        );
        assert!(HumanDuration::parse("").is_err());
        assert!(HumanDuration::parse("99999999999999999999d").is_err());
    }
}
