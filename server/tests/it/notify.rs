//! Notifications: DingTalk, Slack and a signed webhook, registered by an
//! admin with their URLs and secrets as registered secrets, each checked by
//! a local receiver that records every request: the DingTalk signature is
//! recomputed, the webhook's HMAC checked, one message per run outcome, and
//! a receiver's 5xx retried until it answers.

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::flow::{MINUTE, Repos, scan, start, wait_for};
use crate::support::receiver::Receiver;

async fn put_secret(app: &TestApp, name: &str, value: &str) {
    let request = axum::http::Request::put(format!("/api/v1/secrets/{name}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "value": value }).to_string(),
        ))
        .expect("request");
    assert_eq!(app.request(request).await.status, 204, "{name}");
}

async fn put_channel(app: &TestApp, name: &str, channel: Value) {
    let request = axum::http::Request::put(format!("/api/v1/channels/{name}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(channel.to_string()))
        .expect("request");
    let response = app.request(request).await;
    assert_eq!(response.status, 204, "{name}: {}", response.text());
}

/// The build fails when the commit has a `FAIL` file.
const STEPS: &str = "  - { name: build, run: \"test ! -f FAIL\" }\n";

crate::on_both! {
    async fn a_failed_run_is_told_once_on_every_channel(backend) {
        let (receiver, base) = Receiver::start().await;
        let repos = Repos::new(STEPS);
        let app = start(backend, &repos).await;
        put_secret(&app, "DINGTALK_URL", &format!("{base}/robot/send?access_token=abc")).await;
        put_secret(&app, "DINGTALK_SECRET", "SEC-ding-secret").await;
        put_secret(&app, "SLACK_URL", &format!("{base}/slack")).await;
        put_secret(&app, "HOOK_URL", &format!("{base}/hook")).await;
        put_secret(&app, "HOOK_SECRET", "hook-secret").await;
        put_channel(&app, "ding", json!({ "kind": "dingtalk", "url_secret": "DINGTALK_URL",
            "signing_secret": "DINGTALK_SECRET", "mentions": ["13800000000"],
            "rules": [{ "events": ["run_failed"] }] })).await;
        put_channel(&app, "chat", json!({ "kind": "slack", "url_secret": "SLACK_URL",
            "rules": [{ "events": ["run_failed"] }] })).await;
        put_channel(&app, "hook", json!({ "kind": "webhook", "url_secret": "HOOK_URL",
            "signing_secret": "HOOK_SECRET", "rules": [{ "apps": ["shop"], "events": ["run_failed"] }] })).await;
        // Misconfigured channels are refused with the reason.
        let bad = axum::http::Request::put("/api/v1/channels/nope")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json!({ "kind": "dingtalk", "url_secret": "MISSING_URL" }).to_string()))
            .expect("request");
        let bad = app.request(bad).await;
        assert_eq!(bad.status, 400);
        assert!(bad.text().contains("MISSING_URL"), "{}", bad.text());
        // Slack answers 500 twice before it takes the message.
        receiver.fail("/slack", 2);

        repos.app.checkout_new("feature-bad");
        repos.app.write("FAIL", "1");
        repos.app.commit("breaks the build");
        scan(&app).await;

        let ding = wait_for("the DingTalk message", MINUTE, || async {
            receiver.at("/robot/send").into_iter().next()
        })
        .await;
        let query: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(ding.query.as_bytes()).into_owned().collect();
        assert_eq!(query["access_token"], "abc");
        let timestamp: i64 = query["timestamp"].parse().expect("timestamp");
        assert_eq!(query["sign"], gantry::notify::message::dingtalk_sign("SEC-ding-secret", timestamp));
        assert_eq!(ding.body["msgtype"], "markdown");
        let text = ding.body["markdown"]["text"].as_str().unwrap();
        assert!(text.contains("failed") && text.contains("feature-bad"), "{text}");
        assert!(text.contains("@13800000000"), "{text}");
        assert_eq!(ding.body["at"]["atMobiles"], json!(["13800000000"]));

        let hook = wait_for("the webhook", MINUTE, || async { receiver.at("/hook").into_iter().next() }).await;
        let signature = hook.headers["x-gantry-signature"].to_str().unwrap().to_string();
        assert_eq!(
            signature,
            format!("sha256={}", gantry::forge::webhook::sign("hook-secret", hook.body.to_string().as_bytes()))
        );
        assert_eq!(hook.body["event"], "run_failed");
        // The delivery id is inside what is signed, and is the header's.
        let delivery = hook.headers["x-gantry-delivery"].to_str().unwrap().to_string();
        assert_eq!(hook.body["delivery"], delivery.as_str(), "{}", hook.body);
        assert_eq!(hook.body["app"], "shop");

        // Slack: two 500s, then delivered on the third attempt.
        let slack = wait_for("Slack to get the message after retries", MINUTE, || async {
            let got = receiver.at("/slack");
            (got.len() == 3).then_some(got)
        })
        .await;
        assert!(slack[2].body["blocks"].as_array().is_some_and(|b| b.len() == 3), "{:?}", slack[2].body);
        let log = wait_for("the delivery log", MINUTE, || async {
            let log = app.get("/api/v1/channels/chat/deliveries").await.json();
            (log[0]["state"] == "delivered").then_some(log)
        })
        .await;
        assert_eq!(log[0]["attempts"], 3, "{log}");
        assert_eq!(log[0]["event"], "run_failed");

        // One message per run outcome, not one per step.
        // (Every message is queued by the time the run has ended.)
        for channel in ["ding", "hook"] {
            let queued = app.get(&format!("/api/v1/channels/{channel}/deliveries")).await.json();
            assert_eq!(queued.as_array().unwrap().len(), 1, "{channel}: {queued}");
        }

        // The channel list names secrets, never their values.
        let channels = app.get("/api/v1/channels").await.text();
        assert!(channels.contains("DINGTALK_URL") && !channels.contains("access_token=abc"), "{channels}");
        assert!(!channels.contains("SEC-ding-secret") && !channels.contains(&base), "{channels}");

        // "Send test message"; a receiver that keeps failing shows in the log.
        receiver.fail("/hook", usize::MAX);
        assert_eq!(app.post_json("/api/v1/channels/ding/test", json!({})).await.status, 202);
        assert_eq!(app.post_json("/api/v1/channels/hook/test", json!({})).await.status, 202);
        wait_for("the test message", MINUTE, || async {
            receiver
                .at("/robot/send")
                .into_iter()
                .find(|r| r.body["markdown"]["title"] == "Gantry test message")
        })
        .await;
        let failing = wait_for("the failing delivery to be logged", MINUTE, || async {
            let log = app.get("/api/v1/channels/hook/deliveries").await.json();
            log.as_array()?
                .iter()
                .find(|d| d["event"] == "test" && d["state"] == "retrying")
                .cloned()
        })
        .await;
        assert!(failing["last_error"].as_str().unwrap().contains("500"), "{failing}");
        // The dashboard shows the failing delivery with its error, and its
        // "Send test message" button sends one.
        let page = app.get("/notifications").await.text();
        assert!(page.contains("data-channel=\"hook\"") && page.contains("Send test message"), "{page}");
        assert!(page.contains("data-state=\"retrying\"") && page.contains("answered 500"), "{page}");
        assert!(!page.contains("hook-secret") && !page.contains(&base), "no secrets on the page");
        // Its old address still leads there.
        let moved = app.get("/channels").await;
        assert_eq!(moved.status, 308);
        assert_eq!(moved.headers["location"], "/notifications");
        let button = axum::http::Request::post("/fn/test_channel")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(axum::body::Body::from("name=chat&csrf="))
            .expect("request");
        let pressed = app.request(button).await;
        assert_eq!(pressed.status, 200, "{}", pressed.text());
        wait_for("the dashboard's test message on Slack", MINUTE, || async {
            receiver
                .at("/slack")
                .into_iter()
                .find(|r| r.body["text"] == "Gantry test message")
        })
        .await;
        let developer = app.token("dev", app::dto::Role::Developer, None).await;
        let refused = app.post_as(&developer, "/api/v1/channels/ding/test", json!({})).await;
        assert_eq!(refused.status, 403);

        // A channel without rules hears everything: a change request is
        // opened (approval requested), then approved.
        put_secret(&app, "ALL_URL", &format!("{base}/all")).await;
        put_channel(&app, "everything", json!({ "kind": "webhook", "url_secret": "ALL_URL" })).await;
        let opened = app
            .post_json("/api/v1/change-requests", json!({ "app": "shop", "source_branch": "feature-bad" }))
            .await;
        assert_eq!(opened.status, 201, "{}", opened.text());
        let id = opened.json()["id"].as_i64().unwrap();
        // Another admin: the author may not approve their own request.
        let ada = app.token("ada", app::dto::Role::Admin, None).await;
        let approved = app
            .post_as(&ada, &format!("/api/v1/change-requests/{id}/approve"), json!({ "comment": "fine" }))
            .await;
        assert_eq!(approved.status, 200, "{}", approved.text());
        let events = wait_for("approval requested and approved", MINUTE, || async {
            let events: Vec<String> = receiver
                .at("/all")
                .iter()
                .map(|r| r.body["event"].as_str().unwrap_or("").to_string())
                .collect();
            (events.contains(&"approval_requested".to_string()) && events.contains(&"approved".to_string()))
                .then_some(events)
        })
        .await;
        assert!(!events.contains(&"run_failed".to_string()), "queued before the channel existed: {events:?}");
        let requested = receiver.at("/all").into_iter().find(|r| r.body["event"] == "approval_requested").unwrap();
        assert_eq!(requested.body["environment"], "staging");
        assert!(requested.body["url"].as_str().unwrap().ends_with(&format!("/change-requests/{id}")));
    }
}

