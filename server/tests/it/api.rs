//! The REST API under /api/v1 and its OpenAPI document.

use app::dto::RunState;
use axum::http::StatusCode;

use crate::both_backends;
use crate::seed::{COMMIT, shop_with_a_run};

both_backends! {
    async fn lists_are_empty_on_a_fresh_database(app: TestApp) {
        for path in ["environments", "runs", "change-requests", "releases", "approvals", "clusters", "audit"] {
            let response = app.get(&format!("/api/v1/{path}")).await;
            assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.text());
            assert_eq!(response.json(), serde_json::json!([]), "{path}");
        }
    }

    async fn runs_and_environments_read_back_what_was_stored(app: TestApp) {
        let seeded = shop_with_a_run(&app, RunState::Running).await;

        let runs = app.get("/api/v1/runs").await.json();
        assert_eq!(
            runs,
            serde_json::json!([{
                "id": seeded.run_id,
                "app": "shop",
                "environment": "staging",
                "branch": "latest",
                "commit_sha": COMMIT,
                "state": "running",
                "created_at": 1_795_846_453_000_i64,
                "finished_at": null,
            }])
        );

        let environments = app.get("/api/v1/environments").await.json();
        assert_eq!(environments[0]["app"], "shop");
        assert_eq!(environments[0]["name"], "staging");
        assert_eq!(environments[0]["branch"], "latest");
        assert_eq!(environments[0]["state"], "pending");
        assert_eq!(environments[0]["commit_sha"], serde_json::Value::Null);
    }

    async fn a_run_waiting_for_approval_is_in_the_approvals_inbox(app: TestApp) {
        let seeded = shop_with_a_run(&app, RunState::WaitingForApproval).await;
        let pending = app.get("/api/v1/approvals").await.json();
        assert_eq!(pending[0]["run_id"], seeded.run_id);
        assert_eq!(pending[0]["environment"], "staging");

        sqlx::query("UPDATE runs SET state = $1 WHERE id = $2")
            .bind(RunState::Succeeded.as_str())
            .bind(seeded.run_id)
            .execute(app.db().pool())
            .await
            .expect("update");
        assert_eq!(app.get("/api/v1/approvals").await.json(), serde_json::json!([]));
    }

    async fn settings_say_where_each_value_came_from(app: TestApp) {
        let settings = app.get("/api/v1/settings").await.json();
        assert_eq!(settings["database_backend"], app.db().backend().name());
        let sources = settings["sources"].as_array().expect("sources");
        let data_dir = sources.iter().find(|s| s["key"] == "storage.data_dir").expect("data dir");
        assert_eq!(data_dir["source"], "flag --data-dir");
        let bind = sources.iter().find(|s| s["key"] == "server.bind").expect("bind");
        assert_eq!(bind["source"], "flag --bind");
    }

    async fn unknown_api_routes_answer_a_json_404(app: TestApp) {
        let response = app.get("/api/v1/no-such-thing").await;
        assert_eq!(response.status, StatusCode::NOT_FOUND);
        // The same body runs for both backends, so the snapshot is shared.
        insta::allow_duplicates! {
            insta::assert_json_snapshot!(response.json(), @r#"
            {
              "error": {
                "code": "not_found",
                "message": "no API route at /api/v1/no-such-thing"
              }
            }
            "#);
        }
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = crate::support::TestApp::sqlite().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status, StatusCode::OK);
    let document = response.json();
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/environments",
        "/api/v1/runs",
        "/api/v1/change-requests",
        "/api/v1/releases",
        "/api/v1/approvals",
        "/api/v1/clusters",
        "/api/v1/audit",
        "/api/v1/settings",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert!(
        document["components"]["schemas"]["RunState"]["enum"]
            .as_array()
            .expect("RunState is an enum")
            .contains(&serde_json::json!("waiting_for_approval"))
    );
}
