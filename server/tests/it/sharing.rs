//! Preview share links for testers: a developer makes a signed, expiring
//! link; a tester opens it (signed in, or without an account where the
//! admin allows it), sees the change, its tests and its preview, and leaves
//! feedback that lands on the change request. Tampered, revoked and expired
//! links are refused with the reason.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::flow::{MINUTE, QUICK_STEPS, Repos, scan, start, start_with, wait_for};

/// A change request from `feature-x` with its preview live; its id.
async fn request_with_preview(app: &TestApp, repos: &Repos) -> i64 {
    repos.app.checkout_new("feature-x");
    repos.app.write("x.txt", "x");
    repos.app.commit("Faster checkout");
    scan(app).await;
    wait_for("the preview of feature-x", MINUTE, || async {
        let envs = app.get("/api/v1/environments").await.json();
        envs.as_array()?
            .iter()
            .find(|e| e["branch"] == "feature-x" && e["state"] == "live")
            .cloned()
    })
    .await;
    let opened = app
        .post_json(
            "/api/v1/change-requests",
            json!({ "app": "shop", "source_branch": "feature-x" }),
        )
        .await;
    assert_eq!(opened.status, 201, "{}", opened.text());
    opened.json()["id"].as_i64().unwrap()
}

/// The token part of a share URL.
fn token_of(link: &Value) -> String {
    let url = link["url"].as_str().unwrap();
    url.rsplit_once("/share/")
        .expect("a /share/ URL")
        .1
        .to_string()
}

