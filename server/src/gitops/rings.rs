//! `rollout: {rings: [[eu-1], [eu-2, us-1]], pause_between: 10m,
//! analysis: {…}}` on a stack entry with several cluster targets: the
//! deploy goes ring by ring, each ring rolled out (with the entry's
//! strategy: whole, or as a canary) and analysed before the next; one
//! abort stops every ring and returns every target to the stable version.
//!
//! Read from the YAML as a JSON tree and checked here by hand, so every
//! problem names its field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::strategy::{Analysis, Problem};

/// The longest wait between two rings.
const MAX_PAUSE_SECONDS: u64 = 7 * 24 * 3600;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rings {
    /// The targets of each ring, in the order they roll out.
    pub rings: Vec<Vec<String>>,
    /// How long a ring serves the new version before the next begins
    /// (Gantry's clock).
    #[serde(default)]
    pub pause_between_seconds: u64,
    /// What each ring must pass, after its pause, before the next.
    #[serde(default)]
    pub analysis: Option<Analysis>,
}

/// Reads `rollout:` for an entry with `targets`.
pub fn parse(value: &Value, targets: &[String]) -> Result<Rings, Vec<Problem>> {
    let mut problems = Vec::new();
    let Value::Object(map) = value else {
        return Err(vec![(
            String::new(),
            "expected a mapping with `rings` (and pause_between, analysis)".into(),
        )]);
    };
    for key in map.keys() {
        if !["rings", "pause_between", "analysis"].contains(&key.as_str()) {
            problems.push((
                key.clone(),
                format!("unknown field `{key}`, expected rings, pause_between or analysis"),
            ));
        }
    }
    let mut rings: Vec<Vec<String>> = Vec::new();
    match map.get("rings") {
        Some(Value::Array(raw)) if raw.len() >= 2 => {
            for (n, ring) in raw.iter().enumerate() {
                let Value::Array(names) = ring else {
                    problems.push((
                        format!("rings[{n}]"),
                        format!("expected a list of targets, e.g. [eu-1], found {ring}"),
                    ));
                    continue;
                };
                if names.is_empty() {
                    problems.push((format!("rings[{n}]"), "a ring needs at least one target".into()));
                }
                let mut ring_targets = Vec::new();
                for (m, name) in names.iter().enumerate() {
                    let at = format!("rings[{n}][{m}]");
                    let Some(name) = name.as_str() else {
                        problems.push((at, format!("expected a target's name, found {name}")));
                        continue;
                    };
                    if name == crate::gitops::schema::LOCAL_TARGET {
                        problems.push((at, "rings are for clusters: the local target is one process on this machine".into()));
                    } else if !targets.iter().any(|t| t == name) {
                        problems.push((
                            at,
                            format!(
                                "unknown target `{name}`: a ring names the entry's own targets ({})",
                                targets.join(", ")
                            ),
                        ));
                    } else if rings.iter().chain([&ring_targets]).flatten().any(|t| t == name) {
                        problems.push((at, format!("`{name}` is in more than one ring")));
                    } else {
                        ring_targets.push(name.to_string());
                    }
                }
                rings.push(ring_targets);
            }
            let placed: Vec<&String> = rings.iter().flatten().collect();
            let local = crate::gitops::schema::LOCAL_TARGET;
            let named_local = raw
                .iter()
                .filter_map(Value::as_array)
                .flatten()
                .any(|name| name == local);
            if targets.iter().any(|t| t == local) && !named_local {
                problems.push((
                    "rings".into(),
                    "rings are for clusters: an entry that rolls out in rings targets clusters only, not `local`".into(),
                ));
            }
            let missing: Vec<&str> = targets
                .iter()
                .filter(|t| !placed.contains(t) && t.as_str() != local)
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                problems.push((
                    "rings".into(),
                    format!(
                        "every target of the entry goes in a ring; not in any: {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
        Some(other) => problems.push((
            "rings".into(),
            format!("expected two rings or more, each a list of targets: [[eu-1], [eu-2, us-1]], found {other}"),
        )),
        None => problems.push((
            "rings".into(),
            "a rollout needs `rings`: [[eu-1], [eu-2, us-1]]".into(),
        )),
    }
    let pause_between_seconds = match map.get("pause_between") {
        None => 0,
        Some(Value::String(text)) => match crate::config::duration::HumanDuration::parse(text) {
            Ok(d) if d.as_secs() <= MAX_PAUSE_SECONDS => d.as_secs(),
            Ok(_) => {
                problems.push(("pause_between".into(), "at most 7d between rings".into()));
                0
            }
            Err(e) => {
                problems.push(("pause_between".into(), e.0));
                0
            }
        },
        Some(other) => {
            problems.push((
                "pause_between".into(),
                format!("expected a duration such as 10m, found {other}"),
            ));
            0
        }
    };
    let analysis = match map.get("analysis") {
        None => None,
        Some(value) => {
            let found = super::strategy::analysis(value, "analysis", &mut problems);
            if let Some(analysis) = &found
                && analysis.uses_proxy()
            {
                problems.push((
                    "analysis".into(),
                    "max_error_rate, max_p95 and step reach the canary through Gantry's own proxy, which clusters are not behind: analyse rings with `prometheus: {url, query, threshold}`".into(),
                ));
            }
            found
        }
    };
    if problems.is_empty() {
        Ok(Rings {
            rings,
            pause_between_seconds,
            analysis,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn targets() -> Vec<String> {
        ["eu-1", "eu-2", "us-1"].map(String::from).to_vec()
    }

    #[test]
    fn rings_are_read_in_order() {
        let rings = parse(
            &json!({ "rings": [["eu-1"], ["eu-2", "us-1"]], "pause_between": "10m",
                     "analysis": { "prometheus": { "url": "http://prom:9090", "query": "up", "threshold": 1 }, "interval": "5s" } }),
            &targets(),
        )
        .expect("valid");
        assert_eq!(rings.rings, [vec!["eu-1"], vec!["eu-2", "us-1"]]);
        assert_eq!(rings.pause_between_seconds, 600);
        assert_eq!(rings.analysis.expect("analysed").interval_seconds, 5);
    }

    #[test]
    fn every_problem_names_its_field() {
        let problems = parse(
            &json!({ "rings": [["eu-1", "ap-9"], ["eu-1"], "us-1"], "pause_between": "forever",
                     "analysis": { "max_error_rate": "1%" }, "canary": true }),
            &targets(),
        )
        .expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "canary",
                "rings[0][1]",
                "rings[1][0]",
                "rings[2]",
                "rings",
                "pause_between",
                "analysis"
            ],
            "{problems:?}"
        );
        assert!(
            problems[1].1.contains("unknown target `ap-9`"),
            "{problems:?}"
        );
        assert!(problems[2].1.contains("more than one ring"), "{problems:?}");
        assert!(
            problems[4].1.contains("not in any: eu-2, us-1"),
            "{problems:?}"
        );
        let one = parse(&json!({ "rings": [["eu-1", "eu-2", "us-1"]] }), &targets())
            .expect_err("one ring");
        assert!(one[0].1.contains("two rings or more"), "{one:?}");
        let local = parse(
            &json!({ "rings": [["local"], ["eu-1"]] }),
            &["local".into(), "eu-1".into()],
        )
        .expect_err("local");
        assert_eq!(
            local.len(),
            1,
            "one problem, not a contradiction: {local:?}"
        );
        assert!(local[0].1.contains("rings are for clusters"), "{local:?}");
        let beside = parse(
            &json!({ "rings": [["eu-1"], ["eu-2"]] }),
            &["local".into(), "eu-1".into(), "eu-2".into()],
        )
        .expect_err("local beside");
        assert_eq!(beside.len(), 1, "{beside:?}");
        assert!(beside[0].1.contains("not `local`"), "{beside:?}");
    }
}
