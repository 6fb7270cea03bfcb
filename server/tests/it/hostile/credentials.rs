//! Credentials that cannot outlive their owner or travel: tokens follow
//! their owner's grants, only global admins manage other people's tokens,
//! session ids are not in the database, sign-in redirects stay home and a
//! forged `X-Forwarded-For` does not rewrite the audit log.

use app::dto::{Grant, Role};
use axum::body::Body;
use axum::http::Request;
use serde_json::json;

use crate::support::TestApp;

async fn user(app: &TestApp, name: &str) -> i64 {
    gantry::auth::upsert_user(&app.state.db, "gantry-test", name, name, None)
        .await
        .expect("user")
}

crate::on_both! {
    async fn a_demoted_admins_token_loses_what_its_owner_lost(app: TestApp) {
        let token = app.token("mallory", Role::Admin, None).await;
        let cluster = json!({ "name": "c1", "server": "https://127.0.0.1:9", "token": "t", "insecure": true });
        assert_eq!(app.post_as(&token, "/api/v1/clusters", cluster.clone()).await.status, 201);

        // Mallory is demoted to developer (as the next sign-in would do).
        let mallory = user(&app, "mallory").await;
        gantry::auth::set_grants(&app.state.db, mallory, "test", &[Grant { role: Role::Developer, app: None }])
            .await
            .expect("demote");
        let refused = app.post_as(&token, "/api/v1/clusters", json!({ "name": "c2", "server": "https://127.0.0.1:9", "token": "t", "insecure": true })).await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        let minted = app.post_as(&token, "/api/v1/tokens", json!({ "name": "again", "role": "admin" })).await;
        assert_eq!(minted.status, 403, "an old token mints no new power: {}", minted.text());
        let me = app.request_as(Some(&token), Request::get("/api/v1/me").body(Body::empty()).unwrap()).await.json();
        assert_eq!(me["grants"], json!([{ "role": "developer", "app": null }]));

        // Removed from everything: the token is worth nothing.
        gantry::auth::set_grants(&app.state.db, mallory, "test", &[]).await.expect("remove");
        let gone = app.request_as(Some(&token), Request::get("/api/v1/runs").body(Body::empty()).unwrap()).await;
        assert_eq!(gone.status, 401, "{}", gone.text());
        assert!(gone.text().contains("no role any more"), "{}", gone.text());
    }

    async fn an_app_admin_cannot_see_or_revoke_other_peoples_tokens(app: TestApp) {
        crate::seed::shop_with_a_change_request(&app).await;
        let victim_token = app.token("victor", Role::Developer, None).await;
        let shop_admin = app.token("sam", Role::Admin, Some("shop")).await;
        let listed = app.request_as(Some(&shop_admin), Request::get("/api/v1/tokens").body(Body::empty()).unwrap()).await;
        assert_eq!(listed.status, 200);
        let listed = listed.json();
        assert!(listed.as_array().unwrap().iter().all(|t| t["user"] == "sam"), "only their own: {listed}");
        // Victor's token, as the global admin sees it.
        let all = app.get("/api/v1/tokens").await.json();
        let victims = all.as_array().unwrap().iter().find(|t| t["user"] == "victor").expect("victor's token")["id"].clone();
        let revoke = Request::delete(format!("/api/v1/tokens/{victims}")).body(Body::empty()).unwrap();
        assert_eq!(app.request_as(Some(&shop_admin), revoke).await.status, 404);
        let still = app.request_as(Some(&victim_token), Request::get("/api/v1/me").body(Body::empty()).unwrap()).await;
        assert_eq!(still.status, 200, "victor's token still works");
        // The global admin can.
        let revoke = Request::delete(format!("/api/v1/tokens/{victims}")).body(Body::empty()).unwrap();
        assert_eq!(app.request(revoke).await.status, 204);
    }
}

