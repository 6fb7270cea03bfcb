//! The REST API and the dashboard are two surfaces over the same domain
//! services: the same action gives the same answer and the same audit
//! entry through either.

use app::dto::Role;
use app::port::{DashboardPort, PortError};
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
