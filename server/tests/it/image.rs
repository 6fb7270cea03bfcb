//! The built-in image step: a real buildah builds the checkout's
//! Dockerfile in the step's sandbox, Gantry pushes it to a real registry
//! (Debian's `docker-registry` on loopback, asking for credentials),
//! records `repository@sha256:…` as the run's image and the deploy takes
//! it. Wrong credentials fail the step without showing them.

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::flow::{MINUTE, Repos, scan, start_with, wait_for};
use crate::support::registry::{self, Registry};

/// A `RUN` line needs a shell in the image: Debian's static busybox (no
/// base image can be pulled here). It gives a file to another user, as a
/// package's files belong to theirs.
const DOCKERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
COPY hello.txt /hello.txt
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo ran as $(/bin/busybox id -u) > /ran.txt && /bin/busybox chown 1234:1234 /hello.txt"]
CMD ["/bin/busybox", "cat", "/hello.txt"]
"#;

fn pipeline(repository: &str, later: &str) -> String {
    format!(
        r#"apiVersion: gantry.dev/v1
steps:
  - image: {{ context: web, repository: {repository}, credentials: REGISTRY }}
{later}  - deploy
local:
  run: python3 -m http.server "$PORT" --bind "${{HOST:-127.0.0.1}}"
  health: /
  health_timeout: 20s
"#
    )
}

async fn start(registry: &Registry) -> (TestApp, Repos, String) {
    start_with_steps(registry, "").await
}

/// [`start`], with `later` steps between the image step and the deploy.
async fn start_with_steps(registry: &Registry, later: &str) -> (TestApp, Repos, String) {
    let repos = Repos::new("");
    repos.app.write("web/Dockerfile", DOCKERFILE);
    repos
        .app
        .write("web/hello.txt", "hello from the image step\n");
    std::fs::copy(
        "/bin/busybox",
        std::path::Path::new(&repos.app.path()).join("web/busybox"),
    )
    .expect("Debian's busybox-static (`./x test` installs it)");
    let sha = repos.app.commit("an image to build");
    repos.pipeline.write(
        "apps/shop/app.yaml",
        &format!(
            "apiVersion: gantry.dev/v1\nsource: {}\nstack:\n  - env: staging\n    branch: master\n    target: local\n",
            repos.app.path()
        ),
    );
    repos.pipeline.write(
        "apps/shop/pipeline.yaml",
        &pipeline(&format!("{}/team/shop", registry.host), later),
    );
    repos.pipeline.commit("shop builds an image");
    let app = start_with("sqlite", &repos, |_| {}).await;
    (app, repos, sha)
}

async fn set_secret(app: &TestApp, name: &str, value: &str) {
    let request = axum::http::Request::put(format!("/api/v1/secrets/{name}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "value": value }).to_string(),
        ))
        .expect("request");
    let response = app.request(request).await;
    assert_eq!(response.status, 204, "{}", response.text());
}

/// The run of `sha`, once it ended.
async fn ended_run(app: &TestApp, sha: &str) -> Value {
    let id = wait_for(&format!("the run of {sha} to end"), 3 * MINUTE, || async {
        let runs = app.get("/api/v1/runs?environment=staging").await.json();
        runs.as_array()?
            .iter()
            .find(|r| {
                r["commit_sha"] == sha
                    && ["succeeded", "failed"].contains(&r["state"].as_str().unwrap_or(""))
            })
            .and_then(|r| r["id"].as_i64())
    })
    .await;
    app.get(&format!("/api/v1/runs/{id}")).await.json()
}

/// The robot's registry credentials, as the secret holds them.
fn robot() -> String {
    format!("{}:{}", registry::USER, registry::PASSWORD)
}

/// The run of `sha` once it ended, with the secret `REGISTRY` set to
/// `credentials` first.
async fn pushed_run(app: &TestApp, sha: &str, credentials: &str) -> Value {
    set_secret(app, "REGISTRY", credentials).await;
    scan(app).await;
    ended_run(app, sha).await
}

