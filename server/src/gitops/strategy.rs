//! `strategy:` of a stack entry: how a deploy replaces what runs. `rolling`
//! (the default: the new version replaces the old once healthy) or a
//! `canary` walked step by step — a share of traffic, a pause, an analysis
//! of the canary's requests — and aborted when an analysis fails.
//!
//! Read from the YAML as a JSON tree and checked here by hand, so every
//! problem names its field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a deploy replaces what runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    Rolling,
    Canary(CanaryPlan),
    BlueGreen(BlueGreen),
}

impl Strategy {
    /// The steps walked for a canary or a blue/green switch.
    pub fn walked(&self) -> Option<CanaryPlan> {
        match self {
            Strategy::Rolling => None,
            Strategy::Canary(plan) => Some(plan.clone()),
            Strategy::BlueGreen(switch) => Some(switch.as_plan()),
        }
    }
}

/// A canary's steps and what an abort does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryPlan {
    pub steps: Vec<CanaryStep>,
    #[serde(default)]
    pub on_abort: OnAbort,
    /// Walked for a blue/green switch: its one weight is the switch.
    #[serde(default)]
    pub blue_green: bool,
}

/// `blue_green: {keep: 10m, analysis: {…}, on_abort}`: the new version
/// starts beside the old one and, once healthy, takes every request at
/// once; the old one keeps running for `keep`, so an abort — an admin's,
/// or a failed analysis of the new version's requests — switches back at
/// once, with nothing to start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlueGreen {
    pub keep_seconds: u64,
    #[serde(default)]
    pub analysis: Option<Analysis>,
    #[serde(default)]
    pub on_abort: OnAbort,
}

impl BlueGreen {
    /// The switch as steps: every request to the new version, its
    /// analysis, then the old version kept for `keep`.
    pub fn as_plan(&self) -> CanaryPlan {
        let mut steps = vec![CanaryStep::Weight(100)];
        if let Some(analysis) = &self.analysis {
            steps.push(CanaryStep::Analysis(analysis.clone()));
        }
        if self.keep_seconds > 0 {
            steps.push(CanaryStep::Pause(Some(self.keep_seconds)));
        }
        CanaryPlan {
            steps,
            on_abort: self.on_abort,
            blue_green: true,
        }
    }
}

/// How long the old version is kept unless `keep` says.
const DEFAULT_KEEP_SECONDS: u64 = 600;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryStep {
    /// The canary's share of requests, in percent (1 to 100).
    Weight(u8),
    /// Wait this many seconds; `None` (`pause: {}`): until an admin
    /// promotes.
    Pause(Option<u64>),
    Analysis(Analysis),
}

/// An analysis of the canary: built in (its requests through Gantry's
/// proxy, on the local target), a Prometheus query, or both — each check
/// then judged by both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// The largest share of 5xx answers that passes (0 to 1).
    pub max_error_rate: Option<f64>,
    /// The largest 95th-percentile latency that passes.
    pub max_p95_ms: Option<u64>,
    /// Fewer requests in a check: inconclusive (never a success).
    pub min_requests: u64,
    /// How long each check measures.
    pub interval_seconds: u64,
    /// Successful checks needed to pass.
    pub count: u32,
    /// Failed checks tolerated; one more aborts.
    pub failure_limit: u32,
    /// Inconclusive checks tolerated; one more aborts.
    pub inconclusive_limit: u32,
    /// A Prometheus query whose value must stay at or under a threshold.
    #[serde(default)]
    pub prometheus: Option<PrometheusCheck>,
    /// A command run against the canary alone at each check.
    #[serde(default)]
    pub step: Option<AnalysisStep>,
}

impl Analysis {
    /// Whether it reaches the canary through Gantry's own proxy — its
    /// request measures, or a step sent to the canary alone — which only
    /// the local target has.
    pub fn uses_proxy(&self) -> bool {
        self.measures_requests() || self.step.is_some()
    }

    /// Whether it judges the requests the proxy measured.
    pub fn measures_requests(&self) -> bool {
        self.max_error_rate.is_some() || self.max_p95_ms.is_some()
    }
}

