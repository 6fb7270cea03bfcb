//! The server-rendered dashboard: every area renders from the database, with
//! honest empty states, and the server functions answer the browser.

use app::dto::RunState;
use axum::http::StatusCode;

use crate::on_both;
use crate::seed::shop_with_a_run;

const AREAS: &[(&str, &str, &str)] = &[
    ("/", "Environments", "No environments yet"),
    ("/runs", "Runs", "No runs yet"),
    ("/change-requests", "Change requests", "No change requests"),
    ("/releases", "Releases", "No releases yet"),
    ("/approvals", "Approvals", "Nothing waits for a decision"),
    ("/clusters", "Clusters", "No clusters registered"),
    ("/notifications", "Notifications", "No channels yet"),
    ("/audit", "Audit", "The audit log is empty"),
];

on_both! {
    async fn every_area_renders_its_empty_state_on_a_fresh_database(app: TestApp) {
        for (path, heading, empty) in AREAS {
            let response = app.get(path).await;
            assert_eq!(response.status, StatusCode::OK, "{path}");
            let html = response.text();
            assert!(html.contains(&format!("<h1>{heading}</h1>")), "{path} lacks its heading");
            assert!(html.contains(empty), "{path} lacks its empty state {empty:?}");
            assert!(html.contains(&format!("<title>{heading} · Gantry</title>")), "{path} title");
        }
    }

    async fn pages_show_stored_rows_instead_of_the_empty_state(app: TestApp) {
        shop_with_a_run(&app, RunState::WaitingForApproval).await;

        let runs = app.get("/runs").await.text();
        assert!(!runs.contains("No runs yet"));
        assert!(runs.contains("4f2a9c1"), "short commit shown");
        assert!(runs.contains("state-waiting_for_approval"), "state badge");
        assert!(runs.contains("2026-11-28 06:14 UTC"), "timestamp shown");

        let home = app.get("/").await.text();
        assert!(home.contains("staging") && home.contains("latest"));
        assert!(!home.contains("No environments yet"));

        let approvals = app.get("/approvals").await.text();
        assert!(!approvals.contains("Nothing waits for a decision"));
    }

    async fn pages_arrive_whole_with_their_interactive_parts_as_islands(app: TestApp) {
        shop_with_a_run(&app, RunState::WaitingForApproval).await;

        let approvals = app.get("/approvals").await.text();
        // Whole pages (no streamed "Loading…" placeholders): the browser's
        // page updates swap fetched pages in without running their scripts.
        assert!(!approvals.contains("Loading…"), "{approvals}");
        assert!(!approvals.contains("<template id="), "{approvals}");
        assert!(approvals.contains("data-testid=\"inbox-runs\""));
        // The decision buttons are an island, handed what they need as props.
        let island = approvals
            .split("<leptos-island ")
            .skip(1)
            .find(|island| island.contains("RunDecision"))
            .unwrap_or_else(|| panic!("no RunDecision island in {approvals}"));
        assert!(island.contains("data-props="), "{island}");
        assert!(island.contains("&quot;csrf&quot;:"), "the CSRF token is a prop: {island}");
        // The islands loader and the page-updates script are on every page.
        assert!(approvals.contains("__hydrateIsland"), "islands loader");
        assert!(approvals.contains("gantry:refresh"), "page updates script");
        // Filters show what the address asks for, without WASM.
        let releases = app.get("/releases?app=shop&environment=staging").await.text();
        assert!(releases.contains("name=\"app\" value=\"shop\""), "{releases}");
        assert!(releases.contains("value=\"staging\""), "{releases}");
        // Read-only content is plain HTML, not an island.
        assert_eq!(approvals.matches("<leptos-island ").count(), 2, "theme switch + decision: {approvals}");
    }

    async fn settings_page_shows_the_backend_and_sources(app: TestApp) {
        let html = app.get("/settings").await.text();
        assert!(html.contains("<h1>Settings</h1>"));
        assert!(html.contains(app.db().backend().name()));
        assert!(html.contains("flag --data-dir"));
        assert!(html.contains("data-testid=\"pipeline-health\""), "the pipeline repo's health");
        assert!(html.contains("none configured") && html.contains("not read yet"), "{html}");
    }

    async fn server_functions_answer_with_json(app: TestApp) {
        let seeded = shop_with_a_run(&app, RunState::Queued).await;
        let response = app.server_fn("list_runs").await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        let page = response.json();
        assert_eq!(page["runs"][0]["id"], seeded.run_id);
        assert_eq!(page["runs"][0]["state"], "queued");
        assert!(page["older"].is_null(), "one run, one page");
    }
}

