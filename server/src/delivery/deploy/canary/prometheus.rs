//! A canary check that asks Prometheus: an instant query whose every value
//! must be at or under the threshold. A server that cannot be reached, a
//! query that fails and a query with no data are inconclusive: they say
//! nothing of the canary, and never count as a success.

use std::time::Duration;

use super::Trouble;
use super::analysis::Check;
use crate::gitops::strategy::PrometheusCheck;

/// The longest a query may take before the check is inconclusive.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer that is read: a query matching thousands of
/// series is a mistake, not a measurement.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What the query's `{{ … }}` placeholders stand for.
pub struct Scope<'s> {
    pub app: &'s str,
    pub environment: &'s str,
    pub namespace: &'s str,
}

/// The query with its placeholders filled in.
pub fn query_for(check: &PrometheusCheck, scope: &Scope<'_>) -> String {
    check
        .query
        .replace("{{ app }}", scope.app)
        .replace("{{ environment }}", scope.environment)
        .replace("{{ namespace }}", scope.namespace)
}

/// Runs one check: its verdict and what was read, for the log.
pub async fn check(
    client: &reqwest::Client,
    check: &PrometheusCheck,
    scope: &Scope<'_>,
) -> (Check, String) {
    let query = query_for(check, scope);
    let host = crate::outbound::host_of(&check.url);
    let answer = async {
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/query", check.url),
            [("query", query.as_str())],
        )
        .map_err(|_| Trouble(format!("{host}: not a valid address")))?;
        let response = client
            .get(url)
            .timeout(QUERY_TIMEOUT)
            .send()
            .await
            .map_err(|e| Trouble(format!("{host} did not answer: {}", e.without_url())))?;
        let status = response.status();
        let body = read_bounded(response)
            .await
            .map_err(|e| Trouble(format!("{host}: {e}")))?;
        if !status.is_success() && status != reqwest::StatusCode::UNPROCESSABLE_ENTITY {
            return Err(Trouble(format!("{host} answered {status}")));
        }
        Ok(body)
    }
    .await;
    match answer.and_then(|body| values_of(&body)) {
        Err(why) => (
            Check::Inconclusive(format!("prometheus: {why}")),
            format!("prometheus: {why}"),
        ),
        Ok(values) if values.is_empty() => (
            Check::Inconclusive("prometheus: the query returned no data".into()),
            "prometheus: no data".into(),
        ),
        Ok(values) => judge(check.threshold, &values),
    }
}

/// Every value within the threshold passes; the worst is what is shown.
fn judge(threshold: f64, values: &[f64]) -> (Check, String) {
    if values.iter().any(|v| v.is_nan()) {
        return (
            Check::Inconclusive("prometheus: the query returned NaN (no rate yet)".into()),
            "prometheus: NaN".into(),
        );
    }
    let worst = values.iter().copied().fold(f64::MIN, f64::max);
    let read = format!("prometheus {worst} (threshold {threshold})");
    if worst > threshold {
        (
            Check::Failure(format!("prometheus {worst} > {threshold}")),
            read,
        )
    } else {
        (Check::Success, read)
    }
}

async fn read_bounded(mut response: reqwest::Response) -> Result<String, Trouble> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Trouble(format!("the answer broke off: {}", e.without_url())))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            return Err(Trouble(format!(
                "the answer is over {} KiB: narrow the query to a few series",
                MAX_ANSWER_BYTES / 1024
            )));
        }
    }
    String::from_utf8(body).map_err(|_| Trouble("the answer is not UTF-8".into()))
}

