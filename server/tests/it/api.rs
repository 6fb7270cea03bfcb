//! The REST API under /api/v1 and its OpenAPI document.

use app::dto::RunState;
use axum::http::StatusCode;

use crate::on_both;
use crate::seed::{COMMIT, shop_with_a_run};

on_both! {
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
                "started_at": null,
                "trigger": "push",
                "commit_message": null,
                "actor": null,
                "reason": null,
                "superseded_by": null,
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

on_both! {
    async fn api_tokens_are_created_up_to_ones_role_listed_and_revoked(app: TestApp) {
        let dev = app.token("dev", app::dto::Role::Developer, None).await;
        let make = |role: &str| serde_json::json!({ "name": "ci", "role": role, "expires": "1d" });
        let too_much = app.post_as(&dev, "/api/v1/tokens", make("admin")).await;
        assert_eq!(too_much.status, StatusCode::FORBIDDEN, "{}", too_much.text());
        let bad = app.post_as(&dev, "/api/v1/tokens", serde_json::json!({ "name": "ci", "role": "root" })).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.text().contains("role: unknown role \\\"root\\\""), "{}", bad.text());

        let created = app.post_as(&dev, "/api/v1/tokens", make("tester")).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let new = created.json();
        let secret = new["token"].as_str().unwrap().to_string();
        let id = new["id"].as_i64().unwrap();

        // The new token works, with its own (smaller) role.
        let request = axum::http::Request::get("/api/v1/settings").body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.request_as(Some(&secret), request).await.status, StatusCode::FORBIDDEN);
        let request = axum::http::Request::get("/api/v1/me").body(axum::body::Body::empty()).unwrap();
        let me = app.request_as(Some(&secret), request).await.json();
        assert_eq!(me["grants"][0]["role"], "tester");

        // Listed for its owner (never the secret), hidden from others.
        let request = axum::http::Request::get("/api/v1/tokens").body(axum::body::Body::empty()).unwrap();
        let listed = app.request_as(Some(&dev), request).await;
        assert!(!listed.text().contains(&secret));
        let names: Vec<String> = listed.json().as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
        assert!(names.contains(&"ci".to_string()) && names.iter().all(|n| n != "test-admin token"), "{names:?}");
        let other = app.token("other", app::dto::Role::Developer, None).await;
        let request = axum::http::Request::delete(format!("/api/v1/tokens/{id}")).body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.request_as(Some(&other), request).await.status, StatusCode::NOT_FOUND);

        // Revoked by its owner: refused from then on, and audited.
        let request = axum::http::Request::delete(format!("/api/v1/tokens/{id}")).body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.request_as(Some(&dev), request).await.status, StatusCode::NO_CONTENT);
        let request = axum::http::Request::get("/api/v1/me").body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.request_as(Some(&secret), request).await.status, StatusCode::UNAUTHORIZED);
        let audit = app.get("/api/v1/audit?action=token").await.json();
        let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["token.revoke", "token.create"]);
    }

    async fn the_audit_log_filters_by_person_action_target_and_time(app: TestApp) {
        let pool = app.db().pool();
        let entries = [
            (1_000, "ada", "change_request.approve", "shop change request 1"),
            (2_000, "bo", "change_request.merge", "shop change request 1"),
            (3_000, "ada", "run.approve", "shop/production run 7"),
            (4_000, "ada", "secret.set", "secret 100%_SURE"),
        ];
        for (at, actor, action, target) in entries {
            gantry::db::audit::record(
                pool,
                &gantry::db::audit::NewEntry { actor, action, target, reason: None, source_ip: Some("10.0.0.1"), detail: "{}" },
                at,
            )
            .await
            .unwrap();
        }
        let ids = |query: &str| {
            let query = query.to_string();
            let app = &app;
            async move {
                let found = app.get(&format!("/api/v1/audit?{query}")).await;
                assert_eq!(found.status, StatusCode::OK, "{query}: {}", found.text());
                found.json().as_array().unwrap().iter().map(|e| e["at"].as_i64().unwrap()).collect::<Vec<_>>()
            }
        };
        assert_eq!(ids("actor=ada").await, [4_000, 3_000, 1_000]);
        assert_eq!(ids("action=change_request").await, [2_000, 1_000], "a family");
        assert_eq!(ids("action=run.approve").await, [3_000], "one action");
        assert_eq!(ids("action=change").await, Vec::<i64>::new(), "not a prefix match");
        assert_eq!(ids("target=request%201").await, [2_000, 1_000]);
        assert_eq!(ids("target=100%25_").await, [4_000], "% and _ are literal");
        assert_eq!(ids("target=1%25").await, Vec::<i64>::new());
        assert_eq!(ids("since=2000&until=4000").await, [3_000, 2_000]);
        assert_eq!(ids("actor=ada&limit=1").await, [4_000]);
        let page = app.get("/audit?actor=bo").await.text();
        assert!(page.contains("change_request.merge") && !page.contains("run.approve"), "the page filters too");
    }
}