#[tokio::test]
async fn pages_load_the_hydration_bundle_and_the_stylesheet() {
    let app = crate::support::TestApp::sqlite().await;
    let html = app.get("/").await.text();
    assert!(
        html.contains("/pkg/gantry.js"),
        "hydration script referenced"
    );
    assert!(html.contains("/pkg/gantry_bg.wasm"), "wasm referenced");
    assert!(html.contains("/pkg/gantry.css"), "stylesheet referenced");
    for label in [
        "Environments",
        "Runs",
        "Change requests",
        "Releases",
        "Approvals",
        "Clusters",
        "Audit",
        "Settings",
    ] {
        assert!(html.contains(&format!(">{label}</a>")), "nav lacks {label}");
    }

    let css = app.get("/pkg/gantry.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.text().contains("--accent"));
    let etag = css.header("etag").expect("etag").to_string();

    let request = axum::http::Request::get("/pkg/gantry.css")
        .header("if-none-match", etag)
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(app.request(request).await.status, StatusCode::NOT_MODIFIED);
    assert_eq!(app.get("/pkg/nope.js").await.status, StatusCode::NOT_FOUND);
}

/// Another server of the same process building its router (the tests start
/// many) must not stall a page being rendered meanwhile: listing the routes
/// suppresses resource loading process-wide, so it happens once (leptos#4773).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_routers_does_not_stall_pages_rendering_meanwhile() {
    let app = crate::support::TestApp::sqlite().await;
    let state = app.state.clone();
    let builder = tokio::task::spawn_blocking(move || {
        for _ in 0..300 {
            drop(gantry::http::dashboard::routes(&state));
        }
    });
    let mut renders = 0;
    while !builder.is_finished() || renders < 20 {
        // Each request fails the test if it does not answer (see `get`).
        let response = app.get("/").await;
        assert_eq!(response.status, StatusCode::OK);
        renders += 1;
    }
    builder.await.expect("the router builder");
}

#[tokio::test]
async fn an_unknown_page_is_a_404_with_the_dashboard_frame() {
    let app = crate::support::TestApp::sqlite().await;
    let response = app.get("/no/such/page").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    let html = response.text();
    assert!(html.contains("<h1>Not found</h1>"));
    assert!(
        html.contains(">Environments</a>"),
        "the navigation is still there"
    );
    // Sent whole, like every page: no streamed fragments to patch in later.
    assert!(!html.contains("<template id="), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_page_registers_and_checks_clusters() {
    let cluster = kube_emulator::Emulator::start(kube_emulator::Options::default())
        .await
        .expect("emulator");
    let app = crate::support::TestApp::sqlite().await;
    let html = app.get("/clusters").await.text();
    assert!(html.contains("Register a cluster") && html.contains("name=\"kubeconfig\""));

    let form = |pairs: &[(&str, &str)]| {
        let body: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", app::format::percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        axum::http::Request::post("/fn/register_cluster")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(axum::body::Body::from(body))
            .expect("request")
    };
    let refused = app
        .request(form(&[
            ("name", "dev"),
            ("kubeconfig", &cluster.kubeconfig("ctx")),
            ("context", "nope"),
            ("csrf", ""),
        ]))
        .await;
    // Refused for what it asked: the person's to fix, not a server error.
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused
            .text()
            .contains("the kubeconfig has no context \"nope\" (it has: ctx)"),
        "{}",
        refused.text()
    );

    let registered = app
        .request(form(&[
            ("name", "dev"),
            ("kubeconfig", &cluster.kubeconfig("ctx")),
            ("context", ""),
            ("csrf", ""),
        ]))
        .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    assert_eq!(registered.json()["state"], "reachable");
    let html = app.get("/clusters").await.text();
    assert!(
        html.contains("data-cluster=\"dev\"")
            && html.contains("Check now")
            && html.contains("v1.33.0-gantry-emulator")
    );
    assert!(
        !html.contains("to tear down previews"),
        "nothing is missing yet"
    );

    // Credentials that may not delete namespaces: the next check lists it.
    cluster.set_denied(vec![kube_emulator::Denied::new("delete", "", "namespaces")]);
    let checked = app
        .request(
            axum::http::Request::post("/fn/check_cluster")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(axum::body::Body::from("name=dev&csrf="))
                .expect("request"),
        )
        .await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text());
    let html = app.get("/clusters").await.text();
    let cell = html
        .split("data-missing-permissions")
        .nth(1)
        .and_then(|rest| rest.split("</td>").next())
        .unwrap_or_default();
    assert!(
        cell.contains("<li>delete namespaces (to tear down previews)</li>"),
        "{html}"
    );
}