async fn step_log(app: &TestApp, run: &Value, name: &str) -> String {
    let step = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {run}"));
    app.get(&format!(
        "/api/v1/runs/{}/steps/{}/log",
        run["run"]["id"], step["id"]
    ))
    .await
    .text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_step_builds_pushes_and_the_deploy_takes_the_pushed_digest() {
    crate::support::bounded(async {
        let registry = Registry::start().await;
        let (app, _repos, sha) = start(&registry).await;
        let run = pushed_run(&app, &sha, &robot()).await;
        let log = step_log(&app, &run, "image").await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}\n{log}");
        assert!(!log.contains(registry::PASSWORD), "{log}");

        // The run's image is the digest of what the registry now holds
        // under the commit's tag.
        let image = run["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "image" && o["step"] == "image")
            .and_then(|o| o["value"].as_str())
            .unwrap_or_else(|| panic!("no image output in {run}"))
            .to_string();
        let prefix = format!("{}/team/shop@sha256:", registry.host);
        assert!(image.starts_with(&prefix), "{image}");
        let manifest = registry
            .get(
                &format!("team/shop/manifests/{sha}"),
                "application/vnd.oci.image.manifest.v1+json",
            )
            .await;
        assert_eq!(manifest.status(), 200);
        let served_digest = manifest.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            image,
            format!("{}/team/shop@{served_digest}", registry.host)
        );
        let manifest: Value = manifest.json().await.unwrap();
        // Its one layer holds the file the Dockerfile copied.
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        let blob = registry
            .get(&format!("team/shop/blobs/{layer}"), "*/*")
            .await
            .bytes()
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("layer"), &blob).unwrap();
        let out = std::process::Command::new("tar")
            .args(["-xzOf", "layer", "hello.txt"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from the image step\n"
        );
        // The RUN line ran, as root of the build's namespace, and the
        // file it gave to uid 1234 keeps that owner in the image.
        let listing = std::process::Command::new("tar")
            .args(["-tzvf", "layer", "--numeric-owner"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        let hello = listing
            .lines()
            .find(|l| l.ends_with("hello.txt"))
            .unwrap_or_else(|| panic!("{listing}"));
        assert!(hello.contains("1234/1234"), "{listing}");
        let out = std::process::Command::new("tar")
            .args(["-xzOf", "layer", "ran.txt"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran as 0\n");

        // The deploy took the pushed digest, and the build left nothing
        // behind in the run's home.
        let deploy = step_log(&app, &run, "deploy").await;
        assert!(
            deploy.contains(&format!("deploys the image step image declared: {image}")),
            "{deploy}"
        );
        assert!(
            log.contains(&format!("pushed {}/team/shop:{sha}", registry.host)),
            "{log}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_credentials_fail_the_step_and_are_never_shown() {
    crate::support::bounded(async {
        let registry = Registry::start().await;
        let (app, _repos, sha) = start(&registry).await;
        let run = pushed_run(&app, &sha, "robot:not-the-password-9f2c").await;
        assert_eq!(run["run"]["state"], "failed", "{run}");
        let log = step_log(&app, &run, "image").await;
        assert!(
            log.contains("image not pushed: registry 127.0.0.1:"),
            "{log}"
        );
        assert!(log.contains("401"), "{log}");
        assert!(!log.contains("not-the-password-9f2c"), "{log}");
        // Nothing was recorded as the run's image, and nothing deployed.
        let outputs = run["outputs"].as_array().cloned().unwrap_or_default();
        assert!(outputs.iter().all(|o| o["name"] != "image"), "{run}");
        let deploy = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "deploy")
            .cloned()
            .unwrap();
        assert_ne!(deploy["state"], "succeeded", "{run}");
        let tags = registry.get("team/shop/tags/list", "*/*").await;
        assert_eq!(tags.status(), 404, "nothing was pushed");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_asks_for_a_bearer_token_gets_one_from_its_realm() {
    crate::support::bounded(async {
        let (registry, tokens) = Registry::with_tokens().await;
        let (app, _repos, sha) = start(&registry).await;
        let run = pushed_run(&app, &sha, &robot()).await;
        let log = step_log(&app, &run, "image").await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}\n{log}");
        // Gantry asked the realm the registry named, with the robot's
        // password, for push and pull on the repository only.
        let asked = tokens.asked.lock().unwrap().clone();
        assert!(!asked.is_empty());
        for (basic, query) in &asked {
            assert!(
                basic.as_deref().is_some_and(|b| b.starts_with("Basic ")),
                "{asked:?}"
            );
            assert!(
                query.contains("scope=repository%3Ateam%2Fshop%3Apull%2Cpush"),
                "{query}"
            );
            assert!(
                query.contains(&format!("service={}", registry::SERVICE)),
                "{query}"
            );
        }
        let tags = tokens
            .get(
                &registry,
                "team/shop/tags/list",
                "repository:team/shop:pull",
            )
            .await;
        assert_eq!(tags.status(), 200);
        let tags: Value = tags.json().await.unwrap();
        assert_eq!(tags["tags"], json!([sha]), "{tags}");
    })
    .await
}

/// The run's image is what the image step pushed: a later step (the
/// app's code) declaring another `image` fails, and the deploy never takes
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_step_cannot_replace_the_pushed_image() {
    crate::support::bounded(async {
        let registry = Registry::start().await;
        let sneaky = "  - name: sneaky\n    run: echo image=evil.example/x@sha256:0000000000000000000000000000000000000000000000000000000000000000 >> \"$GANTRY_OUTPUTS\"\n";
        let (app, _repos, sha) = start_with_steps(&registry, sneaky).await;
        let run = pushed_run(&app, &sha, &robot()).await;
        assert_eq!(run["run"]["state"], "failed", "{run}");
        let log = step_log(&app, &run, "sneaky").await;
        assert!(log.contains("declares `image`, which is the image step's"), "{log}");
        let images: Vec<&str> = run["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["name"] == "image")
            .filter_map(|o| o["value"].as_str())
            .collect();
        assert_eq!(images.len(), 1, "{run}");
        assert!(images[0].starts_with(&format!("{}/team/shop@sha256:", registry.host)), "{run}");
    })
    .await
}
