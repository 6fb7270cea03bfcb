//! Forge webhooks: real GitHub payloads from `@octokit/webhooks-examples`
//! (npm), GitLab and Gitea payloads written from their documentation.
//! Signatures are checked, every delivery is stored once, and pushes and
//! merge/pull requests drive the flow without waiting for a poll.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::support::flow::{MINUTE, QUICK_STEPS, Repos, start, wait_for};
use crate::support::{TestApp, TestResponse};

const SECRET: &str = "webhook-s3cret";

/// `@octokit/webhooks-examples`: every event's examples, by event name.
fn github_examples() -> &'static Value {
    static EXAMPLES: OnceLock<Value> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../end2end/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (./x test runs npm ci in end2end/)"));
        serde_json::from_str(&text).expect("examples")
    })
}

/// A real GitHub example of `event` that satisfies `pick`.
fn github_example(event: &str, pick: impl Fn(&Value) -> bool) -> Value {
    github_examples()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == event)
        .and_then(|e| e["examples"].as_array().unwrap().iter().find(|x| pick(x)))
        .cloned()
        .unwrap_or_else(|| panic!("no {event} example"))
}

fn hex_hmac(body: &[u8]) -> String {
    gantry::forge::webhook::sign(SECRET, body)
}

/// Delivers `payload` as `forge` would, with `signature` (None: the right one).
pub(crate) async fn deliver(
    app: &TestApp,
    forge: &str,
    event: &str,
    delivery: &str,
    payload: &Value,
    signature: Option<&str>,
) -> TestResponse {
    let body = payload.to_string();
    let good = hex_hmac(body.as_bytes());
    let mut request =
        Request::post(format!("/api/v1/hooks/{forge}")).header("content-type", "application/json");
    request = match forge {
        "github" => request
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header(
                "x-hub-signature-256",
                signature.map_or(format!("sha256={good}"), str::to_string),
            ),
        "gitlab" => request
            .header("x-gitlab-event", event)
            .header("x-gitlab-event-uuid", delivery)
            .header("x-gitlab-token", signature.unwrap_or(SECRET)),
        _ => request
            .header("x-gitea-event", event)
            .header("x-gitea-delivery", delivery)
            .header("x-gitea-signature", signature.map_or(good, str::to_string)),
    };
    app.request_as(None, request.body(Body::from(body)).expect("request"))
        .await
}

pub(crate) async fn register_secrets(app: &TestApp) {
    for name in [
        "GITHUB_WEBHOOK_SECRET",
        "GITLAB_WEBHOOK_TOKEN",
        "GITEA_WEBHOOK_SECRET",
    ] {
        let request = Request::put(format!("/api/v1/secrets/{name}"))
            .header("content-type", "application/json")
            .body(Body::from(json!({ "value": SECRET }).to_string()))
            .expect("request");
        assert_eq!(app.request(request).await.status, 204, "{name}");
    }
}

/// A GitHub push of `branch` to `sha` in the repo at `path`, from a real
/// example with its repository pointed at the test's repo.
pub(crate) fn github_push(path: &str, branch: &str, sha: &str) -> Value {
    let mut push = github_example("push", |x| {
        x["ref"]
            .as_str()
            .is_some_and(|r| r.starts_with("refs/heads/"))
    });
    push["ref"] = json!(format!("refs/heads/{branch}"));
    push["after"] = json!(sha);
    push["deleted"] = json!(false);
    push["repository"]["clone_url"] = json!(format!("{path}.git"));
    push
}

pub(crate) fn github_pull_request(
    action: &str,
    path: &str,
    number: i64,
    head: &str,
    sha: &str,
) -> Value {
    let mut pr = github_example("pull_request", |x| x["action"] == action);
    pr["number"] = json!(number);
    pr["pull_request"]["number"] = json!(number);
    pr["pull_request"]["head"]["ref"] = json!(head);
    pr["pull_request"]["head"]["sha"] = json!(sha);
    pr["pull_request"]["base"]["ref"] = json!("latest");
    pr["pull_request"]["title"] = json!("Faster checkout");
    pr["repository"]["clone_url"] = json!(path);
    pr
}

/// Waits until Gantry has reconciled the pipeline repo and knows `shop`: a
/// delivery for a repository no app watches is (rightly) ignored.
pub(crate) async fn app_known(app: &TestApp) {
    wait_for("shop to be reconciled", MINUTE, || async {
        (app.get("/api/v1/apps/shop").await.status == 200).then_some(())
    })
    .await;
}

