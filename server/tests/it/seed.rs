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
        },
        now + 1000,
    )
    .await
    .expect("insert run");
    Seeded { run_id }
}
