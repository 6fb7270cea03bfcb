//! Browser sessions: cookie flags, a new id at every sign-in, CSRF on every
//! change, sign-out, idle and absolute expiry, and the dev login's switch.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::support::{Browser, TestApp};

async fn with_dev_login(configure: impl FnOnce(&mut gantry::config::Config)) -> TestApp {
    TestApp::with_config("sqlite", |config| {
        config.dev_login = true;
        configure(config);
    })
    .await
}

/// What `/api/v1/me` answers for a cookie.
async fn me_status(app: &TestApp, cookie: &str) -> StatusCode {
    let request = Request::get("/api/v1/me")
        .header("cookie", cookie)
        .body(Body::empty())
        .expect("request");
    app.request_as(None, request).await.status
}

/// The raw `Set-Cookie` of a dev sign-in (sending `cookie`, if any).
async fn sign_in_raw(app: &TestApp, cookie: Option<&str>) -> String {
    let response = app.dev_login("ada", "admin", "%2F", cookie).await;
    assert_eq!(response.status, 303, "{}", response.text());
    response
        .header("set-cookie")
        .expect("set-cookie")
        .to_string()
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn session_cookies_are_http_only_lax_and_secure_behind_tls() {
    let app = with_dev_login(|_| {}).await;
    let cookie = sign_in_raw(&app, None).await;
    let flags: Vec<String> = cookie
        .split(';')
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    assert!(flags.contains(&"httponly".to_string()), "{cookie}");
    assert!(flags.contains(&"samesite=lax".to_string()), "{cookie}");
    assert!(
        !flags.contains(&"secure".to_string()),
        "plain http: {cookie}"
    );

    let tls = with_dev_login(|config| {
        config.public_url = "https://gantry.example.com/".parse().expect("url");
    })
    .await;
    let cookie = sign_in_raw(&tls, None).await;
    assert!(
        cookie
            .to_ascii_lowercase()
            .split(';')
            .any(|f| f.trim() == "secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn signing_in_gives_a_new_session_id_and_signing_out_ends_it() {
    let app = with_dev_login(|_| {}).await;
    let first = pair(&sign_in_raw(&app, None).await);
    assert_eq!(me_status(&app, &first).await, StatusCode::OK);
    let second = pair(&sign_in_raw(&app, Some(&first)).await);
    assert_ne!(first, second, "the id is rotated at sign-in");
    assert_eq!(
        me_status(&app, &first).await,
        StatusCode::UNAUTHORIZED,
        "the old id is dead"
    );
    assert_eq!(me_status(&app, &second).await, StatusCode::OK);

    // Sign-out needs the CSRF token too.
    let csrf = {
        let request = Request::get("/api/v1/me")
            .header("cookie", &second)
            .body(Body::empty())
            .expect("request");
        app.request_as(None, request).await.json()["csrf"]
            .as_str()
            .expect("csrf")
            .to_string()
    };
    let forged = Request::post("/auth/logout")
        .header("cookie", &second)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("csrf=forged"))
        .expect("request");
    assert_eq!(
        app.request_as(None, forged).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(me_status(&app, &second).await, StatusCode::OK);
    let logout = Request::post("/auth/logout")
        .header("cookie", &second)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .expect("request");
    let response = app.request_as(None, logout).await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        response.text()
    );
    assert_eq!(me_status(&app, &second).await, StatusCode::UNAUTHORIZED);
    let audit = app.get("/api/v1/audit?action=auth").await.json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"auth.sign_in"), "{actions:?}");
}

#[tokio::test]
async fn changes_with_a_session_need_its_csrf_token() {
    let app = with_dev_login(|_| {}).await;
    let browser = app.sign_in("ada", "admin").await;
    let put = |csrf: Option<&str>| {
        let mut request = Request::put("/api/v1/secrets/API_KEY")
            .header("content-type", "application/json")
            .header("cookie", &browser.cookie);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request
            .body(Body::from(json!({ "value": "s3cret-value" }).to_string()))
            .expect("request")
    };
    assert_eq!(
        app.request_as(None, put(None)).await.status,
        StatusCode::FORBIDDEN,
        "missing"
    );
    assert_eq!(
        app.request_as(None, put(Some("forged"))).await.status,
        StatusCode::FORBIDDEN,
        "forged"
    );
    let other = app.sign_in("bo", "admin").await;
    assert_eq!(
        app.request_as(None, put(Some(&other.csrf))).await.status,
        StatusCode::FORBIDDEN,
        "another session's token"
    );
    assert_eq!(
        app.request_as(None, put(Some(&browser.csrf))).await.status,
        StatusCode::NO_CONTENT
    );

    // Server functions check the `csrf` field the same way.
    let server_fn = |csrf: &str| {
        Request::post("/fn/check_cluster")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("cookie", &browser.cookie)
            .body(Body::from(format!("name=nope&csrf={csrf}")))
            .expect("request")
    };
    let refused = app.request_as(None, server_fn("forged")).await.text();
    assert!(refused.contains("CSRF"), "{refused}");
    let allowed = app.request_as(None, server_fn(&browser.csrf)).await.text();
    assert!(!allowed.contains("CSRF"), "{allowed}");
}

#[tokio::test]
async fn sessions_end_after_idle_time_and_after_their_absolute_lifetime() {
    let idle = with_dev_login(|config| config.session_idle = Duration::from_secs(1)).await;
    let browser = idle.sign_in("ada", "admin").await;
    assert_eq!(me_status(&idle, &browser.cookie).await, StatusCode::OK);
    idle.state.clock.advance(Duration::from_millis(2100));
    assert_eq!(
        me_status(&idle, &browser.cookie).await,
        StatusCode::UNAUTHORIZED,
        "idle"
    );

    let absolute = with_dev_login(|config| config.session_max = Duration::from_secs(2)).await;
    let browser: Browser = absolute.sign_in("ada", "admin").await;
    // Activity does not extend the absolute lifetime.
    for _ in 0..3 {
        absolute.state.clock.advance(Duration::from_millis(500));
        assert_eq!(me_status(&absolute, &browser.cookie).await, StatusCode::OK);
    }
    absolute.state.clock.advance(Duration::from_millis(1000));
    assert_eq!(
        me_status(&absolute, &browser.cookie).await,
        StatusCode::UNAUTHORIZED,
        "absolute"
    );
}

#[tokio::test]
async fn the_dev_login_is_off_unless_enabled() {
    let app = TestApp::sqlite().await;
    let request = Request::post("/auth/dev")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("name=ada&role=admin"))
        .expect("request");
    let response = app.request_as(None, request).await;
    assert_eq!(
        response.status,
        StatusCode::NOT_FOUND,
        "{}",
        response.text()
    );
    assert!(response.header("set-cookie").is_none());
}