/// `step: {run, timeout}`: at each check, `run` (by `sh -c`, sandboxed as a
/// step is) reaches the canary alone at `$CANARY_URL`; exit 0 passes,
/// another code fails, and one that cannot start or finish in time is
/// inconclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisStep {
    pub run: String,
    pub timeout_seconds: u64,
}

/// `prometheus: {url, query, threshold}`: each check runs `query` (an
/// instant query; `{{ app }}`, `{{ environment }}` and `{{ namespace }}`
/// are filled in) and passes when every value it returns is at most
/// `threshold`. No data, a failed query or an unreachable server is
/// inconclusive — never a success.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrometheusCheck {
    pub url: String,
    pub query: String,
    pub threshold: f64,
}

/// What a failed analysis does besides sending traffic back to stable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAbort {
    /// The stable version keeps serving; nothing is pinned.
    #[default]
    Stay,
    /// The environment is rolled back to its last stable release and
    /// pinned, as an admin's rollback does.
    Rollback,
}

/// The longest timed pause.
const MAX_PAUSE_SECONDS: u64 = 30 * 24 * 3600;

/// A problem with `strategy`, at a field under it.
pub type Problem = (String, String);

/// Reads `strategy:` (`rolling`, or `{canary: {steps, on_abort}}`).
pub fn parse(value: &Value) -> Result<Strategy, Vec<Problem>> {
    let mut problems = Vec::new();
    let strategy = match value {
        Value::String(name) if name == "rolling" => Strategy::Rolling,
        Value::Object(map) if map.len() == 1 && map.contains_key("canary") => {
            match canary(&map["canary"], &mut problems) {
                Some(plan) => Strategy::Canary(plan),
                None => Strategy::Rolling,
            }
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("blue_green") => {
            match blue_green(&map["blue_green"], &mut problems) {
                Some(switch) => Strategy::BlueGreen(switch),
                None => Strategy::Rolling,
            }
        }
        // One strategy, and each key beside it named.
        Value::Object(map) if map.contains_key("canary") || map.contains_key("blue_green") => {
            if map.contains_key("canary") && map.contains_key("blue_green") {
                problems.push((
                    "canary".into(),
                    "an entry has one strategy: `canary` or `blue_green`, not both".into(),
                ));
            }
            for key in map.keys().filter(|k| *k != "canary" && *k != "blue_green") {
                problems.push((
                    key.clone(),
                    format!("unknown field `{key}` beside the strategy: `canary` or `blue_green` stands alone"),
                ));
            }
            Strategy::Rolling
        }
        other => {
            problems.push((
                String::new(),
                format!("expected `rolling`, `canary: {{steps: [...]}}` or `blue_green: {{keep: 10m}}`, found {other}"),
            ));
            Strategy::Rolling
        }
    };
    if problems.is_empty() {
        Ok(strategy)
    } else {
        Err(problems)
    }
}

/// What a canary cannot do on the entry it is on: a preview (one version
/// only), the local target beside clusters (one walk cannot split both),
/// or a built-in analysis on clusters (it measures Gantry's own proxy,
/// which only the local target has).
pub fn fits_targets(plan: &CanaryPlan, targets: &[String], preview: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    let local = targets
        .iter()
        .any(|t| t == crate::gitops::schema::LOCAL_TARGET);
    let clusters = targets
        .iter()
        .any(|t| t != crate::gitops::schema::LOCAL_TARGET);
    if plan.blue_green {
        if preview {
            problems.push((
                "blue_green".into(),
                "a preview runs one version: blue/green is for fixed environments (`branch:`)"
                    .into(),
            ));
        }
        if clusters {
            problems.push((
                "blue_green".into(),
                format!(
                    "blue/green switches Gantry's own proxy, which only the local target is behind (this entry targets {}); on clusters use a `canary`",
                    targets.join(", ")
                ),
            ));
        }
        return problems;
    }
    if preview {
        problems.push((
            "canary".into(),
            "a preview runs one version: a canary is for fixed environments (`branch:`)".into(),
        ));
    }
    if local && clusters {
        problems.push((
            "canary".into(),
            format!(
                "a canary runs on the local target or on clusters, not both (this entry targets {})",
                targets.join(", ")
            ),
        ));
    } else if clusters {
        for (n, step) in plan.steps.iter().enumerate() {
            if let CanaryStep::Analysis(analysis) = step
                && analysis.uses_proxy()
            {
                problems.push((
                    format!("canary.steps[{n}].analysis"),
                    "max_error_rate, max_p95 and step reach the canary through Gantry's own proxy, which only the local target has: on clusters, analyse with `prometheus: {url, query, threshold}`".into(),
                ));
            }
        }
    }
    problems
}

/// `on_abort: stay | rollback` (default `stay`), at `field`.
fn on_abort(value: Option<&Value>, field: &str, problems: &mut Vec<Problem>) -> OnAbort {
    match value {
        None => OnAbort::Stay,
        Some(Value::String(s)) if s == "stay" => OnAbort::Stay,
        Some(Value::String(s)) if s == "rollback" => OnAbort::Rollback,
        Some(other) => {
            problems.push((
                field.into(),
                format!("expected `stay` or `rollback`, found {other}"),
            ));
            OnAbort::Stay
        }
    }
}

fn blue_green(value: &Value, problems: &mut Vec<Problem>) -> Option<BlueGreen> {
    let empty = serde_json::Map::new();
    let map = match value {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            problems.push((
                "blue_green".into(),
                format!("expected a mapping (keep, analysis, on_abort), found {other}"),
            ));
            return None;
        }
    };
    let before = problems.len();
    for key in map.keys() {
        if !["keep", "analysis", "on_abort"].contains(&key.as_str()) {
            problems.push((
                format!("blue_green.{key}"),
                format!("unknown field `{key}`, expected keep, analysis or on_abort"),
            ));
        }
    }
    let keep_seconds = match map.get("keep") {
        None => DEFAULT_KEEP_SECONDS,
        Some(Value::String(text)) => match crate::config::duration::HumanDuration::parse(text) {
            Ok(d) if d.as_secs() <= MAX_PAUSE_SECONDS => d.as_secs(),
            Ok(_) => {
                problems.push((
                    "blue_green.keep".into(),
                    "the old version may be kept at most 30d".into(),
                ));
                0
            }
            Err(e) => {
                problems.push(("blue_green.keep".into(), e.0));
                0
            }
        },
        Some(other) => {
            problems.push((
                "blue_green.keep".into(),
                format!("expected how long the old version is kept, e.g. 10m, found {other}"),
            ));
            0
        }
    };
    let on_abort = on_abort(map.get("on_abort"), "blue_green.on_abort", problems);
    let analysis = map
        .get("analysis")
        .and_then(|value| analysis(value, "blue_green.analysis", problems));
    (problems.len() == before).then_some(BlueGreen {
        keep_seconds,
        analysis,
        on_abort,
    })
}

