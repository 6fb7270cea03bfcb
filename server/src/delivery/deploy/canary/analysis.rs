//! Analysis semantics, stated once: each check of a canary is a success, a
//! failure, or inconclusive (too few requests, no data); limits on failures
//! and on inconclusive checks decide; inconclusive never counts as
//! success. Pure: the measurements come in as arguments.

use crate::gitops::strategy::Analysis;

/// What one check measured of the canary's requests over its interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub requests: u64,
    /// Answers with a 5xx status, or none at all.
    pub errors: u64,
    pub p95_ms: Option<u64>,
}

impl Sample {
    /// From the request count, the errors and each request's latency.
    pub fn of(errors: u64, latencies_ms: &mut [u64]) -> Sample {
        latencies_ms.sort_unstable();
        let p95_ms = (!latencies_ms.is_empty()).then(|| {
            let rank = ((0.95 * latencies_ms.len() as f64).ceil() as usize).max(1);
            latencies_ms[rank.min(latencies_ms.len()) - 1]
        });
        Sample {
            requests: latencies_ms.len() as u64,
            errors,
            p95_ms,
        }
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// `120 requests, 5xx 2.5 %, p95 180 ms`.
    pub fn describe(&self) -> String {
        let rate = self.error_rate().map_or_else(
            || "no requests".into(),
            |r| format!("5xx {:.1} %", r * 100.0),
        );
        let p95 = self
            .p95_ms
            .map_or_else(String::new, |p| format!(", p95 {p} ms"));
        format!("{} requests, {rate}{p95}", self.requests)
    }
}

/// How one check went.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Success,
    Failure(String),
    Inconclusive(String),
}

/// One check's verdict from each of its sources (the proxy, Prometheus):
/// any failure fails it; otherwise anything inconclusive leaves it
/// inconclusive; a success needs every source to pass.
pub fn combine(checks: Vec<Check>) -> Check {
    let mut failures = Vec::new();
    let mut unsure = Vec::new();
    for check in checks {
        match check {
            Check::Success => {}
            Check::Failure(why) => failures.push(why),
            Check::Inconclusive(why) => unsure.push(why),
        }
    }
    if !failures.is_empty() {
        Check::Failure(failures.join(", "))
    } else if !unsure.is_empty() {
        Check::Inconclusive(unsure.join(", "))
    } else {
        Check::Success
    }
}

/// Judges one sample against the analysis' thresholds.
pub fn judge(analysis: &Analysis, sample: &Sample) -> Check {
    if sample.requests < analysis.min_requests {
        return Check::Inconclusive(format!(
            "{} requests, {} needed to judge",
            sample.requests, analysis.min_requests
        ));
    }
    let mut failed = Vec::new();
    if let (Some(max), Some(rate)) = (analysis.max_error_rate, sample.error_rate())
        && rate > max
    {
        failed.push(format!("5xx {:.1} % > {:.1} %", rate * 100.0, max * 100.0));
    }
    if let (Some(max), Some(p95)) = (analysis.max_p95_ms, sample.p95_ms)
        && p95 > max
    {
        failed.push(format!("p95 {p95} ms > {max} ms"));
    }
    if failed.is_empty() {
        Check::Success
    } else {
        Check::Failure(failed.join(", "))
    }
}

/// The checks of one analysis so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub successes: u32,
    pub failures: u32,
    pub inconclusive: u32,
}

/// Where an analysis stands after a check.
#[derive(Clone, Debug, PartialEq)]
pub enum Standing {
    /// More checks to make.
    Going,
    /// `count` successful checks: the canary goes on.
    Passed,
    /// Past a limit: the canary is aborted, for this reason.
    Failed(String),
}