async fn anonymous(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> crate::support::TestResponse {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    app.request_as(None, request).await
}

crate::on_both! {
    async fn a_tester_opens_a_share_link_and_leaves_feedback(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let app = start(backend, &repos).await;
        let id = request_with_preview(&app, &repos).await;

        // Developers make links; viewers may not.
        let viewer = app.token("vera", app::dto::Role::Viewer, None).await;
        let refused = app.post_as(&viewer, &format!("/api/v1/change-requests/{id}/share"), json!({})).await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        let developer = app.token("dev", app::dto::Role::Developer, None).await;
        let made = app.post_as(&developer, &format!("/api/v1/change-requests/{id}/share"), json!({})).await;
        assert_eq!(made.status, 201, "{}", made.text());
        let link = made.json();
        assert_eq!(link["anonymous"], false);
        assert!(link["url"].as_str().unwrap().starts_with("http"), "{link}");
        let token = token_of(&link);

        // Without an account: refused here (the admin did not allow it).
        let closed = anonymous(&app, "GET", &format!("/api/v1/share/{token}"), None).await;
        assert_eq!(closed.status, 403, "{}", closed.text());
        assert!(closed.text().contains("sign in to open this link"), "{}", closed.text());

        // A signed-in tester sees the change, its tests and its preview.
        let tester = app.token("tess", app::dto::Role::Tester, None).await;
        let seen = app
            .request_as(Some(&tester), Request::get(format!("/api/v1/share/{token}")).body(Body::empty()).unwrap())
            .await;
        assert_eq!(seen.status, 200, "{}", seen.text());
        let shared = seen.json();
        assert_eq!(shared["change_request_id"], id);
        assert_eq!(shared["title"], "Faster checkout");
        assert!(shared["preview_url"].as_str().is_some_and(|u| u.starts_with("http")), "{shared}");
        assert_eq!(shared["run"]["state"], "succeeded", "{shared}");
        assert_eq!(shared["commits"][0]["summary"], "Faster checkout");
        assert_eq!(shared["commits"][0]["author_email"], "", "no e-mail addresses on a shared page");
        assert!(shared.get("decisions").is_none());

        // A tampered token is refused before anything is read.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let bad = app
            .request_as(Some(&tester), Request::get(format!("/api/v1/share/{forged}")).body(Body::empty()).unwrap())
            .await;
        assert_eq!(bad.status, 404, "{}", bad.text());
        assert!(bad.text().contains("not valid"), "{}", bad.text());
        let other_request = token.replacen(&format!("{id}."), &format!("{}.", id + 1), 1);
        let moved = app
            .request_as(Some(&tester), Request::get(format!("/api/v1/share/{other_request}")).body(Body::empty()).unwrap())
            .await;
        assert_eq!(moved.status, 404, "a signature binds the request: {}", moved.text());

        // Feedback: checked, recorded on the request, audited.
        let empty = app.post_as(&tester, &format!("/api/v1/share/{token}/feedback"), json!({ "verdict": "broken", "comment": " " })).await;
        assert_eq!(empty.status, 400, "{}", empty.text());
        assert!(empty.text().contains("comment"), "{}", empty.text());
        let sent = app
            .post_as(&tester, &format!("/api/v1/share/{token}/feedback"),
                json!({ "verdict": "broken", "comment": "The coupon field is gone" }))
            .await;
        assert_eq!(sent.status, 201, "{}", sent.text());
        assert_eq!(sent.json()["author"], "tess");
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(detail["feedback"][0]["verdict"], "broken", "{detail}");
        assert_eq!(detail["feedback"][0]["comment"], "The coupon field is gone");
        assert_eq!(detail["feedback"][0]["via_share_link"], true);
        // Feedback from the request's own page is the same model.
        let noted = app.post_as(&tester, &format!("/api/v1/change-requests/{id}/feedback"), json!({ "comment": "Works on mobile" })).await;
        assert_eq!(noted.status, 200, "{}", noted.text());
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(detail["feedback"][1]["comment"], "Works on mobile", "{detail}");
        assert_eq!(detail["feedback"][1]["via_share_link"], false);
        let audit = app.get("/api/v1/audit?action=feedback.add").await.text();
        assert!(audit.contains("tess"), "{audit}");

        // The request's page shows the feedback, and the share button to developers.
        let page = app.get(&format!("/change-requests/{id}")).await.text();
        assert!(page.contains("The coupon field is gone") && page.contains("Share with testers"), "{page}");

        // A developer of another app cannot tell this link from one that
        // does not exist, and cannot revoke it.
        let link_id = link["id"].as_i64().unwrap();
        crate::seed::another_app(&app, "billing").await;
        let stranger = app.token("other-dev", app::dto::Role::Developer, Some("billing")).await;
        let delete = |id: i64| Request::delete(format!("/api/v1/share-links/{id}")).body(Body::empty()).unwrap();
        let theirs = app.request_as(Some(&stranger), delete(link_id)).await;
        let missing = app.request_as(Some(&stranger), delete(link_id + 1000)).await;
        assert_eq!((theirs.status, missing.status), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST), "{}", theirs.text());
        assert_eq!(
            theirs.text().replace(&link_id.to_string(), "N"),
            missing.text().replace(&(link_id + 1000).to_string(), "N"),
            "the same answer"
        );

        // Revoked: refused with the reason.
        let revoked = app
            .request_as(Some(&developer), Request::delete(format!("/api/v1/share-links/{link_id}")).body(Body::empty()).unwrap())
            .await;
        assert_eq!(revoked.status, 204, "{}", revoked.text());
        let gone = app
            .request_as(Some(&tester), Request::get(format!("/api/v1/share/{token}")).body(Body::empty()).unwrap())
            .await;
        assert_eq!(gone.status, 410, "{}", gone.text());
        assert!(gone.text().contains("revoked"), "{}", gone.text());
        // The tester page says so, in its status too, and what to do.
        let page = app
            .request_as(Some(&tester), Request::get(format!("/share/{token}")).body(Body::empty()).unwrap())
            .await;
        assert_eq!(page.status, 410);
        assert!(page.text().contains("revoked; ask for a new one"), "{}", page.text());
        assert!(!page.text().contains("error running server function"), "{}", page.text());
    }

    async fn where_allowed_a_share_link_works_without_an_account(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let app = start_with(backend, &repos, |config| config.share_anonymous = true).await;
        let id = request_with_preview(&app, &repos).await;
        let made = app.post_json(&format!("/api/v1/change-requests/{id}/share"), json!({})).await;
        assert_eq!(made.status, 201, "{}", made.text());
        assert_eq!(made.json()["anonymous"], true);
        let token = token_of(&made.json());

        // The tester page, server-rendered for someone without an account.
        let page = anonymous(&app, "GET", &format!("/share/{token}"), None).await;
        assert_eq!(page.status, 200);
        let html = page.text();
        assert!(html.contains("Faster checkout") && html.contains("Open the preview"), "{html}");
        assert!(html.contains("Your name"), "an anonymous visitor is asked for a name");

        let nameless = anonymous(&app, "POST", &format!("/api/v1/share/{token}/feedback"),
            Some(json!({ "verdict": "works", "comment": "" }))).await;
        assert_eq!(nameless.status, 400, "{}", nameless.text());
        assert!(nameless.text().contains("name"), "{}", nameless.text());
        let sent = anonymous(&app, "POST", &format!("/api/v1/share/{token}/feedback"),
            Some(json!({ "verdict": "works", "comment": "", "name": "Lin from QA" }))).await;
        assert_eq!(sent.status, 201, "{}", sent.text());
        let shared = anonymous(&app, "GET", &format!("/api/v1/share/{token}"), None).await.json();
        assert_eq!(shared["feedback"][0]["author"], "Lin from QA", "{shared}");
        let audit = app.get("/api/v1/audit?action=feedback.add").await.text();
        assert!(audit.contains("Lin from QA (share link"), "{audit}");

        // The same through the dashboard's server function.
        let form = Request::post("/fn/leave_shared_feedback")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(Body::from(format!("token={token}&verdict=note&comment=Slow+on+3G&name=Kai&csrf=")))
            .unwrap();
        let posted = app.request_as(None, form).await;
        assert_eq!(posted.status, 200, "{}", posted.text());
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(detail["feedback"][1]["author"], "Kai", "{detail}");
    }

    async fn a_share_link_expires(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let app = start_with(backend, &repos, |config| {
            config.share_anonymous = true;
            config.share_ttl = Duration::from_secs(2);
        })
        .await;
        let id = request_with_preview(&app, &repos).await;
        let made = app.post_json(&format!("/api/v1/change-requests/{id}/share"), json!({})).await;
        let token = token_of(&made.json());
        let expires = made.json()["expires_at"].as_i64().unwrap();
        let now = app.state.clock.now_millis();
        assert!(expires > now);
        // Past its expiry by the clock Gantry reads, without waiting for it.
        app.state.clock.advance(Duration::from_millis(
            u64::try_from(expires - now).unwrap_or(0) + 1,
        ));
        let expired = anonymous(&app, "GET", &format!("/api/v1/share/{token}"), None).await;
        assert_eq!(expired.status, 410, "{}", expired.text());
        assert!(expired.text().contains("expired"), "{}", expired.text());
        let late = anonymous(&app, "POST", &format!("/api/v1/share/{token}/feedback"),
            Some(json!({ "verdict": "works", "comment": "", "name": "Lin" }))).await;
        assert_eq!(late.status, 410, "{}", late.text());
        let page = anonymous(&app, "GET", &format!("/share/{token}"), None).await;
        assert_eq!(page.status, 410);
        assert!(page.text().contains("ask for a new one"), "{}", page.text());
        // A link that never was (a tampered token) is a 404 page.
        let mut forged = token.clone();
        forged.push('x');
        let missing = anonymous(&app, "GET", &format!("/share/{forged}"), None).await;
        assert_eq!(missing.status, 404);
        assert!(missing.text().contains("not valid; ask whoever sent it for a new one"), "{}", missing.text());
    }

    // The links a developer gave are listed on the request for developers
    // (address, QR code, expiry), not for viewers; Extend gives a live link
    // a new lifetime at the same address; a revoked one cannot be extended,
    // nor can another app's developer touch it.
    async fn share_links_are_listed_extended_and_revoked(backend) {
        use app::dto::Role;
        let repos = Repos::new(QUICK_STEPS);
        let app = start_with(backend, &repos, |config| {
            config.share_anonymous = true;
            config.share_ttl = Duration::from_secs(60);
        })
        .await;
        let id = request_with_preview(&app, &repos).await;
        let developer = app.token("dev", Role::Developer, Some("shop")).await;
        let made = app.post_as(&developer, &format!("/api/v1/change-requests/{id}/share"), json!({})).await;
        assert_eq!(made.status, 201, "{}", made.text());
        let link = made.json();
        let (link_id, token) = (link["id"].as_i64().unwrap(), token_of(&link));
        let first_expiry = link["expires_at"].as_i64().unwrap();

        // Listed, with the same address and a QR code, for developers only.
        let listed = app.get_as(&developer, &format!("/api/v1/change-requests/{id}")).await.json();
        let links = listed["share_links"].as_array().unwrap();
        assert_eq!(links.len(), 1, "{listed}");
        assert_eq!(links[0]["url"], link["url"]);
        let qr = links[0]["qr"].as_array().unwrap();
        assert!(qr.len() >= 21 && qr.iter().all(|row| row.as_str().unwrap().len() == qr.len()), "a square QR code");
        let viewer = app.token("watcher", Role::Viewer, Some("shop")).await;
        let seen = app.get_as(&viewer, &format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(seen["share_links"], json!([]), "viewers get no links");
        let page = app.get_as(&developer, &format!("/change-requests/{id}")).await.text();
        assert!(page.contains("data-testid=\"share-links\"") && page.contains("aria-label=\"QR code of link "), "{page}");

        // Extended: the same address opens after the first expiry.
        app.state.clock.advance(Duration::from_secs(50));
        let extended = app.post_as(&developer, &format!("/api/v1/share-links/{link_id}/extend"), json!({})).await;
        assert_eq!(extended.status, 200, "{}", extended.text());
        assert!(extended.json()["expires_at"].as_i64().unwrap() > first_expiry);
        app.state.clock.advance(Duration::from_secs(30));
        let opened = anonymous(&app, "GET", &format!("/api/v1/share/{token}"), None).await;
        assert_eq!(opened.status, 200, "past its first expiry, extended: {}", opened.text());
        let audit = app.get("/api/v1/audit?action=share_link.extend").await.text();
        assert!(audit.contains(&format!("(link {link_id})")), "{audit}");

        // Another app's developer cannot extend or revoke it, nor learn it exists.
        crate::seed::another_app(&app, "elsewhere").await;
        let stranger = app.token("other-dev", Role::Developer, Some("elsewhere")).await;
        let theirs = app.post_as(&stranger, &format!("/api/v1/share-links/{link_id}/extend"), json!({})).await;
        let missing = app.post_as(&stranger, &format!("/api/v1/share-links/{}/extend", link_id + 1000), json!({})).await;
        assert_eq!((theirs.status, missing.status), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
        assert_eq!(
            theirs.text().replace(&link_id.to_string(), "N"),
            missing.text().replace(&(link_id + 1000).to_string(), "N"),
        );
        let refused = app.post_as(&viewer, &format!("/api/v1/share-links/{link_id}/extend"), json!({})).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);

        // An expired link stays expired: it is not extended.
        app.state.clock.advance(Duration::from_secs(60));
        let late = app.post_as(&developer, &format!("/api/v1/share-links/{link_id}/extend"), json!({})).await;
        assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text());
        assert!(late.text().contains("has expired; make a new one"), "{}", late.text());
        assert_eq!(anonymous(&app, "GET", &format!("/api/v1/share/{token}"), None).await.status, 410);

        // Revoked: listed as such, and not extended again.
        let revoked = app
            .request_as(Some(&developer), Request::delete(format!("/api/v1/share-links/{link_id}")).body(Body::empty()).unwrap())
            .await;
        assert_eq!(revoked.status, 204);
        let listed = app.get_as(&developer, &format!("/api/v1/change-requests/{id}")).await.json();
        assert!(listed["share_links"][0]["revoked_at"].is_i64(), "{listed}");
        let again = app.post_as(&developer, &format!("/api/v1/share-links/{link_id}/extend"), json!({})).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
        assert_eq!(anonymous(&app, "GET", &format!("/api/v1/share/{token}"), None).await.status, 410);
    }
}