fn canary(value: &Value, problems: &mut Vec<Problem>) -> Option<CanaryPlan> {
    let Value::Object(map) = value else {
        problems.push(("canary".into(), "expected a mapping with `steps`".into()));
        return None;
    };
    for key in map.keys() {
        if !["steps", "on_abort"].contains(&key.as_str()) {
            problems.push((
                format!("canary.{key}"),
                format!("unknown field `{key}`, expected steps or on_abort"),
            ));
        }
    }
    let on_abort = on_abort(map.get("on_abort"), "canary.on_abort", problems);
    let Some(Value::Array(raw_steps)) = map.get("steps") else {
        problems.push((
            "canary.steps".into(),
            "a canary needs `steps`: a list of {weight}, {pause} and {analysis}".into(),
        ));
        return None;
    };
    if raw_steps.is_empty() {
        problems.push((
            "canary.steps".into(),
            "a canary needs at least one step".into(),
        ));
    }
    let mut steps = Vec::new();
    let mut last_weight = 0u8;
    for (n, raw) in raw_steps.iter().enumerate() {
        let field = format!("canary.steps[{n}]");
        let Value::Object(step) = raw else {
            problems.push((
                field,
                "expected {weight: N}, {pause: …} or {analysis: …}".into(),
            ));
            continue;
        };
        let (Some((kind, body)), 1) = (step.iter().next(), step.len()) else {
            problems.push((
                field,
                "each step is one of weight, pause or analysis".into(),
            ));
            continue;
        };
        match kind.as_str() {
            "weight" => match body.as_u64().filter(|w| (1..=100).contains(w)) {
                Some(weight) => {
                    let weight = u8::try_from(weight).unwrap_or(100);
                    if weight < last_weight {
                        problems.push((
                            format!("{field}.weight"),
                            format!("weights only grow: {weight} after {last_weight}; an abort is what sends traffic back"),
                        ));
                    }
                    last_weight = weight;
                    steps.push(CanaryStep::Weight(weight));
                }
                None => problems.push((
                    format!("{field}.weight"),
                    format!("expected a share of requests from 1 to 100 (percent), found {body}"),
                )),
            },
            "pause" => match body {
                Value::Object(empty) if empty.is_empty() => steps.push(CanaryStep::Pause(None)),
                Value::String(text) => match crate::config::duration::HumanDuration::parse(text) {
                    Ok(duration) if duration.as_secs() <= MAX_PAUSE_SECONDS => {
                        steps.push(CanaryStep::Pause(Some(duration.as_secs())));
                    }
                    Ok(_) => problems.push((
                        format!("{field}.pause"),
                        "a pause may last at most 30d; use `pause: {}` to wait for an admin".into(),
                    )),
                    Err(e) => problems.push((format!("{field}.pause"), e.0)),
                },
                other => problems.push((
                    format!("{field}.pause"),
                    format!(
                        "expected a duration (5m) or {{}} (until an admin promotes), found {other}"
                    ),
                )),
            },
            "analysis" => {
                if last_weight == 0 {
                    problems.push((
                        format!("{field}.analysis"),
                        "an analysis before any {weight: N} measures nothing: the canary has no traffic yet".into(),
                    ));
                }
                if let Some(analysis) = analysis(body, &format!("{field}.analysis"), problems) {
                    steps.push(CanaryStep::Analysis(analysis));
                }
            }
            other => problems.push((
                format!("{field}.{other}"),
                format!("unknown step `{other}`, expected weight, pause or analysis"),
            )),
        }
    }
    if !steps.iter().any(|s| matches!(s, CanaryStep::Weight(_))) && !raw_steps.is_empty() {
        problems.push((
            "canary.steps".into(),
            "no step gives the canary traffic: add a {weight: N}".into(),
        ));
    }
    Some(CanaryPlan {
        steps,
        on_abort,
        blue_green: false,
    })
}

