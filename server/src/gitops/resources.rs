//! What a step or a local app may use (`resources:` in pipeline.yaml) and
//! how it reaches the network (`network:`), as people write them:
//! Kubernetes-style quantities (`2Gi`, `512Mi`, `1G`; `2`, `0.5`, `500m`
//! cores).

use crate::error::Rejected;
use serde::{Deserialize, Serialize};

/// The documented defaults.
pub const DEFAULT_MEMORY: u64 = 2 << 30;
pub const DEFAULT_PIDS: u64 = 512;
pub const DEFAULT_CPU_MILLIS: u64 = 2000;
pub const DEFAULT_TMP: u64 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_bytes: u64,
    pub pids: u64,
    pub cpu_millis: u64,
    pub tmp_bytes: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            memory_bytes: DEFAULT_MEMORY,
            pids: DEFAULT_PIDS,
            cpu_millis: DEFAULT_CPU_MILLIS,
            tmp_bytes: DEFAULT_TMP,
        }
    }
}

/// A step's network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepNetwork {
    /// Its own namespace: the internet and the environments' URLs, none
    /// of the host's loopback services.
    #[default]
    Default,
    /// Only its own loopback.
    None,
    /// The host's network, loopback services included: an admin's explicit
    /// choice, shown on every run page.
    Host,
}

impl StepNetwork {
    pub fn parse(text: &str) -> Option<StepNetwork> {
        match text {
            "default" => Some(StepNetwork::Default),
            "none" => Some(StepNetwork::None),
            "host" => Some(StepNetwork::Host),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepNetwork::Default => "default",
            StepNetwork::None => "none",
            StepNetwork::Host => "host",
        }
    }
}

/// Bytes from `2Gi`, `512Mi`, `64Ki`, `1G`, `500M`, `1024`.
pub fn parse_bytes(text: &str) -> Result<u64, Rejected> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}; use Ki, Mi, Gi (or k, M, G), e.g. 512Mi"
            )
            .into());
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a size like 512Mi or 2Gi, found {text:?}"))?;
    let bytes = value * factor as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{text:?} is not a usable size").into());
    }
    Ok(bytes as u64)
}

/// Thousandths of a core from `2`, `0.5`, `500m`.
pub fn parse_cpu(text: &str) -> Result<u64, Rejected> {
    let text = text.trim();
    let millis = match text.strip_suffix('m') {
        Some(millis) => millis.parse::<u64>().ok(),
        None => text
            .parse::<f64>()
            .ok()
            .filter(|cores| cores.is_finite() && *cores > 0.0 && *cores < 1e6)
            .map(|cores| (cores * 1000.0).round() as u64),
    };
    match millis {
        Some(millis) if millis >= 10 => Ok(millis),
        Some(_) => Err(format!("{text:?} is less than 10m (a hundredth of a core)").into()),
        None => Err(format!("expected cores like 2, 0.5 or 500m, found {text:?}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(parse_bytes("2Gi"), Ok(2 << 30));
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("2GB").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-1Gi").is_err());
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("250m"), Ok(250));
        assert!(parse_cpu("5m").is_err());
        assert!(parse_cpu("two").is_err());
        assert!(parse_cpu("0").is_err());
    }
}