on_both! {
    async fn the_inbox_and_the_request_page_show_what_a_decision_needs(app: TestApp) {
        let id = crate::seed::shop_with_a_change_request(&app).await.change_request_id;
        let inbox = app.get("/approvals").await.text();
        assert!(inbox.contains(&format!("href=\"/change-requests/{id}\"")), "the inbox links the request");
        assert!(inbox.contains("Faster checkout") && inbox.contains("0 of 1"), "{inbox}");
        // Admins decide right there (the override stays on the request's page).
        let decide = &inbox[inbox.find("data-testid=\"inbox-decide\"").expect("a Decide cell")..];
        assert!(decide.contains("value=\"approve\"") && decide.contains("value=\"reject\""), "{decide}");
        assert!(!inbox.contains("value=\"override\""), "no override in the inbox");

        // An admin sees the decision forms; a developer sees where it stands.
        let page = app.get(&format!("/change-requests/{id}")).await.text();
        assert!(page.contains("feature-checkout → latest"), "{page}");
        assert!(page.contains("0 of 1 (roles: admin)"), "{page}");
        assert!(page.contains("Caches the basket."));
        assert!(page.contains("value=\"approve\"") && page.contains("value=\"override\""));
        let dev = app.token("dev-2", app::dto::Role::Developer, Some("shop")).await;
        let request = axum::http::Request::get(format!("/change-requests/{id}"))
            .body(axum::body::Body::empty())
            .expect("request");
        let as_developer = app.request_as(Some(&dev), request).await.text();
        assert!(as_developer.contains("0 of 1 (roles: admin)"), "{as_developer}");
        assert!(!as_developer.contains("value=\"approve\""), "developers cannot approve");
        let their_inbox = app.get_as(&dev, "/approvals").await.text();
        assert!(!their_inbox.contains("value=\"approve\""), "nor in the inbox");
    }
}