async fn inbox_count(app: &TestApp, source: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM event_inbox WHERE source = $1")
        .bind(source)
        .fetch_one(app.db().pool())
        .await
        .expect("count")
}

async fn change_request(app: &TestApp, origin: &str) -> Option<Value> {
    let list = app.get("/api/v1/change-requests").await.json();
    let id = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM change_requests WHERE origin = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(origin)
    .fetch_optional(app.db().pool())
    .await
    .expect("query")?;
    list.as_array()?.iter().find(|c| c["id"] == id).cloned()
}

crate::on_both! {
    async fn signatures_are_checked_and_each_delivery_is_stored_once(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let app = start(backend, &repos).await;
        let push = github_push(&repos.app.path(), "master", &repos.app.head("master"));

        // Without a registered secret nothing is accepted.
        let refused = deliver(&app, "github", "push", "d-0", &push, None).await;
        assert_eq!(refused.status, 401, "{}", refused.text());
        assert!(refused.text().contains("GITHUB_WEBHOOK_SECRET"), "{}", refused.text());
        register_secrets(&app).await;

        let bad = "sha256=0000000000000000000000000000000000000000000000000000000000000000";
        for (forge, event, signature) in [
            ("github", "push", bad),
            ("gitlab", "Push Hook", "not-the-token"),
            ("gitea", "push", "00ff"),
        ] {
            let response = deliver(&app, forge, event, "d-bad", &push, Some(signature)).await;
            assert_eq!(response.status, 401, "{forge}: {}", response.text());
            assert!(response.text().contains("signature"), "{}", response.text());
        }
        let unsigned = app
            .request_as(
                None,
                Request::post("/api/v1/hooks/github")
                    .header("x-github-event", "push")
                    .header("x-github-delivery", "d-x")
                    .body(Body::from(push.to_string()))
                    .expect("request"),
            )
            .await;
        assert_eq!(unsigned.status, 401, "{}", unsigned.text());
        let unknown = deliver(&app, "bitbucket", "push", "d-1", &push, None).await;
        assert_eq!(unknown.status, 404, "{}", unknown.text());
        assert_eq!(inbox_count(&app, "github").await, 0, "refused deliveries are not stored");

        for forge in ["github", "gitlab", "gitea"] {
            let event = if forge == "gitlab" { "Push Hook" } else { "push" };
            let first = deliver(&app, forge, event, "delivery-1", &push, None).await;
            assert_eq!(first.status, 202, "{forge}: {}", first.text());
            assert_eq!(first.json()["duplicate"], false);
            let again = deliver(&app, forge, event, "delivery-1", &push, None).await;
            assert_eq!(again.status, 200, "{forge}: {}", again.text());
            assert_eq!(again.json()["duplicate"], true);
            assert_eq!(inbox_count(&app, forge).await, 1, "{forge}");
        }
        // A ping is acknowledged and processed as nothing.
        let ping = github_example("ping", |_| true);
        assert_eq!(deliver(&app, "github", "ping", "ping-1", &ping, None).await.status, 202);
        wait_for("every delivery processed", MINUTE, || async {
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM event_inbox WHERE processed_at IS NULL OR error IS NOT NULL",
            )
            .fetch_one(app.db().pool())
            .await
            .expect("count");
            (pending == 0).then_some(())
        })
        .await;
    }

    async fn a_pushed_branch_deploys_without_waiting_for_a_poll(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let app = start(backend, &repos).await;
        app_known(&app).await;
        register_secrets(&app).await;
        repos.app.checkout_new("feature-x");
        repos.app.write("x.txt", "x");
        let sha = repos.app.commit("feature x");
        // The test config polls hourly: only the webhook can start this.
        let push = github_push(&repos.app.path(), "feature-x", &sha);
        assert_eq!(deliver(&app, "github", "push", "push-1", &push, None).await.status, 202);
        wait_for("the preview of feature-x to deploy the pushed commit", MINUTE, || async {
            let envs = app.get("/api/v1/environments").await.json();
            envs.as_array()?
                .iter()
                .find(|e| e["branch"] == "feature-x" && e["commit_sha"] == sha.as_str() && e["state"] == "live")
                .cloned()
        })
        .await;
    }

    async fn forge_requests_become_change_requests(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let app = start(backend, &repos).await;
        app_known(&app).await;
        register_secrets(&app).await;
        let path = repos.app.path();
        repos.app.checkout_new("feature-x");
        repos.app.write("x.txt", "x");
        let first = repos.app.commit("feature x");

        // GitHub: opened → a change request with its preview.
        let opened = github_pull_request("opened", &path, 7, "feature-x", &first);
        assert_eq!(deliver(&app, "github", "pull_request", "pr-1", &opened, None).await.status, 202);
        let cr = wait_for("the change request", MINUTE, || change_request(&app, "github")).await;
        assert_eq!(cr["source_branch"], "feature-x");
        assert_eq!(cr["target_branch"], "latest");
        assert_eq!(cr["title"], "Faster checkout");
        assert_eq!(cr["state"], "open");
        assert_eq!(cr["head_sha"], first.as_str());
        wait_for("the request's preview", MINUTE, || async {
            let envs = app.get("/api/v1/environments").await.json();
            envs.as_array()?
                .iter()
                .find(|e| e["branch"] == "feature-x" && e["state"] == "live")
                .cloned()
        })
        .await;

        // Updated: the request follows the new head.
        repos.app.write("y.txt", "y");
        let second = repos.app.commit("feature y");
        let synchronized = github_pull_request("synchronize", &path, 7, "feature-x", &second);
        assert_eq!(deliver(&app, "github", "pull_request", "pr-2", &synchronized, None).await.status, 202);
        wait_for("the request to follow the new head", MINUTE, || async {
            change_request(&app, "github").await.filter(|c| c["head_sha"] == second.as_str())
        })
        .await;
        wait_for("the preview of the new head", MINUTE, || async {
            let envs = app.get("/api/v1/environments").await.json();
            envs.as_array()?
                .iter()
                .find(|e| e["branch"] == "feature-x" && e["commit_sha"] == second.as_str() && e["state"] == "live")
                .cloned()
        })
        .await;

        // Closed without merging: the request closes, the preview goes.
        let closed = github_pull_request("closed", &path, 7, "feature-x", &second);
        assert_eq!(deliver(&app, "github", "pull_request", "pr-3", &closed, None).await.status, 202);
        wait_for("the request to close", MINUTE, || async {
            change_request(&app, "github").await.filter(|c| c["state"] == "closed")
        })
        .await;
        wait_for("the preview to be destroyed", MINUTE, || async {
            let envs = app.get("/api/v1/environments").await.json();
            (!envs.as_array()?.iter().any(|e| e["branch"] == "feature-x")).then_some(())
        })
        .await;

        // GitLab (payload from its documentation): opened, then merged.
        let merge_request = |action: &str| {
            json!({
                "object_kind": "merge_request",
                "event_type": "merge_request",
                "user": { "id": 1, "name": "Administrator", "username": "root" },
                "project": { "id": 1, "name": "shop", "web_url": "http://gitlab.example.com/team/shop",
                             "git_ssh_url": "git@gitlab.example.com:team/shop.git", "git_http_url": path },
                "object_attributes": {
                    "id": 99, "iid": 3, "title": "Gitlab change", "description": "From GitLab",
                    "source_branch": "feature-x", "target_branch": "latest", "state": "opened",
                    "action": action, "last_commit": { "id": second, "message": "feature y" }
                }
            })
        };
        assert_eq!(deliver(&app, "gitlab", "Merge Request Hook", "mr-1", &merge_request("open"), None).await.status, 202);
        let mr = wait_for("the GitLab request", MINUTE, || change_request(&app, "gitlab")).await;
        assert_eq!(mr["title"], "Gitlab change");
        assert_eq!(mr["author"], "root");
        assert_eq!(deliver(&app, "gitlab", "Merge Request Hook", "mr-2", &merge_request("merge"), None).await.status, 202);
        wait_for("the GitLab request to be merged", MINUTE, || async {
            change_request(&app, "gitlab").await.filter(|c| c["state"] == "merged")
        })
        .await;

        // Gitea (payload from its documentation): a branch deletion is
        // fetched like any other change.
        let delete = json!({ "ref": "feature-x", "ref_type": "branch", "pusher_type": "user",
                             "repository": { "clone_url": path } });
        assert_eq!(deliver(&app, "gitea", "delete", "del-1", &delete, None).await.status, 202);
    }
}

