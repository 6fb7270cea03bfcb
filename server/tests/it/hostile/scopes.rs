//! Powers that stop at their scope: an admin or developer of one app tries
//! the global and the other app's actions the services guard — secrets,
//! tokens, hook tokens, cancelling and watching runs — and is refused, with
//! nothing changed.

use app::dto::Role;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

fn put(path: &str, body: serde_json::Value) -> Request<Body> {
    Request::put(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

crate::on_both! {
    async fn one_apps_admin_gets_no_global_or_other_apps_powers(app: TestApp) {
        let world = crate::seed::shop_with_a_change_request(&app).await;
        crate::seed::another_app(&app, "billing").await;
        let shop_admin = app.token("mallory", Role::Admin, Some("shop")).await;
        let billing_admin = app.token("bill", Role::Admin, Some("billing")).await;
        let shop_developer = app.token("dave", Role::Developer, Some("shop")).await;
        let audit_before = app.get("/api/v1/audit").await.text();

        // Secrets are global: an app's admin sets, lists and deletes none.
        let set = app.request_as(Some(&shop_admin), put("/api/v1/secrets/STOLEN", json!({ "value": "hunter22" }))).await;
        assert_eq!(set.status, StatusCode::FORBIDDEN, "{}", set.text());
        let listed = app.request_as(Some(&shop_admin), Request::get("/api/v1/secrets").body(Body::empty()).unwrap()).await;
        assert_eq!(listed.status, StatusCode::FORBIDDEN, "{}", listed.text());
        let names = app.get("/api/v1/secrets").await.text();
        assert!(!names.contains("STOLEN"), "nothing stored: {names}");
        // Refused before any lookup: no probing for which apps exist.
        let probe = app
            .request_as(Some(&shop_admin), put("/api/v1/secrets/X_KEY", json!({ "value": "abcd", "app": "nope" })))
            .await;
        assert_eq!(probe.status, StatusCode::FORBIDDEN, "{}", probe.text());

        // Tokens: nobody mints more than they hold.
        let global = app.post_as(&shop_admin, "/api/v1/tokens", json!({ "name": "ci", "role": "admin" })).await;
        assert_eq!(global.status, StatusCode::FORBIDDEN, "{}", global.text());
        let higher = app
            .post_as(&shop_developer, "/api/v1/tokens", json!({ "name": "ci", "role": "admin", "app": "shop" }))
            .await;
        assert_eq!(higher.status, StatusCode::FORBIDDEN, "{}", higher.text());

        // Another app's hook token, run cancel and run log: refused.
        let hook = app.post_as(&billing_admin, "/api/v1/apps/shop/hook-token", json!({})).await;
        assert_eq!(hook.status, StatusCode::FORBIDDEN, "{}", hook.text());
        let run = world.run_id;
        let cancel = app.post_as(&billing_admin, &format!("/api/v1/runs/{run}/cancel"), json!({})).await;
        assert_eq!(cancel.status, StatusCode::FORBIDDEN, "{}", cancel.text());
        let cancel = app.post_as(&shop_developer, &format!("/api/v1/runs/{run}/cancel"), json!({})).await;
        assert_eq!(cancel.status, StatusCode::FORBIDDEN, "a developer cancels nothing: {}", cancel.text());
        let watch = app
            .status_as(Some(&billing_admin), Request::get(format!("/api/v1/runs/{run}/events")).body(Body::empty()).unwrap())
            .await;
        assert_eq!(watch, StatusCode::FORBIDDEN, "another app's run log");

        // None of it left a trace of success in the audit log.
        let audit_after = app.get("/api/v1/audit").await.text();
        for action in ["secret.set", "secret.delete", "token.create", "hook_token.issue", "run.cancel"] {
            assert_eq!(
                audit_before.matches(action).count(),
                audit_after.matches(action).count(),
                "{action} recorded after a refusal"
            );
        }
    }
}