crate::on_both! {
    async fn an_app_page_shows_its_stack_requests_and_runs(backend) {
        use crate::support::flow::{MINUTE, QUICK_STEPS, Repos, scan, start, wait_for};
        let repos = Repos::new(QUICK_STEPS);
        let app = start(backend, &repos).await;
        repos.app.checkout_new("feature-x");
        repos.app.write("x.txt", "x");
        repos.app.commit("Faster checkout");
        scan(&app).await;
        wait_for("the preview of feature-x", MINUTE, || async {
            let envs = app.get("/api/v1/environments").await.json();
            envs.as_array()?.iter().find(|e| e["branch"] == "feature-x" && e["state"] == "live").cloned()
        })
        .await;
        let opened = app
            .post_json("/api/v1/change-requests", serde_json::json!({ "app": "shop", "source_branch": "feature-x" }))
            .await;
        assert_eq!(opened.status, 201, "{}", opened.text());

        let overview = app.get("/api/v1/apps/shop").await.json();
        assert_eq!(overview["app"], "shop");
        let names: Vec<&str> = overview["environments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"staging") && names.iter().any(|n| n.contains("feature-x")), "{names:?}");
        assert_eq!(overview["change_requests"][0]["summary"]["title"], "Faster checkout");
        assert_eq!(overview["change_requests"][0]["preview"]["state"], "live");
        assert!(overview["runs"].as_array().is_some_and(|runs| !runs.is_empty()), "{overview}");
        let html = app.get("/apps/shop").await.text();
        assert!(html.contains("Open change requests") && html.contains("Faster checkout"), "{html}");
        assert!(html.contains("data-environment=\"staging\""), "the stack is shown");
        let home = app.get("/").await.text();
        assert!(home.contains("href=\"/apps/shop\""), "the matrix links to the app page");
        assert!(html.contains("<title>shop · Gantry</title>"), "titled after the app");

        // The charts: every finished run's duration, oldest first, and
        // today's deploys counted per stack entry.
        let charts = &overview["charts"];
        let durations = charts["durations"].as_array().unwrap();
        // Runs still finishing when the list was read may be charted (the
        // two are read one after the other): every finished run is charted,
        // and only runs of the app, oldest first.
        let listed: Vec<&serde_json::Value> = overview["runs"].as_array().unwrap().iter().collect();
        let finished: Vec<i64> = listed.iter()
            .filter(|r| r["state"] == "succeeded" || r["state"] == "failed")
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        let charted: Vec<i64> = durations.iter().map(|d| d["id"].as_i64().unwrap()).collect();
        assert!(finished.iter().all(|id| charted.contains(id)), "{charts}");
        assert!(charted.iter().all(|id| listed.iter().any(|r| r["id"] == *id)), "{charts}");
        assert!(charted.windows(2).all(|w| w[0] < w[1]), "oldest first: {charts}");
        assert!(durations.iter().all(|d| d["millis"].as_i64().unwrap() >= 0));
        assert_eq!(charts["days"].as_array().unwrap().len(), 14);
        let series = charts["deploys"].as_array().unwrap();
        let entries: Vec<&str> = series.iter().map(|s| s["entry"].as_str().unwrap()).collect();
        assert!(entries.contains(&"staging"), "{charts}");
        for s in series {
            let counts = s["counts"].as_array().unwrap();
            assert!(counts[13].as_u64().unwrap() >= 1, "deployed today: {s}");
            assert!(counts[..13].iter().all(|c| c == 0), "nothing before today: {s}");
        }
        assert!(html.contains("data-testid=\"chart-durations\"") && html.contains("data-testid=\"chart-deploys\""));
        assert!(html.contains("runs: median"), "{html}");
        assert!(html.contains("deploys in the last 14 days: "), "{html}");

        let missing = app.get("/api/v1/apps/nope").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);

        // The "open a change request" form's pickers: the apps one may
        // open requests on, and the chosen app's branches; none for a viewer.
        let choices = |token: Option<String>| {
            let app = &app;
            async move {
                let request = axum::http::Request::post("/fn/request_choices")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "application/json")
                    .body(axum::body::Body::from("app=shop"))
                    .unwrap();
                app.request_as(token.as_deref(), request).await.json()
            }
        };
        let admin = choices(Some(app.admin_token.clone())).await;
        assert_eq!(admin["apps"], serde_json::json!(["shop"]), "{admin}");
        let branches: Vec<&str> = admin["branches"].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
        assert!(branches.contains(&"feature-x") && branches.contains(&"latest"), "{branches:?}");
        let viewer = app.token("watcher", app::dto::Role::Viewer, None).await;
        let seen = choices(Some(viewer)).await;
        assert_eq!((seen["apps"].as_array().map(Vec::len), seen["branches"].as_array().map(Vec::len)), (Some(0), Some(0)), "{seen}");
    }
}