/// maildev (npm): an SMTP sink with a REST API, stopped when dropped.
struct Maildev {
    child: std::process::Child,
    smtp: u16,
    web: u16,
}

impl Maildev {
    async fn start() -> Maildev {
        let (smtp, web) = (
            crate::support::process::free_port(),
            crate::support::process::free_port(),
        );
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../end2end/node_modules/maildev/dist/bin/maildev.js"
        );
        let child = std::process::Command::new("node")
            .args([
                script,
                "--smtp",
                &smtp.to_string(),
                "--web",
                &web.to_string(),
            ])
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("maildev (./x test runs npm ci in end2end/)");
        let maildev = Maildev { child, smtp, web };
        wait_for("maildev to listen", MINUTE, || async {
            reqwest::get(format!("http://127.0.0.1:{}/api/email", maildev.web))
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        maildev
    }

    async fn emails(&self) -> Vec<Value> {
        reqwest::get(format!("http://127.0.0.1:{}/api/email", self.web))
            .await
            .expect("maildev")
            .json::<Value>()
            .await
            .expect("json")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Maildev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

crate::on_both! {
    async fn a_failed_run_is_emailed_with_text_and_html(backend) {
        let maildev = Maildev::start().await;
        let repos = Repos::new(STEPS);
        let app = start(backend, &repos).await;
        put_secret(&app, "SMTP_URL", &format!("smtp://127.0.0.1:{}", maildev.smtp)).await;
        let bad = axum::http::Request::put("/api/v1/channels/mail")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json!({ "kind": "email", "url_secret": "SMTP_URL", "to": ["not an address"] }).to_string()))
            .expect("request");
        let bad = app.request(bad).await;
        assert_eq!(bad.status, 400, "{}", bad.text());
        put_channel(&app, "mail", json!({ "kind": "email", "url_secret": "SMTP_URL",
            "to": ["ops@example.com"], "from": "Gantry <gantry@example.com>",
            "rules": [{ "events": ["run_failed"] }] })).await;

        repos.app.checkout_new("feature-bad");
        repos.app.write("FAIL", "1");
        repos.app.commit("breaks the build");
        scan(&app).await;
        let email = wait_for("the email", MINUTE, || async { maildev.emails().await.into_iter().next() }).await;
        assert!(email["subject"].as_str().unwrap().contains("failed"), "{email}");
        assert_eq!(email["to"][0]["address"], "ops@example.com");
        assert_eq!(email["from"][0]["address"], "gantry@example.com");
        assert!(email["text"].as_str().unwrap().contains("feature-bad"), "{email}");
        assert!(email["html"].as_str().unwrap().contains("<h2>"), "{email}");
        wait_for("the email's delivery to be logged", MINUTE, || async {
            let log = app.get("/api/v1/channels/mail/deliveries").await.json();
            log.as_array()?.iter().find(|d| d["state"] == "delivered" && d["event"] == "run_failed").cloned()
        })
        .await;
    }
}

crate::on_both! {
    async fn a_wecom_robot_gets_the_channels_own_wording(backend) {
        let (receiver, base) = Receiver::start().await;
        let repos = Repos::new(STEPS);
        let app = start(backend, &repos).await;
        put_secret(&app, "WECOM_URL", &format!("{base}/cgi-bin/webhook/send?key=k1")).await;
        // A template with a typo is refused with its place.
        let typo = axum::http::Request::put("/api/v1/channels/wecom")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json!({ "kind": "wecom", "url_secret": "WECOM_URL",
                "templates": { "run_failed": { "title": "{{ enviroment }} is red" } } }).to_string()))
            .expect("request");
        let typo = app.request(typo).await;
        assert_eq!(typo.status, 400, "{}", typo.text());
        assert!(typo.text().contains("templates.run_failed.title"), "{}", typo.text());
        put_channel(&app, "wecom", json!({ "kind": "wecom", "url_secret": "WECOM_URL",
            "mentions": ["ada"], "rules": [{ "events": ["run_failed"] }],
            "templates": {
                "run_failed": { "title": "{{ app }}/{{ environment }} is red",
                                "text": "{{ text }}\n\nBy the book: {{ url }}" }
            } })).await;
        // The robot says no once (HTTP 500) before it takes the message.
        receiver.fail("/cgi-bin/webhook/send", 1);

        repos.app.checkout_new("feature-bad");
        repos.app.write("FAIL", "1");
        repos.app.commit("breaks the build");
        scan(&app).await;

        // Delivery is at least once: a busy database may resend a message
        // the robot took, so count the attempts up to the first success.
        let got = wait_for("the WeCom message, after one retry", MINUTE, || async {
            let got = receiver.at("/cgi-bin/webhook/send");
            (got.len() >= 2).then_some(got)
        })
        .await;
        let message = &got[1];
        assert_eq!(message.query, "key=k1");
        assert_eq!(message.body["msgtype"], "markdown");
        let content = message.body["markdown"]["content"].as_str().unwrap();
        let env = gantry::gitops::stack::preview_name("preview", "feature-bad");
        assert!(content.starts_with(&format!("shop/{env} is red\n\n")), "{content}");
        assert!(content.contains("feature-bad") && content.contains("By the book: http"), "{content}");
        assert!(content.ends_with("<@ada>"), "{content}");
        let channels = app.get("/api/v1/channels").await.json();
        assert_eq!(channels[0]["settings"]["templates"]["run_failed"]["title"], "{{ app }}/{{ environment }} is red");
    }
}