/// How each forge's API looks to the receiver: where Gantry's calls land,
/// the auth header it must carry, and how a request is opened by webhook.
struct ForgeShape {
    kind: &'static str,
    /// The repository's part of every API path.
    repo: &'static str,
    auth: (&'static str, &'static str),
    /// Path of the comment list, and of the one comment (id 555, what the
    /// receiver answers), with the edit's method.
    comments: &'static str,
    comment: &'static str,
    edit: axum::http::Method,
    /// The merge call: path, method, and the body field carrying the head.
    merge: &'static str,
    merge_method: axum::http::Method,
    merge_sha_field: &'static str,
    /// The status body's field naming the stage.
    context_field: &'static str,
}

const GITHUB: ForgeShape = ForgeShape {
    kind: "github",
    repo: "/repos/acme/shop",
    auth: ("authorization", "Bearer forge-test-token"),
    comments: "/repos/acme/shop/issues/7/comments",
    comment: "/repos/acme/shop/issues/comments/555",
    edit: axum::http::Method::PATCH,
    merge: "/repos/acme/shop/pulls/7/merge",
    merge_method: axum::http::Method::PUT,
    merge_sha_field: "sha",
    context_field: "context",
};

// GitLab's API (docs.gitlab.com/ee/api): the project by its URL-encoded
// path, `PRIVATE-TOKEN`, merge-request notes, `name` for the status.
const GITLAB: ForgeShape = ForgeShape {
    kind: "gitlab",
    repo: "/projects/acme%2Fshop",
    auth: ("private-token", "forge-test-token"),
    comments: "/projects/acme%2Fshop/merge_requests/7/notes",
    comment: "/projects/acme%2Fshop/merge_requests/7/notes/555",
    edit: axum::http::Method::PUT,
    merge: "/projects/acme%2Fshop/merge_requests/7/merge",
    merge_method: axum::http::Method::PUT,
    merge_sha_field: "sha",
    context_field: "name",
};