// The lane of an app: staging then production, the commits between them
// counted from git; a preview whose run failed comes first with its reason,
// and the "needs attention" strip links to that run.
crate::on_both! {
    async fn a_lane_counts_the_commits_between_stages_and_puts_a_failed_preview_first(backend) {
        use crate::support::flow::{MINUTE, Repos, scan, start, wait_for};
        // `fail` fails on the branch `feature-broken` only.
        let steps = "  - { name: check, run: \"test \\\"$GANTRY_BRANCH\\\" != feature-broken || { echo the totals are wrong; exit 3; }\" }\n";
        let repos = Repos::new(steps);
        let mut app = start(backend, &repos).await;
        let pending = wait_for("the production run to wait", MINUTE, || async {
            let pending = app.get("/api/v1/approvals").await.json();
            pending.as_array().filter(|a| !a.is_empty()).map(|a| a[0]["run_id"].as_i64().unwrap())
        })
        .await;
        // The held production run waits for an admin, not for a developer.
        use app::dto::Role;
        let developer = app.token("dev", Role::Developer, None).await;
        let viewer = app.token("viewer", Role::Viewer, None).await;
        assert_eq!(app.get("/api/v1/attention").await.json()["waiting_for_you"], 1);
        assert_eq!(app.get_as(&developer, "/api/v1/attention").await.json()["waiting_for_you"], 0);
        let approved = app.post_json(&format!("/api/v1/runs/{pending}/approve"), serde_json::json!({ "comment": "ship it" })).await;
        assert_eq!(approved.status, 200, "{}", approved.text());
        assert_eq!(app.get("/api/v1/attention").await.json()["waiting_for_you"], 0, "decided");
        let shop_lane = |lanes: serde_json::Value| lanes["lanes"].as_array().and_then(|l| l.iter().find(|l| l["app"] == "shop").cloned());
        let live = |lane: &serde_json::Value, env: &str, sha: &str| {
            lane["stages"].as_array().is_some_and(|stages| {
                stages.iter().any(|s| s["environment"]["name"] == env && s["environment"]["state"] == "live" && s["environment"]["commit_sha"] == sha)
            })
        };
        let (master, latest) = (repos.app.head("master"), repos.app.head("latest"));
        let first = wait_for("staging and production live", MINUTE, || async {
            let lane = shop_lane(app.get("/api/v1/lanes").await.json())?;
            (live(&lane, "staging", &latest) && live(&lane, "production", &master)).then_some(lane)
        })
        .await;
        let stages: Vec<&str> = first["stages"].as_array().unwrap().iter().map(|s| s["environment"]["name"].as_str().unwrap()).collect();
        assert_eq!(stages, ["staging", "production"]);
        assert_eq!((first["gaps"][0]["ahead"].as_u64(), first["gaps"][0]["behind"].as_u64()), (Some(1), Some(0)), "{first}");

        // Two more commits on latest: staging is three ahead.
        repos.app.checkout("latest");
        for n in 1..=2 {
            repos.app.write("CHANGES", &format!("change {n}\n"));
            repos.app.commit(&format!("change {n}"));
        }
        let latest = repos.app.head("latest");
        // And a branch whose run fails.
        repos.app.checkout_new("feature-broken");
        repos.app.write("broken.txt", "x");
        repos.app.commit("Break the totals");
        scan(&app).await;
        let lane = wait_for("staging at the new head and the broken preview's run failed", MINUTE, || async {
            let lane = shop_lane(app.get("/api/v1/lanes").await.json())?;
            let failed = lane["previews"][0]["last_run"]["state"] == "failed";
            (live(&lane, "staging", &latest) && failed).then_some(lane)
        })
        .await;
        assert_eq!((lane["gaps"][0]["ahead"].as_u64(), lane["gaps"][0]["behind"].as_u64()), (Some(3), Some(0)), "{lane}");
        let broken = &lane["previews"][0];
        assert_eq!(broken["environment"]["branch"], "feature-broken");
        assert_eq!(broken["last_run"]["error"], "step check exited with code 3", "{broken}");
        let run = broken["last_run"]["id"].as_i64().unwrap();

        let attention = app.get("/api/v1/attention").await.json();
        assert!(
            attention["failed"].as_array().unwrap().iter().any(|item| item["app"] == "shop" && item["run_id"] == run),
            "{attention}"
        );
        // Why it failed is for testers and above, like the run's page.
        let seen = shop_lane(app.get_as(&viewer, "/api/v1/lanes").await.json()).unwrap();
        assert!(seen["previews"][0]["last_run"]["error"].is_null(), "{seen}");
        assert_eq!(seen["gaps"][0]["promotable"], false, "viewers open no change request");
        let theirs = app.get_as(&viewer, "/api/v1/attention").await.json();
        assert_eq!(theirs["failed"][0]["detail"], "the run failed", "{theirs}");
        assert!(!app.get_as(&viewer, "/").await.text().contains("exited with code 3"));
        let home = app.get("/").await.text();
        assert!(home.contains("staging has 3 commits not in production"), "the gap in words");
        assert!(home.contains(&format!("href=\"/runs/{run}\"")), "the failure links to its run");
        assert!(home.contains("href=\"/change-requests?app=shop&amp;source=latest&amp;target=master\""), "{home}");

        // Promoted by a merge commit: production is one commit "ahead" (the
        // merge), yet runs the same code, and there is nothing to promote.
        repos.app.checkout("master");
        repos.app.git(&["merge", "--no-ff", "-q", "-m", "Promote latest", "latest"]);
        let merged = repos.app.head("master");
        scan(&app).await;
        let held = wait_for("the merge's production run to wait", MINUTE, || async {
            let pending = app.get("/api/v1/approvals").await.json();
            pending.as_array()?.iter().find(|p| p["commit_sha"] == merged.as_str()).map(|p| p["run_id"].as_i64().unwrap())
        })
        .await;
        let approved = app.post_json(&format!("/api/v1/runs/{held}/approve"), serde_json::json!({ "comment": "promote" })).await;
        assert_eq!(approved.status, 200, "{}", approved.text());
        let promoted = wait_for("production live at the merge", MINUTE, || async {
            let lane = shop_lane(app.get("/api/v1/lanes").await.json())?;
            live(&lane, "production", &merged).then_some(lane)
        })
        .await;
        let gap = &promoted["gaps"][0];
        assert_eq!((gap["ahead"].as_u64(), gap["behind"].as_u64(), gap["same_code"].as_bool()), (Some(0), Some(1), Some(true)), "{gap}");
        let home = app.get("/").await.text();
        assert!(home.contains("staging and production run the same code"), "the gap in words");
        assert!(!home.contains("Open change request"), "nothing to promote");
        app.stop().await;
    }
}

