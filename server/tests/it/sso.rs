//! Single sign-on against a real OpenID provider (`oidc-provider` from npm,
//! started by `end2end/oidc/provider.mjs`), at the HTTP level, with the real
//! `gantry` binary: the authorization code flow with PKCE, state and nonce;
//! groups mapped to roles; fresh sign-in; and ID tokens with a bad
//! signature, audience, nonce or expiry refused.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::support::process::{free_port, gantry, wait_until_serving};

/// The provider process; killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(redirect: &str) -> Provider {
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../end2end/oidc/provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg(port.to_string())
            .arg(redirect)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node end2end/oidc/provider.mjs (./x test installs its packages)");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("provider output");
        // Keep reading, so the provider never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let issuer = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
            .to_string();
        Provider { child, issuer }
    }

    async fn forge(&self, mode: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/test/forge?mode={mode}", self.issuer))
            .send()
            .await
            .expect("forge");
        assert!(answer.status().is_success());
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gantry serve` using the provider for sign-in; killed when dropped.
struct Gantry {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Gantry {
    /// With `pipeline`, Gantry also reads its apps from that repo.
    fn start(port: u16, issuer: &str, pipeline: Option<&str>) -> Gantry {
        let data = tempfile::tempdir().expect("tempdir");
        let url = format!("http://127.0.0.1:{port}");
        let mut child = gantry(data.path())
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--public-url",
                &url,
            ])
            .args([
                "--data-dir",
                &data.path().join("data").display().to_string(),
            ])
            .env("GANTRY_OIDC_ISSUER", issuer)
            .env("GANTRY_OIDC_CLIENT_ID", "gantry")
            .env("GANTRY_OIDC_CLIENT_SECRET", "gantry-test-secret")
            .env("GANTRY_REAUTH_MAX_AGE", "5m")
            .env("GANTRY_FORGE_LOGIN_CLAIM", "nickname")
            .args(
                pipeline
                    .map(|p| ["--pipeline-repo", p])
                    .into_iter()
                    .flatten(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gantry");
        wait_until_serving(&mut child, port);
        Gantry {
            child,
            url,
            _data: data,
        }
    }
}

impl Drop for Gantry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Nothing it deployed may outlive the test.
        let data_dir = self._data.path().join("data");
        gantry::jobs::recovery::kill_orphans(&gantry::state::instance_tag(&data_dir));
    }
}

/// Where a sign-in ended: the callback's answer, and the browser-like client
/// (with its cookies) to ask more.
struct Outcome {
    client: reqwest::Client,
    status: StatusCode,
    body: String,
    /// The provider's authorization request, as Gantry built it.
    authorize_url: String,
}

/// Walks the whole sign-in as a browser would: Gantry's `/auth/login`, the
/// provider's login and consent forms, back to Gantry's callback.
async fn sign_in(gantry: &Gantry, login: &str, login_path: &str) -> Outcome {
    sign_in_with(gantry, login, login_path, |url| url).await
}

async fn sign_in_with(
    gantry: &Gantry,
    login: &str,
    login_path: &str,
    tamper_callback: impl Fn(String) -> String,
) -> Outcome {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("client");
    let mut url = format!("{}{login_path}", gantry.url);
    let mut authorize_url = String::new();
    for _ in 0..20 {
        if url.starts_with(&format!("{}/auth/callback", gantry.url)) {
            let response = client
                .get(tamper_callback(url))
                .send()
                .await
                .expect("callback");
            return Outcome {
                status: response.status(),
                body: response.text().await.unwrap_or_default(),
                client,
                authorize_url,
            };
        }
        let response = client.get(&url).send().await.expect("get");
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str().expect("location");
            let next = reqwest::Url::parse(&url)
                .expect("url")
                .join(location)
                .expect("join")
                .to_string();
            if next.contains("/auth?") && authorize_url.is_empty() {
                authorize_url = next.clone();
            }
            url = next;
            continue;
        }
        // A form of the provider: the login (any password), then consent.
        let page = response.text().await.expect("page");
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form on {url}: {page}"));
        let target = reqwest::Url::parse(&url)
            .expect("url")
            .join(action)
            .expect("join");
        let form: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
            vec![
                ("prompt", "login"),
                ("login", login),
                ("password", "anything"),
            ]
        } else {
            vec![("prompt", "consent")]
        };
        let posted = client
            .post(target.clone())
            .form(&form)
            .send()
            .await
            .expect("post");
        assert!(
            posted.status().is_redirection(),
            "{target}: {}",
            posted.status()
        );
        let location = posted.headers()["location"].to_str().expect("location");
        url = target.join(location).expect("join").to_string();
    }
    panic!("the sign-in did not come back to Gantry");
}

async fn me(outcome: &Outcome, gantry: &Gantry) -> (StatusCode, Value) {
    let response = outcome
        .client
        .get(format!("{}/api/v1/me", gantry.url))
        .send()
        .await
        .expect("me");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_the_identity_provider_maps_groups_to_roles() {
    crate::support::bounded(async {
        let port = free_port();
        let provider = Provider::start(&format!("http://127.0.0.1:{port}/auth/callback"));
        let repos = crate::support::flow::Repos::new(crate::support::flow::QUICK_STEPS);
        let pipeline = repos.pipeline.path();
        let gantry = Gantry::start(port, &provider.issuer, Some(&pipeline));

        let alice = sign_in(&gantry, "alice", "/auth/login?return_to=/approvals").await;
        assert_eq!(alice.status, StatusCode::SEE_OTHER, "{}", alice.body);
        let query = alice.authorize_url.as_str();
        for part in [
            "code_challenge_method=S256",
            "code_challenge=",
            "state=",
            "nonce=",
            "scope=openid",
        ] {
            assert!(query.contains(part), "{part} in {query}");
        }
        let (status, who) = me(&alice, &gantry).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(who["name"], "alice");
        // Her forge account, from the claim `auth.forge_login_claim` names:
        // how her forge merges and pushes become hers.
        let database = gantry._data.path().join("data/gantry.db");
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", database.display()))
            .await
            .expect("the database");
        let login: Option<String> =
            sqlx::query_scalar("SELECT forge_login FROM users WHERE display_name = 'alice'")
                .fetch_one(&pool)
                .await
                .expect("alice");
        assert_eq!(login.as_deref(), Some("alice-gh"));
        pool.close().await;
        assert_eq!(
            who["grants"],
            serde_json::json!([{ "role": "admin", "app": null }])
        );

        // `shop:developer` is a scoped grant (on an app Gantry knows); other
        // groups are ignored.
        crate::support::flow::wait_for("the app shop", crate::support::flow::MINUTE, || async {
            let envs = alice
                .client
                .get(format!("{}/api/v1/environments", gantry.url))
                .send()
                .await
                .ok()?;
            let envs: Value = envs.json().await.ok()?;
            (!envs.as_array()?.is_empty()).then_some(())
        })
        .await;
        let dave = sign_in(&gantry, "dave", "/auth/login").await;
        let (_, who) = me(&dave, &gantry).await;
        assert_eq!(
            who["grants"],
            serde_json::json!([{ "role": "developer", "app": "shop" }])
        );
        let settings = dave
            .client
            .get(format!("{}/api/v1/settings", gantry.url))
            .send()
            .await
            .expect("settings");
        assert_eq!(settings.status(), StatusCode::FORBIDDEN);

        // A fresh sign-in asks the provider to authenticate again, and the
        // session records when that happened.
        let fresh = sign_in(&gantry, "alice", "/auth/login?fresh=1").await;
        assert!(
            fresh.authorize_url.contains("prompt=login")
                && fresh.authorize_url.contains("max_age=300"),
            "{}",
            fresh.authorize_url
        );
        let (_, who) = me(&fresh, &gantry).await;
        let auth_time = who["auth_time"].as_i64().expect("auth_time");
        assert!(
            (gantry::db::now_millis() - auth_time).abs() < 60_000,
            "{who}"
        );

        // Sign-ins are audited with how they happened.
        let audit = alice
            .client
            .get(format!("{}/api/v1/audit?action=auth.sign_in", gantry.url))
            .send()
            .await
            .expect("audit");
        let audit: Value = audit.json().await.expect("json");
        let people: Vec<&str> = audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["actor"].as_str().unwrap())
            .collect();
        assert_eq!(people, ["alice", "dave", "alice"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_id_tokens_and_a_wrong_state_are_refused() {
    crate::support::bounded(async {
        let port = free_port();
        let provider = Provider::start(&format!("http://127.0.0.1:{port}/auth/callback"));
        let gantry = Gantry::start(port, &provider.issuer, None);
        for (mode, why) in [
            ("signature", "signature"),
            ("audience", "audience"),
            ("nonce", "nonce"),
            ("expired", "expired"),
        ] {
            provider.forge(mode).await;
            let outcome = sign_in(&gantry, "alice", "/auth/login").await;
            assert_eq!(
                outcome.status,
                StatusCode::UNAUTHORIZED,
                "{mode}: {}",
                outcome.body
            );
            assert!(
                outcome.body.contains("ID token was refused"),
                "{mode}: {}",
                outcome.body
            );
            assert!(
                outcome.body.to_lowercase().contains(why),
                "{mode}: {}",
                outcome.body
            );
            assert_eq!(
                me(&outcome, &gantry).await.0,
                StatusCode::UNAUTHORIZED,
                "{mode}: not signed in"
            );
        }
        provider.forge("none").await;
        let tampered = sign_in_with(&gantry, "alice", "/auth/login", |url| {
            url.replace("state=", "state=x")
        })
        .await;
        assert_eq!(
            tampered.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            tampered.body
        );
        assert!(tampered.body.contains("state"), "{}", tampered.body);
        assert_eq!(me(&tampered, &gantry).await.0, StatusCode::UNAUTHORIZED);
        // And the genuine one still works.
        let genuine = sign_in(&gantry, "alice", "/auth/login").await;
        assert_eq!(me(&genuine, &gantry).await.0, StatusCode::OK);

        // A provider that does not say when the person authenticated: a
        // plain sign-in works but never counts as fresh, and a fresh one
        // (what `reauth: true` asks for) is refused.
        provider.forge("no_auth_time").await;
        let plain = sign_in(&gantry, "alice", "/auth/login").await;
        let (status, who) = me(&plain, &gantry).await;
        assert_eq!(status, StatusCode::OK);
        assert!(who["auth_time"].is_null(), "no time is made up: {who}");
        let fresh = sign_in(&gantry, "alice", "/auth/login?fresh=1").await;
        assert_eq!(fresh.status, StatusCode::UNAUTHORIZED, "{}", fresh.body);
        assert!(fresh.body.contains("auth_time"), "{}", fresh.body);
        provider.forge("none").await;
    })
    .await;
}