// Gitea's API (/api/swagger): GitHub-like paths, `token` auth, `Do` merges.
const GITEA: ForgeShape = ForgeShape {
    kind: "gitea",
    repo: "/repos/acme/shop",
    auth: ("authorization", "token forge-test-token"),
    comments: "/repos/acme/shop/issues/7/comments",
    comment: "/repos/acme/shop/issues/comments/555",
    edit: axum::http::Method::PATCH,
    merge: "/repos/acme/shop/pulls/7/merge",
    merge_method: axum::http::Method::POST,
    merge_sha_field: "head_commit_id",
    context_field: "context",
};

/// Request `number` opened or updated on `shape`'s forge, as its webhook
/// says it: (event header, payload).
fn request_event(shape: &ForgeShape, update: bool, path: &str, sha: &str) -> (&'static str, Value) {
    match shape.kind {
        "github" => (
            "pull_request",
            github_pull_request(
                if update { "synchronize" } else { "opened" },
                path,
                7,
                "feature-x",
                sha,
            ),
        ),
        // docs.gitlab.com, "Merge request events".
        "gitlab" => (
            "Merge Request Hook",
            json!({
                "object_kind": "merge_request",
                "event_type": "merge_request",
                "user": { "id": 1, "name": "Administrator", "username": "root" },
                "project": { "id": 1, "name": "shop", "path_with_namespace": "acme/shop",
                             "web_url": "http://gitlab.example.com/acme/shop", "git_http_url": path },
                "object_attributes": {
                    "id": 99, "iid": 7, "title": "Faster checkout", "description": "",
                    "source_branch": "feature-x", "target_branch": "latest", "state": "opened",
                    "action": if update { "update" } else { "open" },
                    "last_commit": { "id": sha, "message": "feature" }
                }
            }),
        ),
        // docs.gitea.com, "Webhooks": a pull_request event.
        _ => (
            "pull_request",
            json!({
                "action": if update { "synchronized" } else { "opened" },
                "number": 7,
                "pull_request": {
                    "id": 70, "number": 7, "user": { "login": "gitea-dev" },
                    "title": "Faster checkout", "body": "", "state": "open", "merged": false,
                    "head": { "label": "feature-x", "ref": "feature-x", "sha": sha },
                    "base": { "label": "latest", "ref": "latest" }
                },
                "repository": { "id": 1, "full_name": "acme/shop", "clone_url": path },
                "sender": { "login": "gitea-dev" }
            }),
        ),
    }
}