// A caller scoped to one app sees that app's lane only — not in the page,
// the count, the search or the attention strip — and the pages split many
// apps twenty at a time.
crate::on_both! {
    async fn lanes_show_only_what_the_caller_may_see_twenty_at_a_time(app: TestApp) {
        use app::dto::Role;
        shop_with_a_run(&app, RunState::Failed).await;
        for n in 0..25 {
            crate::seed::another_app(&app, &format!("app-{n:02}")).await;
        }
        let all = app.get("/api/v1/lanes").await.json();
        assert_eq!((all["matching"].as_u64(), all["pages"].as_u64()), (Some(26), Some(2)), "{all}");
        assert_eq!(all["lanes"].as_array().map(Vec::len), Some(20));
        let second = app.get("/api/v1/lanes?page=2").await.json();
        let names: Vec<&str> = second["lanes"].as_array().unwrap().iter().map(|l| l["app"].as_str().unwrap()).collect();
        assert_eq!(names, ["app-20", "app-21", "app-22", "app-23", "app-24", "shop"]);
        // A page past the end is the last page; a search keeps its matches.
        assert_eq!(app.get("/api/v1/lanes?page=99").await.json()["page"], 2);
        let found = app.get("/api/v1/lanes?search=SHO").await.json();
        assert_eq!(found["lanes"][0]["app"], "shop");
        assert_eq!(found["matching"], 1);

        let scoped = app.token("outsider", Role::Admin, Some("app-03")).await;
        let theirs = app.get_as(&scoped, "/api/v1/lanes").await.json();
        let names: Vec<&str> = theirs["lanes"].as_array().unwrap().iter().map(|l| l["app"].as_str().unwrap()).collect();
        assert_eq!(names, ["app-03"], "{theirs}");
        assert_eq!(theirs["matching"], 1);
        let searched = app.get_as(&scoped, "/api/v1/lanes?search=shop").await.json();
        assert_eq!(searched["matching"], 0, "a search does not reveal another app: {searched}");
        let attention = app.get_as(&scoped, "/api/v1/attention").await.text();
        assert!(!attention.contains("shop"), "{attention}");
        let home = app.get_as(&scoped, "/").await.text();
        assert!(!home.contains("shop"), "the page names no other app");
        assert_eq!(app.get("/api/v1/lanes?search=%27%20OR%201%3D1--").await.json()["matching"], 0);
    }
}