impl Tally {
    /// Counts `check` and says where the analysis stands.
    pub fn add(&mut self, analysis: &Analysis, check: &Check) -> Standing {
        match check {
            Check::Success => self.successes += 1,
            Check::Failure(_) => self.failures += 1,
            Check::Inconclusive(_) => self.inconclusive += 1,
        }
        if self.failures > analysis.failure_limit {
            let why = match check {
                Check::Failure(why) => why.clone(),
                _ => "too many failed checks".into(),
            };
            return Standing::Failed(format!(
                "{} failed check{} (limit {}): {why}",
                self.failures,
                if self.failures == 1 { "" } else { "s" },
                analysis.failure_limit
            ));
        }
        if self.inconclusive > analysis.inconclusive_limit {
            let why = match check {
                Check::Inconclusive(why) => why.clone(),
                _ => "too little data".into(),
            };
            return Standing::Failed(format!(
                "{} inconclusive checks (limit {}): {why}; inconclusive never counts as a success",
                self.inconclusive, analysis.inconclusive_limit
            ));
        }
        if self.successes >= analysis.count {
            Standing::Passed
        } else {
            Standing::Going
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis() -> Analysis {
        Analysis {
            max_error_rate: Some(0.01),
            max_p95_ms: Some(300),
            min_requests: 50,
            interval_seconds: 10,
            count: 3,
            failure_limit: 1,
            inconclusive_limit: 2,
            prometheus: None,
            step: None,
        }
    }

    #[test]
    fn a_check_from_two_sources_passes_only_when_both_pass() {
        let failed = || Check::Failure("5xx 9.0 % > 1.0 %".into());
        let unsure = || Check::Inconclusive("prometheus: no data".into());
        assert_eq!(
            combine(vec![Check::Success, Check::Success]),
            Check::Success
        );
        assert_eq!(combine(vec![Check::Success, unsure()]), unsure());
        assert_eq!(combine(vec![unsure(), failed()]), failed());
        assert_eq!(combine(vec![Check::Success, failed()]), failed());
    }

    fn sample(requests: u64, errors: u64, p95_ms: u64) -> Sample {
        Sample {
            requests,
            errors,
            p95_ms: Some(p95_ms),
        }
    }

    #[test]
    fn a_check_is_a_success_a_failure_or_inconclusive() {
        let a = analysis();
        assert_eq!(judge(&a, &sample(100, 1, 120)), Check::Success);
        assert_eq!(
            judge(&a, &sample(100, 2, 120)),
            Check::Failure("5xx 2.0 % > 1.0 %".into())
        );
        assert_eq!(
            judge(&a, &sample(100, 50, 400)),
            Check::Failure("5xx 50.0 % > 1.0 %, p95 400 ms > 300 ms".into())
        );
        // Too few requests says nothing, even with every one failing.
        assert_eq!(
            judge(&a, &sample(49, 49, 9000)),
            Check::Inconclusive("49 requests, 50 needed to judge".into())
        );
        assert_eq!(
            judge(&a, &Sample::default()),
            Check::Inconclusive("0 requests, 50 needed to judge".into())
        );
    }

    #[test]
    fn limits_decide_and_inconclusive_never_counts_as_success() {
        let a = analysis();
        let mut tally = Tally::default();
        let quiet = Check::Inconclusive("0 requests".into());
        assert_eq!(tally.add(&a, &quiet), Standing::Going);
        assert_eq!(tally.add(&a, &quiet), Standing::Going);
        assert_eq!(tally.add(&a, &Check::Success), Standing::Going);
        // The third inconclusive check is one past the limit of 2.
        let Standing::Failed(why) = tally.add(&a, &quiet) else {
            panic!("aborted at the limit")
        };
        assert!(why.contains("3 inconclusive checks (limit 2)"), "{why}");

        let mut tally = Tally::default();
        let bad = Check::Failure("5xx 9.0 % > 1.0 %".into());
        assert_eq!(
            tally.add(&a, &bad),
            Standing::Going,
            "one failure is tolerated"
        );
        assert_eq!(tally.add(&a, &Check::Success), Standing::Going);
        let Standing::Failed(why) = tally.add(&a, &bad) else {
            panic!("aborted past the failure limit")
        };
        assert_eq!(why, "2 failed checks (limit 1): 5xx 9.0 % > 1.0 %");

        let mut tally = Tally::default();
        for _ in 0..2 {
            assert_eq!(tally.add(&a, &Check::Success), Standing::Going);
        }
        assert_eq!(tally.add(&a, &Check::Success), Standing::Passed);
    }

    #[test]
    fn a_sample_reads_its_percentile_by_nearest_rank() {
        let mut latencies: Vec<u64> = (1..=100).collect();
        let sample = Sample::of(3, &mut latencies);
        assert_eq!(
            (sample.requests, sample.errors, sample.p95_ms),
            (100, 3, Some(95))
        );
        assert_eq!(sample.describe(), "100 requests, 5xx 3.0 %, p95 95 ms");
        assert_eq!(Sample::of(0, &mut []).describe(), "0 requests, no requests");
    }
}
