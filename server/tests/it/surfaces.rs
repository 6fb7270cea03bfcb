//! The REST API and the dashboard are two surfaces over the same domain
//! services: the same action gives the same answer and the same audit
//! entry through either — clusters, channels, share links, the ledger
//! (marking stable, rollback, promotion) and reviews of runs and change
//! requests.

use app::dto::Role;
use app::port::{AdminPort, ClustersPort, PortError, SharingPort};
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

crate::on_both! {
    async fn share_links_answer_alike_over_rest_and_the_dashboard(app: TestApp) {
        let world = crate::seed::shop_with_a_change_request(&app).await;
        let id = world.change_request_id;
        let developer_token = app.token("dev", Role::Developer, None).await;
        let viewer_token = app.token("vera", Role::Viewer, None).await;
        let developer = gantry::auth::system_caller(&app.state.db, "dev", Role::Developer)
            .await
            .expect("a caller");
        let viewer = gantry::auth::system_caller(&app.state.db, "vera", Role::Viewer)
            .await
            .expect("a caller");

        // Making a link: through either, audited by the person who did it.
        let rest = app.post_as(&developer_token, &format!("/api/v1/change-requests/{id}/share"), json!({})).await;
        assert_eq!(rest.status, 201, "{}", rest.text());
        let port = app.state.share_change_request(&developer, id).await.expect("made through the port");
        assert_eq!(port.change_request_id, id);
        assert_eq!(audited(&app, "share_link.create").await.len(), 2);
        // A viewer may do neither, and nothing is recorded.
        let rest = app.post_as(&viewer_token, &format!("/api/v1/change-requests/{id}/share"), json!({})).await;
        assert_eq!(rest.status, 403, "{}", rest.text());
        let refused = app.state.share_change_request(&viewer, id).await;
        assert!(matches!(refused, Err(PortError::Forbidden(_))), "{refused:?}");
        assert_eq!(audited(&app, "share_link.create").await.len(), 2);
        // A request that does not exist: not found through either.
        let rest = app.post_as(&developer_token, "/api/v1/change-requests/999999/share", json!({})).await;
        assert_eq!(rest.status, 404, "{}", rest.text());
        let missing = app.state.share_change_request(&developer, 999_999).await;
        assert!(matches!(missing, Err(PortError::NotFound(_))), "{missing:?}");

        // Revoking: through either, audited; twice is a conflict through either.
        let rest_link = rest_link_id(&app, &developer_token, id).await;
        let revoked = app
            .request_as(
                Some(&developer_token),
                axum::http::Request::delete(format!("/api/v1/share-links/{rest_link}"))
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(revoked.status, 204, "{}", revoked.text());
        app.state.revoke_share_link(&developer, port.id).await.expect("revoked through the port");
        assert_eq!(audited(&app, "share_link.revoke").await.len(), 2);
        let again = app.state.revoke_share_link(&developer, rest_link).await;
        assert!(matches!(again, Err(PortError::Conflict(_))), "{again:?}");
        let again = app
            .request_as(
                Some(&developer_token),
                axum::http::Request::delete(format!("/api/v1/share-links/{}", port.id))
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(again.status, 409, "{}", again.text());
    }
}

/// Makes a link over REST and returns its id.
async fn rest_link_id(app: &TestApp, token: &str, request: i64) -> i64 {
    let made = app
        .post_as(
            token,
            &format!("/api/v1/change-requests/{request}/share"),
            json!({}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    made.json()["id"].as_i64().expect("a link id")
}

/// The status the REST API gives the answer the port gave.
fn status_of<T>(port: &Result<T, PortError>) -> u16 {
    match port {
        Ok(_) => 200,
        Err(PortError::Refused(_)) => 400,
        Err(PortError::Forbidden(_)) => 403,
        Err(PortError::NotFound(_)) => 404,
        Err(PortError::Conflict(_)) => 409,
        Err(PortError::Failed(_)) => 500,
        Err(PortError::Unavailable(_)) => 503,
        Err(PortError::Gone(_)) => 410,
    }
}

/// The two surfaces gave the answer `expected` (a status) to one action.
fn agree<T: std::fmt::Debug>(
    action: &str,
    rest: &crate::support::TestResponse,
    port: &Result<T, PortError>,
    expected: u16,
) {
    assert_eq!(rest.status, expected, "{action} over REST: {}", rest.text());
    assert_eq!(
        status_of(port),
        expected,
        "{action} through the port: {port:?}"
    );
}

fn rollback(environment: &str, reason: &str, to: Option<i64>) -> app::dto::RollbackRequest {
    app::dto::RollbackRequest {
        environment: Some(environment.into()),
        reason: reason.into(),
        to,
        faulty: false,
    }
}

fn promotion(environment: &str) -> app::dto::PromoteRequest {
    app::dto::PromoteRequest {
        environment: environment.into(),
        reason: Some("ship the head".into()),
    }
}

crate::on_both! {
    async fn releases_answer_alike_over_rest_and_the_dashboard(backend) {
        use app::port::ReleasesPort;
        use crate::support::flow::{QUICK_STEPS, Repos, live_release, scan, start_with};

        let repos = Repos::new(QUICK_STEPS);
        let app = start_with(backend, &repos, |_| {}).await;
        scan(&app).await;
        let v1 = repos.app.head("latest");
        let release = live_release(&app, "staging", &v1).await;
        let id = release["id"].as_i64().expect("a release id");
        let admin_token = app.token("ada", Role::Admin, None).await;
        let developer_token = app.token("dev", Role::Developer, None).await;
        let admin = gantry::auth::system_caller(&app.state.db, "ada", Role::Admin).await.expect("a caller");
        let developer = gantry::auth::system_caller(&app.state.db, "dev", Role::Developer).await.expect("a caller");
        let state = &app.state;

        // Marking stable: refused to a developer, not found, done once, then a conflict.
        let stable = |token: &str, release: i64| {
            let token = token.to_string();
            let app = &app;
            async move { app.post_as(&token, &format!("/api/v1/releases/{release}/stable"), json!({})).await }
        };
        agree("a developer marks stable", &stable(&developer_token, id).await, &state.mark_release_stable(&developer, id, None).await, 403);
        agree("marking a missing release", &stable(&admin_token, 999_999).await, &state.mark_release_stable(&admin, 999_999, None).await, 404);
        let marked = state.mark_release_stable(&admin, id, Some("verified by hand".into())).await.expect("marked");
        assert_eq!(marked.stable_by.as_deref(), Some("ada"));
        agree("marking a stable release again", &stable(&admin_token, id).await, &state.mark_release_stable(&admin, id, None).await, 409);
        assert_eq!(audited(&app, "release.mark_stable").await.len(), 1);

        // Rolling back: each refusal alike, and none of them recorded.
        let rest_rollback = |token: &str, app_name: &str, body: Value| {
            let (token, path) = (token.to_string(), format!("/api/v1/apps/{app_name}/rollback"));
            let app = &app;
            async move { app.post_as(&token, &path, body).await }
        };
        agree(
            "a developer rolls back",
            &rest_rollback(&developer_token, "shop", json!({ "environment": "staging", "reason": "it is broken" })).await,
            &state.rollback(&developer, "shop".into(), rollback("staging", "it is broken", None)).await,
            403,
        );
        agree(
            "a rollback without a reason",
            &rest_rollback(&admin_token, "shop", json!({ "environment": "staging", "reason": "" })).await,
            &state.rollback(&admin, "shop".into(), rollback("staging", "", None)).await,
            400,
        );
        agree(
            "a rollback of a missing app",
            &rest_rollback(&admin_token, "nope", json!({ "environment": "staging", "reason": "it is broken" })).await,
            &state.rollback(&admin, "nope".into(), rollback("staging", "it is broken", None)).await,
            404,
        );
        agree(
            "a rollback with nothing older to go to",
            &rest_rollback(&admin_token, "shop", json!({ "environment": "staging", "reason": "it is broken" })).await,
            &state.rollback(&admin, "shop".into(), rollback("staging", "it is broken", None)).await,
            409,
        );
        agree(
            "a rollback to what already serves",
            &rest_rollback(&admin_token, "shop", json!({ "environment": "staging", "reason": "it is broken", "to": id })).await,
            &state.rollback(&admin, "shop".into(), rollback("staging", "it is broken", Some(id))).await,
            409,
        );
        assert!(audited(&app, "release.rollback").await.is_empty());

        // Promoting: refused to a developer, not found, and done through
        // either with the same answer, each audited once.
        let rest_promote = |token: &str, app_name: &str| {
            let (token, path) = (token.to_string(), format!("/api/v1/apps/{app_name}/promote"));
            let app = &app;
            async move { app.post_as(&token, &path, json!({ "environment": "staging", "reason": "ship the head" })).await }
        };
        agree("a developer promotes", &rest_promote(&developer_token, "shop").await, &state.promote(&developer, "shop".into(), promotion("staging")).await, 403);
        agree("promoting a missing app", &rest_promote(&admin_token, "nope").await, &state.promote(&admin, "nope".into(), promotion("staging")).await, 404);
        assert!(audited(&app, "environment.promote").await.is_empty());
        let rest = rest_promote(&admin_token, "shop").await;
        let port = state.promote(&admin, "shop".into(), promotion("staging")).await;
        agree("an admin promotes", &rest, &port, 200);
        let rest: app::dto::Promotion = serde_json::from_value(rest.json()).expect("a promotion");
        assert_eq!(rest, port.expect("promoted"));
        assert!(rest.detail.contains("already serves"), "{rest:?}");
        assert_eq!(audited(&app, "environment.promote").await.len(), 2);
    }
}

crate::on_both! {
    async fn reviews_answer_alike_over_rest_and_the_dashboard(app: TestApp) {
        use app::dto::{Review, ReviewAction};
        use app::port::{ChangeRequestsPort, RunsPort};

        let world = crate::seed::shop_with_a_change_request(&app).await;
        let (run, request) = (world.run_id, world.change_request_id);
        let admin_token = app.token("ada", Role::Admin, None).await;
        let viewer_token = app.token("vera", Role::Viewer, None).await;
        let admin = gantry::auth::system_caller(&app.state.db, "ada", Role::Admin).await.expect("a caller");
        let viewer = gantry::auth::system_caller(&app.state.db, "vera", Role::Viewer).await.expect("a caller");
        let review = |action| Review { action, comment: Some("looked at it".into()) };
        let state = &app.state;
        let body = json!({ "comment": "looked at it" });

        // A held run: refused to a viewer, not found, decided once, then a conflict.
        agree(
            "a viewer approves a run",
            &app.post_as(&viewer_token, &format!("/api/v1/runs/{run}/approve"), body.clone()).await,
            &state.review_run(&viewer, run, review(ReviewAction::Approve)).await,
            403,
        );
        agree(
            "approving a missing run",
            &app.post_as(&admin_token, "/api/v1/runs/999999/approve", body.clone()).await,
            &state.review_run(&admin, 999_999, review(ReviewAction::Approve)).await,
            404,
        );
        agree(
            "overriding a hold without a reason",
            &app.post_as(&admin_token, &format!("/api/v1/runs/{run}/override"), json!({ "comment": "" })).await,
            &state.review_run(&admin, run, Review { action: ReviewAction::Override, comment: None }).await,
            400,
        );
        assert!(audited(&app, "run.reject").await.is_empty());
        assert!(audited(&app, "run.override").await.is_empty());
        let rejected = state.review_run(&admin, run, review(ReviewAction::Reject)).await.expect("rejected");
        assert!(rejected.contains("rejected"), "{rejected}");
        agree(
            "rejecting a decided run again",
            &app.post_as(&admin_token, &format!("/api/v1/runs/{run}/reject"), body.clone()).await,
            &state.review_run(&admin, run, review(ReviewAction::Reject)).await,
            409,
        );
        assert_eq!(audited(&app, "run.reject").await, [format!("\"shop/production run {run}\" by \"ada\"")]);

        // A change request: the same pattern.
        agree(
            "a viewer approves a change request",
            &app.post_as(&viewer_token, &format!("/api/v1/change-requests/{request}/approve"), body.clone()).await,
            &state.review_change_request(&viewer, request, review(ReviewAction::Approve)).await,
            403,
        );
        agree(
            "approving a missing change request",
            &app.post_as(&admin_token, "/api/v1/change-requests/999999/approve", body.clone()).await,
            &state.review_change_request(&admin, 999_999, review(ReviewAction::Approve)).await,
            404,
        );
        agree(
            "overriding a change request's policy without a reason",
            &app.post_as(&admin_token, &format!("/api/v1/change-requests/{request}/override"), json!({ "comment": "" })).await,
            &state.review_change_request(&admin, request, Review { action: ReviewAction::Override, comment: None }).await,
            400,
        );
        agree(
            "a viewer closes someone's change request",
            &app.post_as(&viewer_token, &format!("/api/v1/change-requests/{request}/close"), json!({})).await,
            &state.review_change_request(&viewer, request, Review { action: ReviewAction::Close, comment: None }).await,
            403,
        );
        // Opening: refused to a viewer; an app named in the body that does
        // not exist is a wrong request (400), not a missing resource.
        let opening = |app_name: &str| app::dto::NewChangeRequest {
            app: app_name.into(),
            source_branch: "feature-search".into(),
            target_branch: None,
            title: Some("Search".into()),
            description: None,
        };
        let body_for = |app_name: &str| serde_json::to_value(opening(app_name)).expect("json");
        agree(
            "a viewer opens a change request",
            &app.post_as(&viewer_token, "/api/v1/change-requests", body_for("shop")).await,
            &state.open_change_request(&viewer, opening("shop")).await,
            403,
        );
        agree(
            "opening a change request for a missing app",
            &app.post_as(&admin_token, "/api/v1/change-requests", body_for("nope")).await,
            &state.open_change_request(&admin, opening("nope")).await,
            400,
        );
        // Feedback: refused to a viewer, and left once through each.
        agree(
            "a viewer leaves feedback",
            &app.post_as(&viewer_token, &format!("/api/v1/change-requests/{request}/feedback"), body.clone()).await,
            &state.review_change_request(&viewer, request, review(ReviewAction::Feedback)).await,
            403,
        );
        agree(
            "an admin leaves feedback",
            &app.post_as(&admin_token, &format!("/api/v1/change-requests/{request}/feedback"), json!({ "comment": "the basket is faster" })).await,
            &state.review_change_request(&admin, request, Review { action: ReviewAction::Feedback, comment: Some("the basket is faster".into()) }).await,
            200,
        );
        assert_eq!(audited(&app, "feedback.add").await.len(), 2);
        assert!(audited(&app, "change_request.open").await.is_empty());
        assert!(audited(&app, "change_request.close").await.is_empty());
        assert!(audited(&app, "change_request.override").await.is_empty());
        let closed = state.review_change_request(&admin, request, review(ReviewAction::Reject)).await.expect("rejected");
        assert_eq!(closed.id, request);
        agree(
            "rejecting a rejected change request",
            &app.post_as(&admin_token, &format!("/api/v1/change-requests/{request}/reject"), body.clone()).await,
            &state.review_change_request(&admin, request, review(ReviewAction::Reject)).await,
            409,
        );
        assert_eq!(audited(&app, "change_request.reject").await.len(), 1);
    }
}