crate::on_both! {
    // The runs list: exact filters pushed into the query, 50 a page with a
    // `Link` to the next, the failure's first line for testers and above,
    // superseded runs pointing at their successor, scoped callers seeing
    // their apps' runs only, and a filter that matches nothing saying so.
    async fn the_runs_list_filters_pages_and_says_why_a_run_failed(app: TestApp) {
        use app::dto::Role;
        use gantry::db::{self, environments::NewEnvironment, runs::NewRun};
        let seeded = shop_with_a_run(&app, RunState::Queued).await;
        let pool = app.db().pool();
        let first = db::runs::get(pool, seeded.run_id).await.unwrap().unwrap();
        let app = &app;
        let insert = |app_id: i64, environment_id: i64, branch: &'static str, at: i64| async move {
            db::runs::insert(
                app.db().pool(),
                &NewRun {
                    app_id,
                    environment_id,
                    branch,
                    commit_sha: "4f2a9c1e0b7d4c3a2f1e0d9c8b7a6f5e4d3c2b1a",
                    pipeline_sha: "0000000000000000000000000000000000000001",
                    state: RunState::Queued,
                    trigger: "push",
                    local_target: false,
                },
                at,
            )
            .await
            .unwrap()
        };
        let mut ids = vec![seeded.run_id];
        for n in 0..60 {
            ids.push(insert(first.app_id, first.environment_id, "latest", 1_795_846_460_000 + n).await);
        }
        // The newest queued run of staging supersedes the older ones.
        let newest = *ids.last().unwrap();
        let mut conn = app.db().acquire().await.unwrap();
        db::runs::supersede_older(&mut conn, first.environment_id, newest, 1_795_846_470_000)
            .await
            .unwrap();
        drop(conn);

        crate::seed::another_app(app, "other").await;
        let other = db::apps::find_active_by_name(pool, "other").await.unwrap().unwrap();
        let review = db::environments::insert(
            pool,
            &NewEnvironment {
                app_id: other.id,
                name: "preview-feature-x",
                stack_entry: "preview",
                branch: Some("feature/x"),
                url: None,
                namespace: None,
            },
            1_795_846_452_000,
        )
        .await
        .unwrap();
        let failed = insert(other.id, review, "feature/x", 1_795_846_480_000).await;
        db::runs::finish(
            pool,
            failed,
            RunState::Failed,
            Some("\nstep test failed: exit 1\nthe log has the rest"),
            1_795_846_545_000,
        )
        .await
        .unwrap();

        // Newest first, 50 a page, a `Link` to the rest that ends.
        let page = app.get("/api/v1/runs").await;
        let runs = page.json();
        let listed: Vec<i64> = runs.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(listed.len(), 50);
        assert_eq!(listed[0], failed);
        assert!(listed.windows(2).all(|w| w[0] > w[1]), "{listed:?}");
        let link = page.headers["link"].to_str().unwrap().to_string();
        let next = link.trim_start_matches('<').split('>').next().unwrap().to_string();
        assert_eq!(next, format!("/api/v1/runs?before={}", listed[49]));
        let rest = app.get(&next).await;
        let older: Vec<i64> = rest.json().as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(older.len(), 12, "62 runs in all");
        assert!(older.iter().all(|id| *id < listed[49]));
        assert!(rest.headers.get("link").is_none(), "the last page has no next");

        // What failed, why, and who replaced what.
        let first_row = &runs[0];
        assert_eq!(first_row["reason"], "step test failed: exit 1");
        assert_eq!(first_row["trigger"], "push");
        assert_eq!(first_row["finished_at"].as_i64().unwrap() - first_row["created_at"].as_i64().unwrap(), 65_000);
        let replaced = app.get("/api/v1/runs?state=superseded&app=shop").await.json();
        assert_eq!(replaced.as_array().unwrap().len(), 50);
        assert!(replaced.as_array().unwrap().iter().all(|r| r["superseded_by"] == newest));

        // Exact filters, together.
        let filtered = app.get("/api/v1/runs?app=other&environment=preview-feature-x&branch=feature%2Fx&state=failed").await.json();
        assert_eq!(filtered.as_array().unwrap().len(), 1, "{filtered}");
        for query in ["app=sho", "branch=feature", "state=running", "actor=nobody", "environment=production"] {
            let none = app.get(&format!("/api/v1/runs?{query}")).await.json();
            assert_eq!(none.as_array().map(Vec::len), Some(0), "{query}: {none}");
        }
        let blank = app.get("/api/v1/runs?app=&state=&branch=").await.json();
        assert_eq!(blank.as_array().unwrap().len(), 50, "blank fields filter nothing");
        let bad = app.get("/api/v1/runs?state=exploded").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.text().contains("\\\"exploded\\\" is not a run state"), "{}", bad.text());
        // Hostile filter text is a value, never SQL.
        let hostile = app.get("/api/v1/runs?branch=%27%20OR%201%3D1--&actor=x%27%29%20OR%20%281%3D1").await.json();
        assert_eq!(hostile.as_array().map(Vec::len), Some(0), "{hostile}");

        // A scoped viewer sees their app's runs only, without the reason.
        let viewer = app.token("watcher", Role::Viewer, Some("other")).await;
        let theirs = app.get_as(&viewer, "/api/v1/runs").await.json();
        let apps: Vec<&str> = theirs.as_array().unwrap().iter().map(|r| r["app"].as_str().unwrap()).collect();
        assert_eq!(apps, ["other"], "{theirs}");
        assert!(theirs[0]["reason"].is_null(), "the reason is for testers and above");
        // Nor on the app's page, where a viewer sees the runs too.
        let overview = app.get_as(&viewer, "/api/v1/apps/other").await.json();
        assert!(overview["runs"][0]["reason"].is_null(), "{overview}");
        let as_admin = app.get("/api/v1/apps/other").await.json();
        assert_eq!(as_admin["runs"][0]["reason"], "step test failed: exit 1");
        let asked = app.get_as(&viewer, "/api/v1/runs?app=shop").await.json();
        assert_eq!(asked.as_array().map(Vec::len), Some(0), "a filter does not reveal another app");

        // The page: the filters kept in the form, the reason, the pager.
        let html = app.get("/runs?state=failed").await.text();
        assert!(html.contains("step test failed: exit 1"), "reason shown");
        assert!(html.contains("<option value=\"failed\" selected"), "state kept in the filter");
        let all = app.get("/runs").await.text();
        assert!(all.contains(&format!("/runs?before={}", listed[49])), "older page linked");
        let nothing = app.get("/runs?app=nosuchapp").await.text();
        assert!(nothing.contains("No run matches these filters"), "{nothing}");
    }
}