/// The values of an instant query's answer (Prometheus' HTTP API: a
/// vector or a scalar); an error answer's message.
pub fn values_of(body: &str) -> Result<Vec<f64>, Trouble> {
    let answer: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| Trouble("the answer is not Prometheus' JSON".into()))?;
    if answer["status"] != "success" {
        let error = answer["error"].as_str().unwrap_or("no reason given");
        return Err(Trouble(format!(
            "the query failed: {}",
            error.chars().take(200).collect::<String>()
        )));
    }
    let data = &answer["data"];
    let number = |pair: &serde_json::Value| -> Result<f64, Trouble> {
        pair[1]
            .as_str()
            .and_then(|text| text.parse::<f64>().ok())
            .ok_or_else(|| Trouble("a value in the answer is not a number".into()))
    };
    match data["resultType"].as_str() {
        Some("scalar") => Ok(vec![number(&data["result"])?]),
        Some("vector") => data["result"]
            .as_array()
            .map(|series| series.iter().map(|s| number(&s["value"])).collect())
            .unwrap_or_else(|| Ok(Vec::new())),
        Some(other) => Err(Trouble(format!(
            "the query returns a {other}; an instant vector or scalar is needed"
        ))),
        None => Err(Trouble("the answer has no resultType".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_and_scalars_are_read_and_errors_are_reasons() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"a"},"value":[1700000000.1,"0.02"]},
            {"metric":{"pod":"b"},"value":[1700000000.1,"0.5"]}]}}"#;
        assert_eq!(values_of(vector).expect("read"), vec![0.02, 0.5]);
        let scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"3"]}}"#;
        assert_eq!(values_of(scalar).expect("read"), vec![3.0]);
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(values_of(empty).expect("read").is_empty());
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        assert_eq!(
            values_of(error).unwrap_err().0,
            "the query failed: parse error at char 4"
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(values_of(matrix).unwrap_err().0.contains("matrix"));
        assert!(values_of("<html>").is_err());
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert!(values_of(nan).expect("read")[0].is_nan());
    }

    #[test]
    fn the_worst_value_decides_and_nan_is_no_verdict() {
        assert_eq!(judge(0.05, &[0.01, 0.05]).0, Check::Success);
        assert!(
            matches!(judge(0.05, &[0.01, 0.5]).0, Check::Failure(why) if why.contains("0.5 > 0.05"))
        );
        assert!(matches!(judge(0.05, &[f64::NAN]).0, Check::Inconclusive(_)));
    }

    #[tokio::test]
    async fn an_unreachable_server_or_a_failing_query_is_inconclusive_never_a_success() {
        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let check = PrometheusCheck {
            url: format!("http://127.0.0.1:{port}"),
            query: "up".into(),
            threshold: 1.0,
        };
        let scope = Scope {
            app: "shop",
            environment: "production",
            namespace: "shop-production",
        };
        let (verdict, said) = super::check(&reqwest::Client::new(), &check, &scope).await;
        assert!(
            matches!(&verdict, Check::Inconclusive(why) if why.contains("127.0.0.1 did not answer")),
            "{verdict:?}"
        );
        assert!(said.starts_with("prometheus: "), "{said}");
        // A server that answers something else than Prometheus' JSON.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let router = axum::Router::new().route(
                "/api/v1/query",
                axum::routing::get(|| async {
                    (axum::http::StatusCode::BAD_GATEWAY, "upstream down")
                }),
            );
            let _ = axum::serve(listener, router).await;
        });
        let check = PrometheusCheck {
            url: format!("http://127.0.0.1:{port}"),
            ..check
        };
        let (verdict, _) = super::check(&reqwest::Client::new(), &check, &scope).await;
        assert!(
            matches!(&verdict, Check::Inconclusive(why) if why.contains("answered 502")),
            "{verdict:?}"
        );
    }

    #[test]
    fn placeholders_are_filled_in() {
        let check = PrometheusCheck {
            url: "http://prom:9090".into(),
            query: "rate(errors{app=\"{{ app }}\",namespace=\"{{ namespace }}\",env=\"{{ environment }}\"}[1m])".into(),
            threshold: 0.0,
        };
        let scope = Scope {
            app: "shop",
            environment: "production",
            namespace: "shop-production",
        };
        assert_eq!(
            query_for(&check, &scope),
            "rate(errors{app=\"shop\",namespace=\"shop-production\",env=\"production\"}[1m])"
        );
    }
}
