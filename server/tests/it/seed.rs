//! Rows for tests to read back, written through the same `db` functions the
//! product uses.

use app::dto::RunState;
use gantry::db::{self, apps::NewApp, environments::NewEnvironment, runs::NewRun};

use crate::support::TestApp;

pub const COMMIT: &str = "4f2a9c1d0e8b7a6f5c4d3e2f1a0b9c8d7e6f5a4b";
pub const PIPELINE_COMMIT: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";

/// An app `shop` with a staging environment and one run on it.
pub struct Seeded {
    pub run_id: i64,
}

pub async fn shop_with_a_run(app: &TestApp, state: RunState) -> Seeded {
    let pool = app.db().pool();
    let now = 1_795_846_452_000;
    let app_id = db::apps::insert(
        pool,
        &NewApp {
            name: "shop",
            source_url: "file:///srv/git/shop.git",
            config: "{}",
            pipeline_sha: PIPELINE_COMMIT,
        },
        now,
    )
    .await
    .expect("insert app");
    let environment_id = db::environments::insert(
        pool,
        &NewEnvironment {
            app_id,
            name: "staging",
            stack_entry: "staging",
            branch: Some("latest"),
            url: Some("http://staging--shop.localhost:3000/"),
            namespace: None,
        },
        now,
    )
    .await
    .expect("insert environment");
    let run_id = db::runs::insert(
        pool,
        &NewRun {
            app_id,
            environment_id,
            branch: "latest",
            commit_sha: COMMIT,
            pipeline_sha: PIPELINE_COMMIT,
            state,
            trigger: "push",
            local_target: false,
        },
        now + 1000,
    )
    .await
    .expect("insert run");
    Seeded { run_id }
}

/// The app `shop` with the seed's default stack (production needs an
/// admin's approval), a production run held for approval with one logged
/// step, and an open change request by the user `author`.
pub struct World {
    pub run_id: i64,
    pub step_id: i64,
    pub change_request_id: i64,
}

pub async fn shop_with_a_change_request(app: &TestApp) -> World {
    let pool = app.db().pool();
    let now = 1_795_846_452_000;
    let config = gantry::gitops::load::load_app(
        "shop",
        Some("apiVersion: gantry.dev/v1\nsource: /srv/git/shop.git\n"),
        Some("apiVersion: gantry.dev/v1\nsteps:\n  - { name: build, run: \"true\" }\n"),
        &[],
    )
    .expect("valid config");
    let app_id = db::apps::insert(
        pool,
        &NewApp {
            name: "shop",
            source_url: "/srv/git/shop.git",
            config: &serde_json::to_string(&config).expect("json"),
            pipeline_sha: PIPELINE_COMMIT,
        },
        now,
    )
    .await
    .expect("app");
    let environment_id = db::environments::insert(
        pool,
        &NewEnvironment {
            app_id,
            name: "production",
            stack_entry: "production",
            branch: Some("master"),
            url: None,
            namespace: None,
        },
        now,
    )
    .await
    .expect("environment");
    let run_id = db::runs::insert(
        pool,
        &NewRun {
            app_id,
            environment_id,
            branch: "master",
            commit_sha: COMMIT,
            pipeline_sha: PIPELINE_COMMIT,
            state: RunState::WaitingForApproval,
            trigger: "push",
            local_target: false,
        },
        now,
    )
    .await
    .expect("run");
    let step_id = db::steps::create_all(pool, run_id, &["build"])
        .await
        .expect("steps")[0];
    db::steps::append_log(pool, step_id, 0, "building\n", now)
        .await
        .expect("log");
    let author = gantry::auth::upsert_user(&app.state.db, "gantry-test", "author", "author", None)
        .await
        .expect("author");
    let change_request_id = db::change_requests::insert(
        pool,
        &db::change_requests::NewRow {
            app_id,
            origin: "native",
            title: "Faster checkout",
            description: "Caches the basket.",
            source_branch: "feature-checkout",
            target_branch: "latest",
            head_sha: COMMIT,
            author: "author",
            author_user_id: Some(author),
        },
        now,
    )
    .await
    .expect("change request");
    World {
        run_id,
        step_id,
        change_request_id,
    }
}

/// A second app, `name`, with nothing deployed: so a token can be scoped
/// to an app other than the one a test attacks.
pub async fn another_app(app: &TestApp, name: &str) {
    db::apps::insert(
        app.db().pool(),
        &NewApp {
            name,
            source_url: "file:///srv/git/other.git",
            config: "{}",
            pipeline_sha: PIPELINE_COMMIT,
        },
        1_795_846_452_000,
    )
    .await
    .expect("insert app");
}
