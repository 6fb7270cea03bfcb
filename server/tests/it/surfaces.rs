//! The REST API and the dashboard are two surfaces over the same domain
//! services: the same action gives the same answer and the same audit
//! entry through either.

use app::dto::Role;
use app::port::{AdminPort, ClustersPort, PortError};
use kube_emulator::{Emulator, Options};
use serde_json::{Value, json};

use crate::support::TestApp;

fn registration(name: &str, kubeconfig: &str) -> app::dto::ClusterRegistration {
    serde_json::from_value(json!({ "name": name, "kubeconfig": kubeconfig }))
        .expect("a registration")
}

async fn audited(app: &TestApp, action: &str) -> Vec<String> {
    let audit: Value = app.get("/api/v1/audit").await.json();
    audit
        .as_array()
        .or_else(|| audit["entries"].as_array())
        .expect("audit entries")
        .iter()
        .filter(|entry| entry["action"] == action)
        .map(|entry| format!("{} by {}", entry["target"], entry["actor"]))
        .collect()
}

crate::on_both! {
    async fn clusters_answer_alike_over_rest_and_the_dashboard(app: TestApp) {
        let cluster = Emulator::start(Options::default()).await.expect("emulator");
        let kubeconfig = cluster.kubeconfig("ctx");
        let admin_token = app.token("ada", Role::Admin, None).await;
        let admin = gantry::auth::system_caller(&app.state.db, "ada", Role::Admin)
            .await
            .expect("a caller");
        let developer = gantry::auth::system_caller(&app.state.db, "dev", Role::Developer)
            .await
            .expect("a caller");

        // Registering: both audited, by the person who did it.
        let rest = app
            .post_as(&admin_token, "/api/v1/clusters", json!({ "name": "via-rest", "kubeconfig": kubeconfig }))
            .await;
        assert_eq!(rest.status, 201, "{}", rest.text());
        let port = app
            .state
            .register_cluster(&admin, registration("via-port", &kubeconfig))
            .await
            .expect("registered through the port");
        assert_eq!(port.name, "via-port");
        let registered = audited(&app, "cluster.register").await;
        assert!(
            registered.iter().any(|e| e.contains("via-rest") && e.contains("ada"))
                && registered.iter().any(|e| e.contains("via-port") && e.contains("ada")),
            "{registered:?}"
        );

        // A cluster that does not exist: not found through either.
        let rest = app.post_as(&admin_token, "/api/v1/clusters/nope/check", json!({})).await;
        assert_eq!(rest.status, 404, "{}", rest.text());
        let port = app.state.check_cluster(&admin, "nope".into()).await;
        assert!(matches!(port, Err(PortError::NotFound(_))), "{port:?}");

        // Registered twice: a conflict through either.
        let rest = app
            .post_as(&admin_token, "/api/v1/clusters", json!({ "name": "via-port", "kubeconfig": kubeconfig }))
            .await;
        assert_eq!(rest.status, 409, "{}", rest.text());
        let port = app.state.register_cluster(&admin, registration("via-rest", &kubeconfig)).await;
        assert!(matches!(port, Err(PortError::Conflict(_))), "{port:?}");

        // A developer may do neither, and nothing is recorded.
        let developer_token = app.token("dev", Role::Developer, None).await;
        let rest = app
            .post_as(&developer_token, "/api/v1/clusters", json!({ "name": "by-dev", "kubeconfig": kubeconfig }))
            .await;
        assert_eq!(rest.status, 403, "{}", rest.text());
        let port = app.state.register_cluster(&developer, registration("by-dev", &kubeconfig)).await;
        assert!(matches!(port, Err(PortError::Forbidden(_))), "{port:?}");
        assert_eq!(audited(&app, "cluster.register").await.len(), 2);

        // Removing over REST is audited too.
        let removed = app
            .request_as(
                Some(&admin_token),
                axum::http::Request::delete("/api/v1/clusters/via-rest")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(removed.status, 204, "{}", removed.text());
        let removals = audited(&app, "cluster.remove").await;
        assert!(removals.iter().any(|e| e.contains("via-rest")), "{removals:?}");
    }
}

async fn put(app: &TestApp, token: &str, body: Value) -> crate::support::TestResponse {
    app.request_as(
        Some(token),
        axum::http::Request::put("/api/v1/channels/team")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .expect("request"),
    )
    .await
}

crate::on_both! {
    async fn channels_answer_alike_over_rest_and_the_dashboard(app: TestApp) {
        let admin_token = app.token("ada", Role::Admin, None).await;
        let developer_token = app.token("dev", Role::Developer, None).await;
        let admin = gantry::auth::system_caller(&app.state.db, "ada", Role::Admin)
            .await
            .expect("a caller");
        let developer = gantry::auth::system_caller(&app.state.db, "dev", Role::Developer)
            .await
            .expect("a caller");
        let hook = app
            .request_as(
                Some(&admin_token),
                axum::http::Request::put("/api/v1/secrets/HOOK_URL")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(json!({ "value": "http://127.0.0.1:9/hook" }).to_string()))
                    .expect("request"),
            )
            .await;
        assert!(hook.status.is_success(), "{}", hook.text());

        // A developer registers nothing, and nothing is recorded.
        let refused = put(&app, &developer_token, json!({ "kind": "webhook", "url_secret": "HOOK_URL" })).await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        assert!(audited(&app, "channel.set").await.is_empty());
        // A wrong field is named, and nothing is stored.
        let wrong = put(&app, &admin_token, json!({ "kind": "pager", "url_secret": "HOOK_URL" })).await;
        assert_eq!(wrong.status, 400, "{}", wrong.text());
        assert!(wrong.text().contains("pager"), "{}", wrong.text());
        let registered = put(&app, &admin_token, json!({ "kind": "webhook", "url_secret": "HOOK_URL" })).await;
        assert_eq!(registered.status, 204, "{}", registered.text());
        assert_eq!(audited(&app, "channel.set").await, ["\"channel team\" by \"ada\""]);

        // Listing: the same channels through either; developers see none.
        let rest = app.get_as(&admin_token, "/api/v1/channels").await.json();
        let port = app.state.channels(&admin).await.expect("listed");
        let names = |v: &Value| v.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&rest), port.iter().map(|c| c.name.clone()).collect::<Vec<_>>());
        assert_eq!(app.get_as(&developer_token, "/api/v1/channels").await.status, 403);
        assert!(matches!(app.state.channels(&developer).await, Err(PortError::Forbidden(_))));

        // A test message: queued through either; an unknown channel is not found.
        let rest = app.post_as(&admin_token, "/api/v1/channels/team/test", json!({})).await;
        assert_eq!(rest.status, 202, "{}", rest.text());
        app.state.test_channel(&admin, "team".into()).await.expect("queued");
        let log = app.get_as(&admin_token, "/api/v1/channels/team/deliveries").await.json();
        assert_eq!(log.as_array().unwrap().iter().filter(|d| d["event"] == "test").count(), 2, "{log}");
        let rest = app.post_as(&admin_token, "/api/v1/channels/nope/test", json!({})).await;
        assert_eq!(rest.status, 404, "{}", rest.text());
        let port = app.state.test_channel(&admin, "nope".into()).await;
        assert!(matches!(port, Err(PortError::NotFound(_))), "{port:?}");
        let port = app.state.test_channel(&developer, "team".into()).await;
        assert!(matches!(port, Err(PortError::Forbidden(_))), "{port:?}");
    }
}