async fn with_dev_login(configure: impl FnOnce(&mut gantry::config::Config)) -> TestApp {
    TestApp::with_config("sqlite", |config| {
        config.dev_login = true;
        configure(config);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_are_not_kept_in_the_database() {
    Box::pin(crate::support::bounded(async {
        let app = with_dev_login(|_| {}).await;
        let browser = app.sign_in("ada", "admin").await;
        let id = browser
            .cookie
            .split_once('=')
            .expect("cookie")
            .1
            .to_string();
        let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM user_sessions")
            .fetch_all(app.db().pool())
            .await
            .expect("sessions");
        assert_eq!(stored.len(), 1);
        assert!(
            !stored.iter().any(|s| s.contains(&id)),
            "{stored:?} holds the cookie {id}"
        );
        assert_eq!(stored[0], gantry::auth::sha256_hex(&id));
        // Reading the table gives no cookie that works.
        let forged = Request::get("/api/v1/me")
            .header("cookie", format!("gantry_session={}", stored[0]))
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.request_as(None, forged).await.status, 401);
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_redirects_stay_on_this_origin() {
    Box::pin(crate::support::bounded(async {
        let app = with_dev_login(|_| {}).await;
        for trick in [
            "/%09/evil.example",
            "/%0A/evil.example",
            "//evil.example",
            "/%5Cevil.example",
            "%5C%5Cevil.example",
            "https://evil.example",
            "/%0D%0A%09/evil.example",
        ] {
            let response = app.dev_login("ada", "viewer", trick, None).await;
            assert_eq!(response.status, 303, "{trick}");
            let location = response.header("location").unwrap_or_default().to_string();
            let resolved = url::Url::parse("http://localhost:3000/")
                .unwrap()
                .join(&location)
                .unwrap();
            assert_eq!(
                resolved.host_str(),
                Some("localhost"),
                "{trick} -> {location:?}"
            );
            assert!(
                !location.chars().any(|c| c.is_control() || c == '\\'),
                "{trick} -> {location:?}"
            );
        }
        let form = app
            .request_as(
                None,
                Request::get("/auth/dev?return_to=%2F%09%2Fevil.example")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(!form.text().contains("evil.example"), "{}", form.text());
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    Box::pin(crate::support::bounded(async {
        for (trusted, expected) in [(vec![], "127.0.0.1"), (vec!["127.0.0.1"], "203.0.113.9")] {
            let mut app = with_dev_login(|config| {
                config.trusted_proxies = trusted
                    .iter()
                    .map(|t| gantry::config::IpNet::parse(t).unwrap())
                    .collect();
            })
            .await;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            app.serve_tcp(listener);
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let form = client
                .get(format!("http://127.0.0.1:{port}/auth/dev"))
                .send()
                .await
                .expect("the form");
            let session = form.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let csrf = crate::support::dev_login_token(&form.text().await.unwrap());
            let response = client
                .post(format!("http://127.0.0.1:{port}/auth/dev"))
                .header("x-forwarded-for", "203.0.113.9")
                .header("cookie", session)
                .form(&[
                    ("name", "ada"),
                    ("role", "viewer"),
                    ("return_to", "/"),
                    ("csrf", csrf.as_str()),
                ])
                .send()
                .await
                .expect("sign in");
            assert_eq!(response.status(), 303);
            let audit = app.get("/api/v1/audit?action=auth.sign_in").await.json();
            assert_eq!(
                audit[0]["source_ip"], expected,
                "trusted {trusted:?}: {audit}"
            );
        }
    }))
    .await;
}

/// A page on another site posts the dev login form for its visitor (a
/// login CSRF: the visitor would act, unknowing, as whoever the page
/// chose): without the form's token from the visitor's own session, it is
/// refused and signs nobody in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_login_posted_from_another_site_signs_nobody_in() {
    Box::pin(crate::support::bounded(async {
        let app = with_dev_login(|_| {}).await;
        let post = |body: &str, cookie: Option<&str>| {
            let mut request = Request::post("/auth/dev")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", "http://evil.example");
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie);
            }
            request.body(Body::from(body.to_string())).unwrap()
        };
        // No token, or a made-up one, without the visitor's session.
        for body in [
            "name=mallory&role=admin&return_to=%2F",
            "name=mallory&role=admin&return_to=%2F&csrf=0123456789abcdef",
        ] {
            let response = app.request_as(None, post(body, None)).await;
            assert_eq!(response.status, 403, "{body}: {}", response.text());
            assert!(response.header("set-cookie").is_none(), "{body}");
        }
        // The attacker's own form token, in the visitor's session: refused.
        let attackers = app
            .request_as(None, Request::get("/auth/dev").body(Body::empty()).unwrap())
            .await;
        let token = crate::support::dev_login_token(&attackers.text());
        let visitor = app
            .request_as(None, Request::get("/auth/dev").body(Body::empty()).unwrap())
            .await;
        let cookie = visitor
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let response = app
            .request_as(
                None,
                post(
                    &format!("name=mallory&role=admin&return_to=%2F&csrf={token}"),
                    Some(&cookie),
                ),
            )
            .await;
        assert_eq!(response.status, 403, "{}", response.text());
        let me = app
            .request_as(
                None,
                Request::get("/api/v1/me")
                    .header("cookie", &cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(me.status, 401, "nobody is signed in: {}", me.text());
        // The form's own token, in its own session, signs in.
        assert_eq!(
            app.dev_login("ada", "viewer", "%2F", None).await.status,
            303
        );
    }))
    .await;
}

/// A page under a name of the attacker's that resolves to this server (DNS
/// rebinding) would be same-origin with what it reads: the dashboard
/// answers only to its own names; probes answer whatever the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_answers_only_to_its_own_names() {
    Box::pin(crate::support::bounded(async {
        let app = with_dev_login(|config| {
            config.public_url = "http://gantry.example.com:3000/".parse().unwrap();
            config.allowed_hosts = vec!["gantry.internal".into()];
        })
        .await;
        let at = |host: &str, path: &str| {
            Request::get(path)
                .header("host", host)
                .body(Body::empty())
                .unwrap()
        };
        for host in [
            "rebind.attacker.test:3000",
            "gantry.example.com.attacker.test",
        ] {
            for path in ["/", "/api/v1/environments", "/auth/dev"] {
                let response = app.request_as(None, at(host, path)).await;
                assert_eq!(response.status, 421, "{host}{path}: {}", response.text());
                assert!(response.text().contains("server.allowed_hosts"));
            }
        }
        for host in [
            "gantry.example.com:3000",
            "localhost:3000",
            "127.0.0.1:3000",
            "gantry.internal",
        ] {
            let response = app.request_as(None, at(host, "/auth/dev")).await;
            assert_eq!(response.status, 200, "{host}: {}", response.text());
        }
        // A probe or a scrape comes by a pod's address, or any name.
        for path in ["/healthz", "/readyz", "/metrics"] {
            let response = app
                .request_as(None, at("10-0-0-7.pods.cluster.local:3000", path))
                .await;
            assert_ne!(response.status, 421, "{path}");
        }
    }))
    .await;
}