// A visitor without an account is sent to sign in and brought back to the
// page they asked for, filters included; a share link opens without one.
#[tokio::test]
async fn an_anonymous_visitor_is_sent_to_sign_in_and_back() {
    use axum::body::Body;
    use axum::http::Request;
    let app =
        crate::support::TestApp::with_config("sqlite", |config| config.dev_login = true).await;
    for (path, back) in [
        ("/", "%2F"),
        (
            "/runs?state=failed&app=shop",
            "%2Fruns%3Fstate%3Dfailed%26app%3Dshop",
        ),
        ("/apps/shop", "%2Fapps%2Fshop"),
    ] {
        let page = app
            .request_as(None, Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            page.header("location"),
            Some(format!("/auth/login?return_to={back}").as_str()),
            "{path}"
        );
    }
    let share = app
        .request_as(
            None,
            Request::get("/share/1.1.1.AAAA")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        share.status,
        StatusCode::NOT_FOUND,
        "a share link needs no account; a bad one is a 404"
    );
    // Signed in, the page itself.
    assert_eq!(app.get("/runs").await.status, StatusCode::OK);
    // Where nobody can sign in (API tokens only), there is nowhere to send
    // a visitor: the page answers and says so itself.
    let tokens_only = crate::support::TestApp::sqlite().await;
    let page = tokens_only
        .request_as(None, Request::get("/runs").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text().contains("Sign in to see this."),
        "{}",
        page.text()
    );
}

crate::on_both! {
    // The dashboard's override needs its "I understand" box: a form
    // submitted without it (a script, a stale page) merges nothing.
    async fn an_override_from_the_dashboard_needs_its_confirmation(app: TestApp) {
        use axum::body::Body;
        use axum::http::Request;
        let world = crate::seed::shop_with_a_change_request(&app).await;
        let admin = app.token("boss", app::dto::Role::Admin, None).await;
        let post = |body: String| {
            Request::post("/fn/review_change_request")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(Body::from(body))
                .unwrap()
        };
        let id = world.change_request_id;
        let unconfirmed = app
            .request_as(Some(&admin), post(format!("id={id}&action=override&comment=hotfix+for+the+outage&csrf=")))
            .await;
        assert!(unconfirmed.text().contains("tick \"I understand\""), "{}", unconfirmed.text());
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(detail["summary"]["state"], "open", "nothing merged: {detail}");
        assert!(detail["decisions"].as_array().unwrap().iter().all(|d| d["decision"] != "override"), "{detail}");
        // The other decisions need no such box.
        let commented = app
            .request_as(Some(&admin), post(format!("id={id}&action=feedback&comment=looks+fine&csrf=")))
            .await;
        assert_eq!(commented.status, StatusCode::OK, "{}", commented.text());
    }
}

crate::on_both! {
    // An admins' page, opened by someone else, says whose area it is — no
    // error box, no form they could not use, nothing of its content.
    async fn admins_pages_say_so_to_others_and_show_no_forms(app: TestApp) {
        use app::dto::Role;
        shop_with_a_run(&app, RunState::Queued).await;
        let developer = app.token("dev", Role::Developer, None).await;
        let scoped_admin = app.token("shop-admin", Role::Admin, Some("shop")).await;
        for (path, what) in [("/clusters", "Clusters"), ("/notifications", "Notification channels"), ("/settings", "Settings")] {
            let html = app.get_as(&developer, path).await.text();
            let main = &html[html.find("id=\"main\"").expect("the page's main")..];
            assert!(main.contains(&format!("{what} are for admins")), "{path}: {main}");
            assert!(!main.contains("notice-error"), "{path}: no error box");
            assert!(!main.contains("<form"), "{path}: no form");
        }
        // An admin of one app manages clusters and channels, not Settings.
        let clusters = app.get_as(&scoped_admin, "/clusters").await.text();
        assert!(clusters.contains("Register a cluster"));
        let settings = app.get_as(&scoped_admin, "/settings").await.text();
        assert!(settings.contains("Settings are for admins"));
        let own = app.get("/settings").await.text();
        assert!(own.contains("data-testid=\"pipeline-health\""));
    }
}
