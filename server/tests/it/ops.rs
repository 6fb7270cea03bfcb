//! Liveness, readiness, metrics, request ids, compression and body limits.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::on_both;

on_both! {
    async fn healthz_reports_the_version(app: TestApp) {
        let response = app.get("/healthz").await;
        assert_eq!(response.status, StatusCode::OK);
        let body = response.json();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    }

    async fn readyz_is_ready_once_migrated_and_not_before(app: TestApp) {
        let response = app.get("/readyz").await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.json()["database"], app.db().backend().name());

        // Forget the last migration: the schema no longer matches the binary.
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
            .execute(app.db().pool())
            .await
            .expect("delete migration row");
        let response = app.get("/readyz").await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.json()["status"], "not_ready");
        assert!(response.json()["reason"].as_str().unwrap_or_default().contains("not migrated"));
    }

    async fn metrics_count_requests_by_route_template(app: TestApp) {
        app.get("/healthz").await;
        app.get("/api/v1/runs").await;
        let response = app.get("/metrics").await;
        assert_eq!(response.status, StatusCode::OK);
        assert!(response.header("content-type").unwrap_or_default().starts_with("text/plain"));
        let text = response.text();
        assert!(
            text.lines().any(|line| line.starts_with("gantry_http_requests_total{")
                && line.contains("route=\"/healthz\"")
                && line.contains("status=\"200\"")),
            "{text}"
        );
        assert!(text.contains("route=\"/api/v1/runs\""), "{text}");
        assert!(text.contains("gantry_http_request_duration_seconds_bucket"), "{text}");
        assert!(text.contains("gantry_build_info"), "{text}");
    }

    async fn every_response_carries_a_request_id_and_keeps_a_given_one(app: TestApp) {
        let generated = app.get("/healthz").await;
        let id = generated.header("x-request-id").expect("a request id");
        assert_eq!(id.len(), 36, "a UUID: {id}");

        let request = Request::get("/healthz")
            .header("x-request-id", "trace-me-42")
            .body(Body::empty())
            .expect("request");
        let response = app.request(request).await;
        assert_eq!(response.header("x-request-id"), Some("trace-me-42"));
    }

    async fn pages_are_compressed_for_clients_that_accept_it(app: TestApp) {
        let request = Request::get("/")
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .expect("request");
        let response = app.request(request).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.header("content-encoding"), Some("gzip"));
    }

    async fn request_bodies_over_the_limit_are_refused(app: TestApp) {
        let limit = usize::try_from(app.state.config.max_body_bytes).expect("fits");
        let request = Request::post("/fn/list_runs")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", (limit + 1).to_string())
            .body(Body::from(vec![b'a'; limit + 1]))
            .expect("request");
        let response = app.request(request).await;
        assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}

// The database out of reach (the link to PostgreSQL cut: connections drop,
// new ones are refused): both surfaces answer 503 with Retry-After, as for
// a git or cluster outage, not 500 — and answer again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_503_with_retry_after_on_both_surfaces() {
    use crate::support::database_link::DatabaseLink;
    use gantry::config::DatabaseTarget;
    let link = DatabaseLink::for_url(&crate::support::postgres_admin_url()).await;
    let app = crate::support::TestApp::with_config("postgres", |config| {
        if let DatabaseTarget::Postgres(url) = &config.database {
            config.database = DatabaseTarget::Postgres(link.url(url));
        }
        config.dev_login = true;
    })
    .await;
    let browser = app.sign_in("ada", "developer").await;
    let as_browser = || {
        Request::get("/api/v1/runs")
            .header("cookie", &browser.cookie)
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(app.get("/api/v1/runs").await.status, StatusCode::OK);
    assert_eq!(
        app.request_as(None, as_browser()).await.status,
        StatusCode::OK
    );
    assert_eq!(app.server_fn("list_runs").await.status, StatusCode::OK);

    link.cut();
    let api = app.get("/api/v1/runs").await;
    assert_eq!(
        api.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        api.text()
    );
    assert_eq!(api.header("retry-after"), Some("5"));
    assert_eq!(api.json()["error"]["code"], "unavailable", "{}", api.text());
    // Signed in with a session: its store is the database too.
    let session = app.request_as(None, as_browser()).await;
    assert_eq!(
        session.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        session.text()
    );
    assert_eq!(session.header("retry-after"), Some("5"));
    let dashboard = app.server_fn("list_runs").await;
    assert_eq!(
        dashboard.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        dashboard.text()
    );
    assert_eq!(dashboard.header("retry-after"), Some("5"));
    assert!(
        dashboard.text().contains("try again later"),
        "{}",
        dashboard.text()
    );

    link.restore();
    crate::support::flow::wait_for(
        "the API to answer again",
        crate::support::flow::MINUTE,
        || async { (app.get("/api/v1/runs").await.status == StatusCode::OK).then_some(()) },
    )
    .await;
}