pub(crate) fn analysis(
    value: &Value,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Analysis> {
    let Value::Object(map) = value else {
        problems.push((
            field.into(),
            "expected a mapping (max_error_rate, max_p95, min_requests, …)".into(),
        ));
        return None;
    };
    const KEYS: [&str; 9] = [
        "prometheus",
        "step",
        "max_error_rate",
        "max_p95",
        "min_requests",
        "interval",
        "count",
        "failure_limit",
        "inconclusive_limit",
    ];
    for key in map.keys() {
        if !KEYS.contains(&key.as_str()) {
            problems.push((
                format!("{field}.{key}"),
                format!("unknown field `{key}`, expected one of {}", KEYS.join(", ")),
            ));
        }
    }
    let before = problems.len();
    let mut fail = |name: &str, message: String| {
        problems.push((format!("{field}.{name}"), message));
    };
    let max_error_rate = match map.get("max_error_rate") {
        None => None,
        Some(value) => match rate(value) {
            Some(rate) => Some(rate),
            None => {
                fail(
                    "max_error_rate",
                    format!("expected a share like 1% or 0.01, found {value}"),
                );
                None
            }
        },
    };
    let max_p95_ms = match map.get("max_p95") {
        None => None,
        Some(value) => match value.as_str().and_then(millis) {
            Some(ms) => Some(ms),
            None => {
                fail(
                    "max_p95",
                    format!("expected a latency like 300ms or 2s, found {value}"),
                );
                None
            }
        },
    };
    let prometheus = match map.get("prometheus") {
        None => None,
        Some(value) => prometheus(value, &format!("{field}.prometheus"), problems),
    };
    let step = match map.get("step") {
        None => None,
        Some(value) => analysis_step(value, &format!("{field}.step"), problems),
    };
    let mut fail = |name: &str, message: String| {
        problems.push((format!("{field}.{name}"), message));
    };
    if max_error_rate.is_none()
        && max_p95_ms.is_none()
        && !map.contains_key("max_error_rate")
        && !map.contains_key("max_p95")
        && !map.contains_key("prometheus")
        && !map.contains_key("step")
    {
        fail(
            "max_error_rate",
            "an analysis checks something: set max_error_rate, max_p95, prometheus, step, or several"
                .into(),
        );
    }
    let mut number =
        |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| match map.get(name) {
            None => default,
            Some(value) => match value.as_u64().filter(|n| range.contains(n)) {
                Some(n) => n,
                None => {
                    fail(
                        name,
                        format!(
                            "expected a whole number from {} to {}, found {value}",
                            range.start(),
                            range.end()
                        ),
                    );
                    default
                }
            },
        };
    let min_requests = number("min_requests", 20, 1..=1_000_000);
    let count = number("count", 3, 1..=100);
    let failure_limit = number("failure_limit", 0, 0..=100);
    let inconclusive_limit = number("inconclusive_limit", 2, 0..=100);
    let interval_seconds = match map.get("interval") {
        None => 30,
        Some(value) => match value
            .as_str()
            .map(crate::config::duration::HumanDuration::parse)
        {
            Some(Ok(d)) if d.as_secs() <= 3600 => d.as_secs(),
            _ => {
                fail(
                    "interval",
                    format!("expected a duration from 1s to 1h, found {value}"),
                );
                30
            }
        },
    };
    let ok = problems.len() == before;
    ok.then(|| Analysis {
        max_error_rate,
        max_p95_ms,
        min_requests,
        interval_seconds,
        count: u32::try_from(count).unwrap_or(3),
        failure_limit: u32::try_from(failure_limit).unwrap_or(0),
        inconclusive_limit: u32::try_from(inconclusive_limit).unwrap_or(2),
        prometheus,
        step,
    })
}

/// The longest an analysis step may run.
const MAX_STEP_SECONDS: u64 = 600;

/// `step: {run, timeout}` (timeout 1s to 10m, default 1m).
fn analysis_step(value: &Value, field: &str, problems: &mut Vec<Problem>) -> Option<AnalysisStep> {
    let Value::Object(map) = value else {
        problems.push((
            field.into(),
            "expected a mapping with run and timeout".into(),
        ));
        return None;
    };
    let before = problems.len();
    for key in map.keys() {
        if !["run", "timeout"].contains(&key.as_str()) {
            problems.push((
                format!("{field}.{key}"),
                format!("unknown field `{key}`, expected run or timeout"),
            ));
        }
    }
    let run = match map.get("run").and_then(Value::as_str) {
        Some(run) if !run.trim().is_empty() => run.to_string(),
        _ => {
            problems.push((
                format!("{field}.run"),
                "expected the command to run against the canary, e.g. ./smoke.sh \"$CANARY_URL\""
                    .into(),
            ));
            String::new()
        }
    };
    let timeout_seconds = match map.get("timeout") {
        None => 60,
        Some(value) => match value
            .as_str()
            .map(crate::config::duration::HumanDuration::parse)
        {
            Some(Ok(d)) if (1..=MAX_STEP_SECONDS).contains(&d.as_secs()) => d.as_secs(),
            _ => {
                problems.push((
                    format!("{field}.timeout"),
                    format!("expected a duration from 1s to 10m, found {value}"),
                ));
                60
            }
        },
    };
    (problems.len() == before).then_some(AnalysisStep {
        run,
        timeout_seconds,
    })
}

/// `prometheus: {url, query, threshold}`.
fn prometheus(value: &Value, field: &str, problems: &mut Vec<Problem>) -> Option<PrometheusCheck> {
    let Value::Object(map) = value else {
        problems.push((
            field.into(),
            "expected a mapping with url, query and threshold".into(),
        ));
        return None;
    };
    let before = problems.len();
    for key in map.keys() {
        if !["url", "query", "threshold"].contains(&key.as_str()) {
            problems.push((
                format!("{field}.{key}"),
                format!("unknown field `{key}`, expected url, query or threshold"),
            ));
        }
    }
    let url = match map.get("url").and_then(Value::as_str) {
        Some(text) => match url::Url::parse(text) {
            Ok(url)
                if ["http", "https"].contains(&url.scheme())
                    && url.host_str().is_some()
                    && url.username().is_empty()
                    && url.password().is_none()
                    && url.query().is_none() =>
            {
                text.trim_end_matches('/').to_string()
            }
            // The URL is not repeated: it may carry a credential.
            _ => {
                problems.push((
                    format!("{field}.url"),
                    "expected the Prometheus server's http(s) address, e.g. http://prometheus.monitoring:9090, with no credentials or query".into(),
                ));
                String::new()
            }
        },
        None => {
            problems.push((
                format!("{field}.url"),
                "the Prometheus server's address is needed".into(),
            ));
            String::new()
        }
    };
    let query = match map.get("query").and_then(Value::as_str) {
        Some(query) if !query.trim().is_empty() && query.len() <= 4096 => query.to_string(),
        _ => {
            problems.push((
                format!("{field}.query"),
                "expected a PromQL query (at most 4096 characters) whose value must stay at or under `threshold`".into(),
            ));
            String::new()
        }
    };
    let raw = map.get("threshold");
    let threshold = match raw.and_then(Value::as_f64) {
        Some(threshold) if threshold.is_finite() => threshold,
        _ => {
            problems.push((
                format!("{field}.threshold"),
                format!(
                    "expected the largest value that passes, a number, found {}",
                    raw.map_or_else(|| "nothing".to_string(), Value::to_string)
                ),
            ));
            0.0
        }
    };
    (problems.len() == before).then_some(PrometheusCheck {
        url,
        query,
        threshold,
    })
}

/// `1%`, `0.5 %` or `0.01`: a share from 0 to 1.
fn rate(value: &Value) -> Option<f64> {
    let share = match value {
        Value::String(text) => {
            let percent = text.trim().strip_suffix('%')?.trim();
            percent.parse::<f64>().ok()? / 100.0
        }
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    (0.0..=1.0).contains(&share).then_some(share)
}

/// `300ms`, `2s`, `1m`: milliseconds.
fn millis(text: &str) -> Option<u64> {
    let text = text.trim();
    // At most an hour: a latency beyond that is no threshold.
    let ms = match text.strip_suffix("ms") {
        Some(ms) => ms.trim().parse::<u64>().ok()?,
        None => crate::config::duration::HumanDuration::parse(text)
            .ok()?
            .as_secs()
            .checked_mul(1000)?,
    };
    (1..=3_600_000).contains(&ms).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_canary_reads_its_steps_and_analysis() {
        let strategy = parse(&json!({ "canary": {
            "steps": [
                { "weight": 10 },
                { "pause": "5m" },
                { "analysis": { "max_error_rate": "1%", "max_p95": "300ms", "min_requests": 50, "interval": "10s" } },
                { "weight": 50 },
                { "pause": {} },
            ],
            "on_abort": "rollback",
        }}))
        .expect("valid");
        let Strategy::Canary(plan) = strategy else {
            panic!("a canary")
        };
        assert_eq!(plan.on_abort, OnAbort::Rollback);
        assert_eq!(plan.steps[0], CanaryStep::Weight(10));
        assert_eq!(plan.steps[1], CanaryStep::Pause(Some(300)));
        assert_eq!(plan.steps[4], CanaryStep::Pause(None));
        let CanaryStep::Analysis(analysis) = &plan.steps[2] else {
            panic!("an analysis")
        };
        assert_eq!(analysis.max_error_rate, Some(0.01));
        assert_eq!(analysis.max_p95_ms, Some(300));
        assert_eq!((analysis.min_requests, analysis.interval_seconds), (50, 10));
        assert_eq!(
            (
                analysis.count,
                analysis.failure_limit,
                analysis.inconclusive_limit
            ),
            (3, 0, 2)
        );
        assert_eq!(parse(&json!("rolling")), Ok(Strategy::Rolling));
    }

    #[test]
    fn every_problem_names_its_field() {
        let problems = parse(&json!({ "canary": {
            "steps": [
                { "weight": 50 },
                { "weight": 10 },
                { "weight": 140 },
                { "pause": "soon" },
                { "analysis": { "max_error_rate": "lots", "min_requests": 0, "colour": "red" } },
                { "jump": 1 },
            ],
            "on_abort": "panic",
        }}))
        .expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "canary.on_abort",
                "canary.steps[1].weight",
                "canary.steps[2].weight",
                "canary.steps[3].pause",
                "canary.steps[4].analysis.colour",
                "canary.steps[4].analysis.max_error_rate",
                "canary.steps[4].analysis.min_requests",
                "canary.steps[5].jump",
            ],
            "{problems:?}"
        );
        assert!(
            problems[1].1.contains("weights only grow: 10 after 50"),
            "{problems:?}"
        );
        let none =
            parse(&json!({ "canary": { "steps": [{ "pause": "1m" }] } })).expect_err("no traffic");
        assert!(
            none[0].1.contains("no step gives the canary traffic"),
            "{none:?}"
        );
        let nothing = parse(&json!({ "canary": { "steps": [{ "weight": 5 }, { "analysis": { "min_requests": 5 } }] } }))
            .expect_err("checks nothing");
        assert!(nothing[0].1.contains("checks something"), "{nothing:?}");
        assert!(parse(&json!("blue")).is_err());
        let switch = parse(&json!({ "blue_green": { "keep": "15m", "on_abort": "rollback" } }))
            .expect("valid");
        let Strategy::BlueGreen(switch) = switch else {
            panic!("blue/green")
        };
        let plan = switch.as_plan();
        assert_eq!(
            plan.steps,
            [CanaryStep::Weight(100), CanaryStep::Pause(Some(900))]
        );
        assert!(plan.blue_green);
        assert_eq!(plan.on_abort, OnAbort::Rollback);
        let beside = parse(&json!({ "blue_green": {}, "colour": "teal" })).expect_err("beside");
        assert_eq!(beside.len(), 1, "{beside:?}");
        assert_eq!(beside[0].0, "colour", "{beside:?}");
        let both = parse(&json!({ "blue_green": {}, "canary": { "steps": [{ "weight": 5 }] } }))
            .expect_err("both");
        assert!(both.iter().all(|(_, m)| m.contains("not both")), "{both:?}");
        let bad = parse(&json!({ "blue_green": { "keep": "soon", "colour": "teal" } }))
            .expect_err("invalid");
        let fields: Vec<&str> = bad.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["blue_green.colour", "blue_green.keep"], "{bad:?}");
        let blind = parse(&json!({ "canary": { "steps": [
            { "analysis": { "max_error_rate": "1%" } },
            { "weight": 10 },
            { "pause": "100000d" },
            { "analysis": { "max_p95": "9999999999999999s" } },
        ] } }))
        .expect_err("invalid");
        let fields: Vec<&str> = blind.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "canary.steps[0].analysis",
                "canary.steps[2].pause",
                "canary.steps[3].analysis.max_p95"
            ],
            "{blind:?}"
        );
        assert!(blind[0].1.contains("measures nothing"), "{blind:?}");
    }
}
