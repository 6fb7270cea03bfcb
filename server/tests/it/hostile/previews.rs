//! A developer's preview is hostile to whoever opens it: it never receives
//! the visitor's Gantry credentials, cannot set cookies for the dashboard,
//! and never runs on the dashboard's origin. (The browser side — a
//! preview's script calling the API, framing an approval page — is a
//! Chromium journey: `end2end/tests/hostile.test.mjs`.)

use axum::body::Body;
use axum::http::Request;

use crate::on_both;
use crate::support::flow::{MINUTE, Repos, scan, served, start_with, wait_for};

/// Echoes the request's headers, and tries to plant cookies on the
/// dashboard's host.
const ECHO_APP: &str = r#"import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.send_header("set-cookie", "gantry_session=planted; Domain=localhost; Path=/")
        self.send_header("set-cookie", "cart=3; Domain=localhost; Path=/")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

on_both! {
    async fn a_preview_sees_no_credentials_and_plants_no_cookies(backend) {
        let repos = Repos::new("");
        let app = start_with(backend, &repos, |config| config.dev_login = true).await;
        repos.app.checkout_new("echo");
        repos.app.write("app.py", ECHO_APP);
        repos.app.commit("a preview that echoes what it receives");
        scan(&app).await;
        wait_for("the echo preview", MINUTE, || async { served(&app, "preview-echo").await }).await;

        let admin = app.sign_in("ada", "admin").await;
        let request = Request::get("/")
            .header("host", "preview-echo--shop.localhost:3000")
            .header("cookie", format!("{}; theme=dark", admin.cookie))
            .header("authorization", format!("Bearer {}", app.admin_token))
            .header("x-csrf-token", &admin.csrf)
            .body(Body::empty())
            .expect("request");
        let response = app.request(request).await;
        assert_eq!(response.status, 200);
        let seen = response.text().to_ascii_lowercase();
        let session = admin.cookie.split('=').nth(1).expect("session id");
        assert!(!seen.contains("gantry_session"), "{seen}");
        assert!(!seen.contains(&session.to_ascii_lowercase()), "{seen}");
        assert!(!seen.contains("authorization"), "{seen}");
        assert!(!seen.contains(&app.admin_token.to_ascii_lowercase()), "{seen}");
        assert!(!seen.contains(&admin.csrf.to_ascii_lowercase()), "{seen}");
        assert!(seen.contains("cookie: theme=dark"), "its own cookies pass: {seen}");

        let planted: Vec<&str> = response
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(planted, ["cart=3; Path=/"], "no Gantry cookie, no Domain");
        assert!(
            response.header("content-security-policy").is_none(),
            "the dashboard's policy is not the preview's"
        );

        // On the dashboard, the path form only sends the browser away.
        let moved = app.get("/env/shop/preview-echo/").await;
        assert_eq!(moved.status, 302);
        assert_eq!(moved.header("location"), Some("http://preview-echo--shop.localhost:0/"));
        assert!(moved.body.is_empty() || !moved.text().contains("cookie"), "{}", moved.text());
    }
}

crate::on_both! {
    async fn dashboard_responses_carry_a_content_security_policy(app: TestApp) {
        let page = app.get("/").await;
        let policy = page.header("content-security-policy").expect("a policy").to_string();
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(policy.contains("'wasm-unsafe-eval'"), "{policy}");
        let nonce = policy
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("a nonce");
        let html = page.text();
        let scripts = html.matches("<script").count();
        let with_nonce = html.matches(&format!("nonce=\"{nonce}\"")).count();
        assert!(scripts >= 3, "{html}");
        assert_eq!(scripts, with_nonce, "every inline script carries the nonce");
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("referrer-policy"), Some("same-origin"));
        let other = app.get("/").await;
        assert_ne!(other.header("content-security-policy"), Some(policy.as_str()), "a nonce per response");

        let api = app.get("/api/v1/me").await;
        assert_eq!(
            api.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
        );
        assert_eq!(api.header("x-content-type-options"), Some("nosniff"));
    }
}
