//! The server is the gate: every REST route of the OpenAPI document and
//! every server function, called as each role (and as nobody), is allowed or
//! refused exactly as this table says. A route or server function missing
//! from the table fails the test, so a new one cannot ship unreviewed. And
//! no answer, to anyone, ever contains a secret's value.

use std::collections::BTreeSet;

use app::dto::Role;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::seed::{World, shop_with_a_change_request};
use crate::support::TestApp;

/// Who may call a route.
#[derive(Clone, Copy, Debug)]
enum Need {
    /// Anyone, signed in or not.
    Public,
    /// At least this role (on the app concerned).
    Role(Role),
    /// At least this role; others are told it does not exist (404), so they
    /// cannot probe for it.
    Hidden(Role),
    /// Only the app's git trigger token: every user token is refused.
    HookToken,
    /// Only a forge's signature: every user token is refused.
    Signed,
    /// Only a valid share link's token (the table's is not): everyone is
    /// refused, signed in or not.
    ShareToken,
}

/// Every REST route: method, OpenAPI path, who may call it.
const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/api/v1/openapi.json", Need::Public),
    ("GET", "/api/v1/me", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/environments", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/lanes", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/attention", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/runs", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/changes", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/apps/{app}", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/change-requests", Need::Role(Role::Viewer)),
    (
        "POST",
        "/api/v1/change-requests",
        Need::Role(Role::Developer),
    ),
    (
        "GET",
        "/api/v1/change-requests/{id}",
        Need::Role(Role::Viewer),
    ),
    (
        "POST",
        "/api/v1/change-requests/{id}/feedback",
        Need::Role(Role::Tester),
    ),
    (
        "GET",
        "/api/v1/change-requests/{id}/diff",
        Need::Role(Role::Admin),
    ),
    (
        "GET",
        "/api/v1/change-requests/{id}/files",
        Need::Role(Role::Viewer),
    ),
    (
        "POST",
        "/api/v1/change-requests/{id}/share",
        Need::Role(Role::Developer),
    ),
    (
        "DELETE",
        "/api/v1/share-links/{id}",
        Need::Role(Role::Developer),
    ),
    (
        "POST",
        "/api/v1/share-links/{id}/extend",
        Need::Role(Role::Developer),
    ),
    ("GET", "/api/v1/share/{token}", Need::ShareToken),
    ("POST", "/api/v1/share/{token}/feedback", Need::ShareToken),
    (
        "POST",
        "/api/v1/change-requests/{id}/reject",
        Need::Role(Role::Admin),
    ),
    (
        "POST",
        "/api/v1/change-requests/{id}/approve",
        Need::Role(Role::Admin),
    ),
    (
        "POST",
        "/api/v1/change-requests/{id}/override",
        Need::Role(Role::Admin),
    ),
    (
        "POST",
        "/api/v1/change-requests/{id}/close",
        Need::Role(Role::Admin),
    ),
    ("GET", "/api/v1/releases", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/releases/{id}", Need::Role(Role::Viewer)),
    (
        "POST",
        "/api/v1/releases/{id}/stable",
        Need::Role(Role::Admin),
    ),
    (
        "POST",
        "/api/v1/apps/{app}/rollback",
        Need::Role(Role::Admin),
    ),
    (
        "POST",
        "/api/v1/apps/{app}/promote",
        Need::Role(Role::Admin),
    ),
    (
        "GET",
        "/api/v1/apps/{app}/compare",
        Need::Role(Role::Viewer),
    ),
    (
        "GET",
        "/api/v1/apps/{app}/commits/{sha}/releases",
        Need::Role(Role::Viewer),
    ),
    (
        "POST",
        "/api/v1/artifacts/{id}/reject",
        Need::Role(Role::Admin),
    ),
    ("GET", "/api/v1/metrics/delivery", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/approvals", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/clusters", Need::Role(Role::Admin)),
    ("POST", "/api/v1/clusters", Need::Role(Role::Admin)),
    (
        "POST",
        "/api/v1/clusters/{name}/check",
        Need::Role(Role::Admin),
    ),
    ("DELETE", "/api/v1/clusters/{name}", Need::Role(Role::Admin)),
    ("GET", "/api/v1/audit", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/settings", Need::Role(Role::Admin)),
    ("GET", "/api/v1/config", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/runs/{id}", Need::Role(Role::Tester)),
    (
        "GET",
        "/api/v1/runs/{id}/steps/{step}/log",
        Need::Role(Role::Developer),
    ),
    (
        "GET",
        "/api/v1/runs/{id}/events",
        Need::Role(Role::Developer),
    ),
    ("GET", "/api/v1/runs/{id}/diff", Need::Role(Role::Admin)),
    ("POST", "/api/v1/runs/{id}/reject", Need::Role(Role::Admin)),
    ("POST", "/api/v1/runs/{id}/approve", Need::Role(Role::Admin)),
    (
        "POST",
        "/api/v1/runs/{id}/override",
        Need::Role(Role::Admin),
    ),
    ("POST", "/api/v1/runs/{id}/cancel", Need::Role(Role::Admin)),
    ("POST", "/api/v1/runs/{id}/rollout", Need::Role(Role::Admin)),
    (
        "POST",
        "/api/v1/runs/{id}/rerun",
        Need::Role(Role::Developer),
    ),
    ("POST", "/api/v1/hooks/git", Need::HookToken),
    ("POST", "/api/v1/hooks/{forge}", Need::Signed),
    ("GET", "/api/v1/channels", Need::Role(Role::Admin)),
    ("PUT", "/api/v1/channels/{name}", Need::Role(Role::Admin)),
    ("DELETE", "/api/v1/channels/{name}", Need::Role(Role::Admin)),
    (
        "POST",
        "/api/v1/channels/{name}/test",
        Need::Role(Role::Admin),
    ),
    (
        "GET",
        "/api/v1/channels/{name}/deliveries",
        Need::Role(Role::Admin),
    ),
    (
        "POST",
        "/api/v1/apps/{app}/hook-token",
        Need::Role(Role::Admin),
    ),
    (
        "GET",
        "/api/v1/apps/{app}/environments/{env}/resources",
        Need::Role(Role::Viewer),
    ),
    (
        "GET",
        "/api/v1/apps/{app}/environments/{env}/resources/object",
        Need::Role(Role::Admin),
    ),
    (
        "GET",
        "/api/v1/apps/{app}/environments/{env}/pods/{pod}/log",
        Need::Role(Role::Developer),
    ),
    ("GET", "/api/v1/secrets", Need::Role(Role::Admin)),
    ("PUT", "/api/v1/secrets/{name}", Need::Role(Role::Admin)),
    ("DELETE", "/api/v1/secrets/{name}", Need::Role(Role::Admin)),
    ("GET", "/api/v1/tokens", Need::Role(Role::Viewer)),
    ("POST", "/api/v1/tokens", Need::Role(Role::Viewer)),
    ("DELETE", "/api/v1/tokens/{id}", Need::Hidden(Role::Admin)),
];

/// Every server function: its name, who may call it, and its arguments
/// (`RUN`, `CR` are replaced by the seeded ids).
const SERVER_FNS: &[(&str, Need, &str)] = &[
    ("whoami", Need::Public, ""),
    ("list_environments", Need::Role(Role::Viewer), ""),
    ("list_lanes", Need::Role(Role::Viewer), "query[search]=sh"),
    ("get_attention", Need::Role(Role::Viewer), ""),
    ("waiting_for_me", Need::Public, ""),
    ("list_runs", Need::Role(Role::Viewer), "query[app]=shop"),
    ("list_change_requests", Need::Role(Role::Viewer), ""),
    (
        "list_releases",
        Need::Role(Role::Viewer),
        "filter[limit]=10",
    ),
    (
        "delivery_metrics",
        Need::Role(Role::Viewer),
        "query[app]=shop&query[days]=30",
    ),
    (
        "rollback_release",
        Need::Role(Role::Admin),
        "app=shop&environment=production&to=&reason=a+reason+long+enough&confirm=yes&csrf=",
    ),
    (
        "mark_release_stable",
        Need::Role(Role::Admin),
        "id=CR&reason=&csrf=",
    ),
    (
        "promote_environment",
        Need::Role(Role::Admin),
        "app=shop&environment=production&reason=&csrf=",
    ),
    ("list_pending_approvals", Need::Role(Role::Viewer), ""),
    ("get_release", Need::Role(Role::Viewer), "id=1"),
    ("approval_inbox", Need::Role(Role::Viewer), ""),
    ("list_clusters", Need::Role(Role::Admin), ""),
    ("get_app_overview", Need::Role(Role::Viewer), "app=shop"),
    (
        "get_resources",
        Need::Role(Role::Viewer),
        "app=shop&env=production&query[page]=1",
    ),
    (
        "get_resource",
        Need::Role(Role::Admin),
        "app=shop&env=production&reference[apiVersion]=v1&reference[kind]=ConfigMap&reference[name]=settings",
    ),
    (
        "get_pod_log",
        Need::Role(Role::Developer),
        "app=shop&env=production&pod=web-1&query[container]=web",
    ),
    ("list_channels", Need::Role(Role::Admin), ""),
    (
        "list_audit_log",
        Need::Role(Role::Viewer),
        "filter[limit]=10",
    ),
    ("get_settings", Need::Role(Role::Admin), ""),
    ("get_config_status", Need::Role(Role::Viewer), ""),
    ("get_run", Need::Role(Role::Tester), "id=RUN"),
    ("get_run_diff", Need::Role(Role::Admin), "id=RUN"),
    ("get_change_request", Need::Role(Role::Viewer), "id=CR"),
    ("get_change_request_diff", Need::Role(Role::Admin), "id=CR"),
    (
        "get_change_request_files",
        Need::Role(Role::Viewer),
        "id=CR",
    ),
    (
        "open_change_request",
        Need::Role(Role::Developer),
        "app=shop&source_branch=feature-x&target_branch=&title=&description=&csrf=",
    ),
    (
        "review_change_request",
        Need::Role(Role::Admin),
        "id=CR&action=approve&comment=ok&csrf=",
    ),
    (
        "review_run",
        Need::Role(Role::Admin),
        "id=RUN&action=reject&comment=no&csrf=",
    ),
    (
        "register_cluster",
        Need::Role(Role::Admin),
        "name=c2&kubeconfig=nonsense&context=&csrf=",
    ),
    ("check_cluster", Need::Role(Role::Admin), "name=c1&csrf="),
    (
        "share_change_request",
        Need::Role(Role::Developer),
        "id=CR&csrf=",
    ),
    ("get_shared_preview", Need::ShareToken, "token=1.1.1.AAAA"),
    (
        "leave_shared_feedback",
        Need::ShareToken,
        "token=1.1.1.AAAA&verdict=works&comment=&csrf=",
    ),
    ("test_channel", Need::Role(Role::Admin), "name=ch1&csrf="),
    (
        "register_channel",
        Need::Role(Role::Admin),
        "name=ch2&kind=slack&url_secret=API_KEY&csrf=",
    ),
    (
        "remove_channel",
        Need::Role(Role::Admin),
        "name=nosuch&csrf=",
    ),
    ("list_secrets", Need::Role(Role::Admin), ""),
    (
        "set_secret",
        Need::Role(Role::Admin),
        "name=UI_KEY&value=a-new-secret&app=&csrf=",
    ),
    (
        "delete_secret",
        Need::Role(Role::Admin),
        "name=NOSUCH&app=&csrf=",
    ),
    ("list_api_tokens", Need::Role(Role::Viewer), ""),
    (
        "create_api_token",
        Need::Role(Role::Viewer),
        "name=ui&role=viewer&app=&expires=&csrf=",
    ),
    (
        "revoke_api_token",
        Need::Role(Role::Viewer),
        "id=999999&csrf=",
    ),
    ("request_choices", Need::Role(Role::Viewer), "app=shop"),
    (
        "compare_releases",
        Need::Role(Role::Viewer),
        "app=shop&from=1&to=2",
    ),
    (
        "extend_share_link",
        Need::Role(Role::Developer),
        "id=1&csrf=",
    ),
    (
        "revoke_share_link",
        Need::Role(Role::Developer),
        "id=1&csrf=",
    ),
    // The run is unfinished: a re-run is refused for that, after who asks.
    ("rerun_run", Need::Role(Role::Developer), "id=RUN&csrf="),
    (
        "rollout_run",
        Need::Role(Role::Admin),
        "id=RUN&action=pause&csrf=",
    ),
    // Last: it ends the run the others read.
    ("cancel_run", Need::Role(Role::Admin), "id=RUN&csrf="),
];

/// Values of the secrets the test stores.
const SECRET_VALUES: &[&str] = &["s3cret-value", "a-new-secret"];

/// Callers from least to most powerful, so refusals are checked before an
/// allowed call changes what later calls see.
const CALLERS: &[Option<Role>] = &[
    None,
    Some(Role::Viewer),
    Some(Role::Tester),
    Some(Role::Developer),
    Some(Role::Admin),
];

fn allows(need: Need, caller: Option<Role>) -> bool {
    match (need, caller) {
        (Need::Public, _) => true,
        (Need::Role(role) | Need::Hidden(role), Some(caller)) => caller.rank() >= role.rank(),
        _ => false,
    }
}

fn concrete(path: &str, world: &World, token_id: i64) -> String {
    let id = if path.starts_with("/api/v1/runs/") {
        world.run_id
    } else if path.starts_with("/api/v1/tokens/") {
        token_id
    } else {
        world.change_request_id
    };
    path.replace("{id}", &id.to_string())
        .replace("{step}", &world.step_id.to_string())
        .replace(
            "{name}",
            if path.contains("secrets") {
                "API_KEY"
            } else {
                "c1"
            },
        )
        .replace("{app}", "shop")
        .replace("{env}", "production")
        .replace("{pod}", "web-1")
        .replace("{sha}", "0000000000000000000000000000000000000000")
        .replace("{forge}", "github")
        .replace("{token}", "1.1.1.AAAA")
}

fn body_for(method: &str, path: &str) -> Value {
    match (method, path) {
        ("POST", "/api/v1/change-requests") => {
            json!({ "app": "shop", "source_branch": "feature-x" })
        }
        ("POST", "/api/v1/clusters") => {
            json!({ "name": "c2", "server": "https://127.0.0.1:9", "token": "t0ken", "insecure": true })
        }
        ("PUT", "/api/v1/channels/{name}") => json!({ "kind": "webhook", "url_secret": "API_KEY" }),
        ("PUT", _) => json!({ "value": "a-new-secret" }),
        ("POST", "/api/v1/tokens") => json!({ "name": "probe", "role": "viewer" }),
        ("POST", "/api/v1/hooks/git") => json!({ "app": "shop" }),
        ("POST", "/api/v1/apps/{app}/rollback") => json!({ "reason": "a reason long enough" }),
        ("POST", "/api/v1/apps/{app}/promote") => json!({ "environment": "production" }),
        ("POST", "/api/v1/share/{token}/feedback") => {
            json!({ "verdict": "works", "comment": "", "name": "probe" })
        }
        _ => json!({ "comment": "a reason long enough" }),
    }
}

/// Tokens for every role, each its own user.
async fn tokens(app: &TestApp) -> Vec<(Option<Role>, Option<String>)> {
    let mut out = Vec::new();
    for caller in CALLERS {
        let token = match caller {
            Some(role) => Some(app.token(&format!("as-{role}"), *role, None).await),
            None => None,
        };
        out.push((*caller, token));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_server_function_checks_the_callers_role() {
    crate::support::bounded(async {
        let app = TestApp::sqlite().await;
        let world = shop_with_a_change_request(&app).await;
        // A real repository behind the app, so allowed calls that read it
        // succeed (an allowed call must never fail inside).
        let repo = crate::support::git::WorkRepo::new();
        repo.write("README.md", "shop\n");
        repo.commit("first");
        repo.checkout_new("latest");
        repo.checkout_new("feature-x");
        repo.write("feature.txt", "x\n");
        repo.commit("a feature");
        sqlx::query("UPDATE apps SET source_url = $1 WHERE name = 'shop'")
            .bind(repo.path())
            .execute(app.db().pool())
            .await
            .expect("point shop at the repository");
        // Things to act on: a cluster, a secret, someone else's token.
        let cluster = app
            .post_json(
                "/api/v1/clusters",
                json!({ "name": "c1", "server": "https://127.0.0.1:9", "token": "t0ken", "insecure": true }),
            )
            .await;
        assert_eq!(cluster.status, 201, "{}", cluster.text());
        let secret = Request::put("/api/v1/secrets/API_KEY")
            .header("content-type", "application/json")
            .body(Body::from(json!({ "value": "s3cret-value" }).to_string()))
            .expect("request");
        assert_eq!(app.request(secret).await.status, 204);
        let owner = gantry::auth::upsert_user(&app.state.db, "gantry-test", "owner", "owner", None)
            .await
            .expect("owner");
        let (token_id, _, _) = gantry::auth::tokens::mint(&app.state.db, owner, "theirs", Role::Viewer, None, 3_600_000)
            .await
            .expect("token");

        // The table covers exactly the documented routes.
        let documented: BTreeSet<(String, String)> = gantry::http::api::ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .flat_map(|(path, item)| {
                let mut methods = Vec::new();
                for (method, op) in [("GET", &item.get), ("POST", &item.post), ("PUT", &item.put), ("DELETE", &item.delete), ("PATCH", &item.patch)] {
                    if op.is_some() {
                        methods.push((method.to_string(), path.clone()));
                    }
                }
                methods
            })
            .collect();
        // The document itself is served but not described in it.
        let mut documented = documented;
        documented.insert(("GET".into(), "/api/v1/openapi.json".into()));
        let table: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
        let missing: Vec<_> = documented.difference(&table).collect();
        assert!(missing.is_empty(), "routes without an authorization entry: {missing:?}");
        let stale: Vec<_> = table.difference(&documented).collect();
        assert!(stale.is_empty(), "entries for routes that do not exist: {stale:?}");

        let registered: BTreeSet<String> = leptos::server_fn::axum::server_fn_paths()
            .map(|(path, _)| path.trim_start_matches("/fn/").to_string())
            .collect();
        let listed: BTreeSet<String> = SERVER_FNS.iter().map(|(name, _, _)| name.to_string()).collect();
        assert_eq!(registered, listed, "every server function needs an entry");

        let callers = tokens(&app).await;
        let mut failures = Vec::new();
        for (caller, token) in &callers {
            for (method, path, need) in ROUTES {
                let uri = concrete(path, &world, token_id);
                let request = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).expect("method"))
                    .uri(&uri)
                    .header("content-type", "application/json")
                    .body(Body::from(body_for(method, path).to_string()))
                    .expect("request");
                // Read every answer but the endless event stream: no route
                // may ever show a secret's value, to anyone.
                let status = if *method == "GET" && !path.ends_with("/events") && *path != "/api/v1/changes" {
                    let response = app.request_as(token.as_deref(), request).await;
                    let text = response.text();
                    if SECRET_VALUES.iter().any(|value| text.contains(value)) {
                        failures.push(format!("{method} {uri} as {caller:?} shows a secret value"));
                    }
                    response.status
                } else {
                    app.status_as(token.as_deref(), request).await
                };
                let refused = match (need, caller) {
                    (Need::HookToken | Need::Signed, _) => status == StatusCode::UNAUTHORIZED,
                    (Need::ShareToken, _) => matches!(
                        status,
                        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN
                    ),
                    (_, None) => status == StatusCode::UNAUTHORIZED,
                    (Need::Hidden(_), Some(_)) => status == StatusCode::NOT_FOUND,
                    _ => status == StatusCode::FORBIDDEN,
                };
                let hidden = matches!(need, Need::Hidden(_)) && status == StatusCode::NOT_FOUND;
                let granted =
                    !(matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) || hidden);
                let expected = allows(*need, *caller);
                if (expected && !granted) || (!expected && !refused) {
                    failures.push(format!("{method} {uri} as {caller:?}: {status} (allowed: {expected})"));
                }
                // An allowed call may be refused for what it asks, never
                // fail inside.
                if expected && status.is_server_error() {
                    failures.push(format!("{method} {uri} as {caller:?}: {status} (allowed, so never 5xx)"));
                }
            }
            for (name, need, args) in SERVER_FNS {
                let body = args
                    .replace("RUN", &world.run_id.to_string())
                    .replace("CR", &world.change_request_id.to_string());
                let request = Request::post(format!("/fn/{name}"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "application/json")
                    .body(Body::from(body))
                    .expect("request");
                let response = app.request_as(token.as_deref(), request).await;
                let text = response.text();
                if SECRET_VALUES.iter().any(|value| text.contains(value)) {
                    failures.push(format!("server fn {name} as {caller:?} shows a secret value"));
                }
                let refused = text.contains("does not have it")
                    || text.contains("Sign in to see this")
                    || (matches!(need, Need::ShareToken)
                        && (text.contains("share link is not valid") || text.contains("sign in to open this link")));
                let expected = allows(*need, *caller);
                if expected == refused {
                    failures.push(format!("server fn {name} as {caller:?}: {} {text} (allowed: {expected})", response.status));
                }
            }
        }
        assert!(failures.is_empty(), "{} authorization mismatches:\n{}", failures.len(), failures.join("\n"));
    })
    .await;
}

/// Routes only admins may call, that take a body.
const ADMIN_BODY_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/clusters"),
    ("PUT", "/api/v1/channels/{name}"),
    ("PUT", "/api/v1/secrets/{name}"),
    ("POST", "/api/v1/apps/{app}/rollback"),
    ("POST", "/api/v1/apps/{app}/promote"),
    ("POST", "/api/v1/releases/{id}/stable"),
    ("POST", "/api/v1/runs/{id}/override"),
    ("POST", "/api/v1/change-requests/{id}/override"),
    ("POST", "/api/v1/artifacts/{id}/reject"),
    ("POST", "/api/v1/runs/{id}/rollout"),
];

/// Who may not call a route learns nothing of what it would accept: a body
/// that is no JSON at all, sent by someone without the role, is refused
/// for who they are (401, 403), never judged for what it is (400, 415,
/// 422). Every route with a body checks who calls before reading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_not_call_a_route_is_refused_before_its_body_is_read() {
    crate::support::bounded(async {
        let app = TestApp::sqlite().await;
        let world = shop_with_a_change_request(&app).await;
        let callers = tokens(&app).await;
        let mut failures = Vec::new();
        for (method, path, _) in ROUTES
            .iter()
            .filter(|(m, _, _)| matches!(*m, "POST" | "PUT"))
        {
            let admin_only = ADMIN_BODY_ROUTES.contains(&(*method, *path));
            for (caller, token) in &callers {
                // Anonymous callers are refused before any body; below
                // admin, the admin-only routes refuse them before it too.
                let refused_for_who = match caller {
                    None => !matches!(
                        *path,
                        "/api/v1/hooks/git"
                            | "/api/v1/hooks/{forge}"
                            | "/api/v1/share/{token}/feedback"
                    ),
                    Some(role) => admin_only && *role != Role::Admin,
                };
                if !refused_for_who {
                    continue;
                }
                let request = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).expect("method"))
                    .uri(concrete(path, &world, 0))
                    .header("content-type", "text/plain")
                    .body(Body::from("{ this is not json"))
                    .expect("request");
                let status = app.status_as(token.as_deref(), request).await;
                if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    failures.push(format!("{method} {path} as {caller:?}: {status}"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "judged the body before the caller:\n{}",
            failures.join("\n")
        );
    })
    .await;
}