/// A request opened on `shape`'s forge gets a status per run and step, one
/// comment edited in place, and — approved in Gantry — is merged through the
/// forge's API: each call's method, path, auth header and body checked.
async fn feedback_round_trip(backend: &str, shape: &ForgeShape) {
    let (forge, api) = crate::support::receiver::Receiver::start().await;
    let repos = Repos::new(QUICK_STEPS);
    let path = repos.app.path();
    let app_yaml = crate::support::flow::app_yaml(&path, "")
        + &format!(
            "forge: {{ kind: {}, api: \"{api}\", repo: acme/shop, token_secret: FORGE_TOKEN }}\n",
            shape.kind
        );
    repos.pipeline.write("apps/shop/app.yaml", &app_yaml);
    repos.pipeline.commit("shop reports to its forge");
    let app = start(backend, &repos).await;
    app_known(&app).await;
    register_secrets(&app).await;
    let token = axum::http::Request::put("/api/v1/secrets/FORGE_TOKEN")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({ "value": "forge-test-token" }).to_string(),
        ))
        .expect("request");
    assert_eq!(app.request(token).await.status, 204);

    repos.app.checkout_new("feature-x");
    repos.app.write("x.txt", "x");
    let first = repos.app.commit("feature x");
    let (event, opened) = request_event(shape, false, &path, &first);
    let response = deliver(&app, shape.kind, event, "fb-1", &opened, None).await;
    assert_eq!(response.status, 202, "{}", response.text());

    // Statuses: the run and each step, pending then success, with the token.
    let statuses = format!("{}/statuses/{first}", shape.repo);
    let env = gantry::gitops::stack::preview_name("preview", "feature-x");
    let field = shape.context_field;
    let done = wait_for("the run's success status", MINUTE, || async {
        forge.at(&statuses).into_iter().find(|s| {
            s.body[field] == format!("gantry/{env}").as_str() && s.body["state"] == "success"
        })
    })
    .await;
    assert_eq!(done.method, axum::http::Method::POST);
    assert_eq!(done.headers[shape.auth.0], shape.auth.1);
    assert!(
        done.body["target_url"].as_str().unwrap().contains("/runs/"),
        "{:?}",
        done.body
    );
    let contexts: Vec<String> = forge
        .at(&statuses)
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.body[field].as_str().unwrap(),
                s.body["state"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        format!("gantry/{env} pending"),
        format!("gantry/{env}/build pending"),
        format!("gantry/{env}/build success"),
        format!("gantry/{env}/deploy success"),
    ] {
        assert!(
            contexts.contains(&expected),
            "{expected} missing from {contexts:?}"
        );
    }
    // A forge shows the last status it got for a context: they arrive in
    // the order they were decided, so each ends on success.
    for context in ["", "/build", "/deploy"] {
        let context = format!("gantry/{env}{context}");
        let last = contexts
            .iter()
            .rev()
            .find(|c| c.starts_with(&format!("{context} ")));
        assert_eq!(last, Some(&format!("{context} success")), "in {contexts:?}");
    }

    // One comment, created once (by the run's start, or — when the run
    // was planned from the push before the request arrived — when the
    // request adopts it), then edited in place.
    let finished = wait_for("the comment to show the finished run", MINUTE, || async {
        forge
            .at(shape.comments)
            .into_iter()
            .chain(forge.at(shape.comment))
            .find(|c| {
                c.body["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("**Pipeline:** succeeded"))
            })
    })
    .await;
    assert_eq!(finished.headers[shape.auth.0], shape.auth.1);
    let body = finished.body["body"].as_str().unwrap();
    assert!(body.contains("**Preview:** http://"), "{body}");
    assert!(body.contains("**Deploy:** local succeeded"), "{body}");
    assert!(body.contains("[Logs](http"), "{body}");
    assert!(
        !body.contains("Manifest diff"),
        "only where configured: {body}"
    );
    let created = forge.at(shape.comments);
    assert_eq!(created.len(), 1, "one comment per request");
    assert_eq!(created[0].method, axum::http::Method::POST);
    assert_eq!(created[0].headers[shape.auth.0], shape.auth.1);

    repos.app.write("y.txt", "y");
    let second = repos.app.commit("feature y");
    let (event, updated) = request_event(shape, true, &path, &second);
    assert_eq!(
        deliver(&app, shape.kind, event, "fb-2", &updated, None)
            .await
            .status,
        202
    );
    let edited = wait_for("the comment to follow the new head", MINUTE, || async {
        forge.at(shape.comment).into_iter().find(|c| {
            c.body["body"]
                .as_str()
                .is_some_and(|b| b.contains(&second[..7]) && b.contains("succeeded"))
        })
    })
    .await;
    assert_eq!(edited.method, shape.edit);
    assert_eq!(edited.headers[shape.auth.0], shape.auth.1);
    assert_eq!(
        forge.at(shape.comments).len(),
        1,
        "still one comment per request"
    );

    // A tester's feedback through a share link shows in the same comment.
    let cr = change_request(&app, shape.kind).await.unwrap();
    let link = app
        .post_json(
            &format!("/api/v1/change-requests/{}/share", cr["id"]),
            json!({}),
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.text());
    let url = link.json()["url"].as_str().unwrap().to_string();
    let token = url.rsplit_once("/share/").unwrap().1;
    let sent = app
        .post_json(
            &format!("/api/v1/share/{token}/feedback"),
            json!({ "verdict": "broken", "comment": "The coupon field is gone" }),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.text());
    let with_feedback = forge.at(shape.comment).into_iter().rev().find(|c| {
        c.body["body"]
            .as_str()
            .is_some_and(|b| b.contains("**Tester feedback:**"))
    });
    let with_feedback = with_feedback.expect("the comment is edited before the answer");
    let body = with_feedback.body["body"].as_str().unwrap();
    assert!(
        body.contains("❌ broken") && body.contains("The coupon field is gone"),
        "{body}"
    );
    assert_eq!(forge.at(shape.comments).len(), 1, "still one comment");

    // Approved in Gantry, merged by the forge, through its API.
    let approved = app
        .post_json(
            &format!("/api/v1/change-requests/{}/approve", cr["id"]),
            json!({ "comment": "ok" }),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(approved.json()["state"], "merged", "{}", approved.text());
    let detail = approved.json()["state_detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains(&format!("merged on {}", shape.kind)),
        "{detail}"
    );
    let merge = forge.at(shape.merge);
    assert_eq!(merge.len(), 1);
    assert_eq!(merge[0].method, shape.merge_method);
    assert_eq!(merge[0].body[shape.merge_sha_field], second.as_str());
    assert_eq!(merge[0].headers[shape.auth.0], shape.auth.1);

    // The forge's own "merged" event follows: an echo of Gantry's merge,
    // which never overwrites what Gantry recorded.
    let recorded = app
        .get(&format!("/api/v1/change-requests/{}", cr["id"]))
        .await
        .json();
    let (event, mut echo) = request_event(shape, true, &path, &second);
    let other = "0123456789abcdef0123456789abcdef01234567";
    match shape.kind {
        "gitlab" => {
            echo["object_attributes"]["action"] = json!("merge");
            echo["object_attributes"]["merge_commit_sha"] = json!(other);
            echo["user"]["username"] = json!("someone-else");
        }
        _ => {
            echo["action"] = json!("closed");
            echo["pull_request"]["merged"] = json!(true);
            echo["pull_request"]["merge_commit_sha"] = json!(other);
            echo["pull_request"]["merged_by"] = json!({ "login": "someone-else" });
        }
    }
    assert_eq!(
        deliver(&app, shape.kind, event, "fb-echo", &echo, None)
            .await
            .status,
        202
    );
    wait_for("the echo to be processed", MINUTE, || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM event_inbox WHERE processed_at IS NULL")
                .fetch_one(app.db().pool())
                .await
                .ok()?;
        (pending == 0).then_some(())
    })
    .await;
    let after = app
        .get(&format!("/api/v1/change-requests/{}", cr["id"]))
        .await
        .json();
    assert_eq!(after["merge_sha"], recorded["merge_sha"], "{after}");
    assert_eq!(after["merged_by"], recorded["merged_by"], "{after}");
    assert_eq!(
        after["summary"]["state_detail"],
        recorded["summary"]["state_detail"]
    );
}

crate::on_both! {
    async fn github_gets_statuses_one_comment_and_the_merge(backend) {
        feedback_round_trip(backend, &GITHUB).await;
    }

    async fn gitlab_gets_statuses_one_comment_and_the_merge(backend) {
        feedback_round_trip(backend, &GITLAB).await;
    }

    async fn gitea_gets_statuses_one_comment_and_the_merge(backend) {
        feedback_round_trip(backend, &GITEA).await;
    }
}
