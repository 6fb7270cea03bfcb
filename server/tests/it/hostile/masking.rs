//! A step or an app that prints a secret (a multi-line PEM key, plainly,
//! in base64, percent-encoded): nothing of it reaches a log, a deployment's
//! detail, a release or a notification.

use serde_json::json;

use super::steps::{ended_run, step_log};
use crate::on_both;
use crate::support::TestApp;
use crate::support::flow::{MINUTE, Repos, scan, start, wait_for};
use crate::support::receiver::Receiver;

const PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj
MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu
-----END PRIVATE KEY-----";

const PIPELINE: &str = r#"apiVersion: gantry.dev/v1
steps:
  - name: leak
    secrets: [PEM_KEY]
    run: |
      printf '%s\n' "$PEM_KEY"
      printf '%s' "$PEM_KEY" | base64 -w0; echo
      python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["PEM_KEY"], safe=""))'
  - { name: guess, run: "echo guess=other-token-4711" }
  - deploy
local:
  run: "printf '%s\n' \"$PEM_KEY\"; exit 3"
  secrets: [PEM_KEY]
  health: /healthz
  health_timeout: 10s
"#;

async fn put_secret(app: &TestApp, name: &str, value: &str) {
    let request = axum::http::Request::put(format!("/api/v1/secrets/{name}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "value": value }).to_string(),
        ))
        .expect("request");
    assert_eq!(app.request(request).await.status, 204, "{name}");
}

/// The secret's lines (and its first line's neighbours) found in `text`.
fn leaked(text: &str) -> Vec<&'static str> {
    PEM.lines().filter(|line| text.contains(line)).collect()
}

on_both! {
    async fn a_printed_pem_key_is_masked_everywhere_it_could_show(backend) {
        let repos = Repos::new("");
        repos.pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
        repos.pipeline.commit("a leaky pipeline");
        let app = start(backend, &repos).await;
        put_secret(&app, "PEM_KEY", PEM).await;
        put_secret(&app, "OTHER_TOKEN", "other-token-4711").await;
        repos.app.checkout("latest");
        repos.app.write("CHANGES", "leak\n");
        let sha = repos.app.commit("print the key");
        scan(&app).await;
        let run = ended_run(&app, &sha).await;

        let leak = step_log(&app, &run, "leak").await;
        assert!(leaked(&leak).is_empty(), "step log: {leak}");
        assert!(leak.matches("***").count() >= 6, "every line and form masked: {leak}");
        assert!(!leak.contains("LS0tLS1CRUdJTi"), "base64 of the key: {leak}");
        assert!(!leak.contains("%0AMIIE"), "percent-encoded: {leak}");

        // A step is masked with what it was given, and only that: masking
        // OTHER_TOKEN here would confirm the step's guess of it.
        let guess = step_log(&app, &run, "guess").await;
        assert_eq!(guess, "guess=other-token-4711\n", "no oracle: {guess}");

        // The app printed it before failing its health check: the deploy's
        // notes, the target detail, the release and the environment.
        let deploy = step_log(&app, &run, "deploy").await;
        assert!(deploy.contains("exited"), "{deploy}");
        assert!(leaked(&deploy).is_empty(), "deploy log: {deploy}");
        let releases = app.get("/api/v1/releases").await.text();
        assert!(leaked(&releases).is_empty(), "releases: {releases}");
        let environments = app.get("/api/v1/environments").await.text();
        assert!(leaked(&environments).is_empty(), "environments: {environments}");
        let runs = app.get(&format!("/api/v1/runs/{}", run["id"])).await.text();
        assert!(leaked(&runs).is_empty(), "run: {runs}");

        // Whatever a notification quotes is masked before it is queued.
        let (receiver, base) = Receiver::start().await;
        put_secret(&app, "SLACK_URL", &format!("{base}/slack")).await;
        let channel = axum::http::Request::put("/api/v1/channels/chat")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json!({ "kind": "slack", "url_secret": "SLACK_URL" }).to_string()))
            .expect("request");
        assert_eq!(app.request(channel).await.status, 204);
        gantry::notify::emit(&app.state.notifier(), gantry::notify::Notice {
            event: gantry::notify::Event::RunFailed,
            app: "shop".into(),
            environment: "staging".into(),
            subject: "run:leak".into(),
            title: "shop: leaked".into(),
            text: format!("the app said:\n{PEM}"),
            url: None,
        })
        .await;
        let sent = wait_for("the notification", MINUTE, || async {
            receiver.at("/slack").first().map(|received| received.body.to_string())
        })
        .await;
        assert!(sent.contains("the app said"), "{sent}");
        assert!(leaked(&sent).is_empty(), "notification: {sent}");
    }
}
