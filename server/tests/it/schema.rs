//! The schema and its migrations, on both backends.

use gantry::db::{self, Db, DbError, audit::NewEntry};

use crate::on_both;

on_both! {
    async fn migrating_again_changes_nothing(app: TestApp) {
        app.db().migrate().await.expect("second migration run is a no-op");
        app.db().check_ready().await.expect("still ready");
    }

    async fn the_audit_log_refuses_updates_and_deletes(app: TestApp) {
        let pool = app.db().pool();
        let entry = NewEntry {
            actor: "alice",
            action: "approve",
            target: "shop/production",
            reason: Some("looks good"),
            source_ip: Some("127.0.0.1"),
            detail: "{}",
        };
        let id = db::audit::record(pool, &entry, 1).await.expect("append");
        let update = sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE id = $1").bind(id).execute(pool).await;
        assert!(update.expect_err("update refused").to_string().contains("append-only"));
        let delete = sqlx::query("DELETE FROM audit_log WHERE id = $1").bind(id).execute(pool).await;
        assert!(delete.expect_err("delete refused").to_string().contains("append-only"));

        let entries = db::audit::list(pool, &Default::default()).await.expect("list");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].actor, "alice");
    }

    async fn a_database_from_a_newer_gantry_is_refused_without_changes(app: TestApp) {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
             VALUES (9999, 'from the future', CURRENT_TIMESTAMP, $1, $2, 0)",
        )
        .bind(true)
        .bind(vec![0_u8; 48])
        .execute(app.db().pool())
        .await
        .expect("pretend a newer gantry migrated");
        let error = app.db().migrate().await.expect_err("refused");
        assert!(matches!(error, DbError::SchemaTooNew { version: 9999, .. }), "{error}");
        assert!(error.to_string().contains("newer gantry"));
    }

    async fn foreign_keys_are_enforced(app: TestApp) {
        let result = sqlx::query(
            "INSERT INTO environments (app_id, name, stack_entry, state, created_at, updated_at)
             VALUES (424242, 'orphan', 'preview', 'pending', 0, 0)",
        )
        .execute(app.db().pool())
        .await;
        assert!(result.is_err(), "an environment needs an app");
    }
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gantry.db");
    std::fs::write(&path, b"this is not a database, it is a grocery list").expect("write");
    let error = Db::connect(&gantry::config::DatabaseTarget::Sqlite(path.clone()))
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!("database file {} is not a SQLite database", path.display())
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        b"this is not a database, it is a grocery list"
    );
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_foreign_keys_on() {
    let app = crate::support::TestApp::sqlite().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(app.db().pool())
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(app.db().pool())
        .await
        .expect("pragma");
    assert_eq!(foreign_keys, 1);
}

on_both! {
    async fn one_run_at_a_time_holds_an_environment_s_deploy_lock_and_only_while_it_holds_the_run(app: TestApp) {
        use app::dto::RunState;
        use db::runs::Holder;
        let seeded = crate::seed::shop_with_a_run(&app, RunState::Running).await;
        let pool = app.db().pool();
        let (env, app_id): (i64, i64) = sqlx::query_as("SELECT environment_id, app_id FROM runs WHERE id = $1").bind(seeded.run_id).fetch_one(pool).await.expect("env");
        let other = db::runs::insert(pool, &db::runs::NewRun { app_id, environment_id: env, branch: "latest", commit_sha: crate::seed::COMMIT, pipeline_sha: crate::seed::PIPELINE_COMMIT, state: RunState::Running, trigger: "push", local_target: false }, 2).await.expect("second run");
        let hold = |run_id: i64, runner: &'static str, attempt: i64| async move {
            sqlx::query("UPDATE runs SET runner_id = $2, attempt = $3 WHERE id = $1").bind(run_id).bind(runner).bind(attempt).execute(pool).await.expect("hold");
            Holder { run_id, runner, attempt }
        };
        let first = hold(seeded.run_id, "replica-a", 1).await;
        let second = hold(other, "replica-a", 1).await;
        assert!(db::environments::try_lock(pool, env, first).await.expect("lock"));
        assert!(db::environments::try_lock(pool, env, first).await.expect("re-entrant for the holder"));
        assert!(!db::environments::try_lock(pool, env, second).await.expect("lock"), "a second run waits");

        // The first run is taken over: the replica that lost it can neither
        // take the lock nor release it from under the attempt that took over.
        let taken_over = hold(seeded.run_id, "replica-b", 2).await;
        assert!(!db::runs::lock_held(pool, first).await.expect("held"));
        assert!(db::runs::lock_held(pool, taken_over).await.expect("held"));
        assert!(!db::environments::try_lock(pool, env, first).await.expect("lock"), "the lost attempt");
        db::environments::unlock(pool, env, first).await.expect("unlock");
        assert!(!db::environments::try_lock(pool, env, second).await.expect("lock"), "still held for the run");
        assert!(db::environments::try_lock(pool, env, taken_over).await.expect("lock"), "the attempt that took over");
        db::environments::unlock(pool, env, taken_over).await.expect("unlock");
        assert!(db::environments::try_lock(pool, env, second).await.expect("lock"));
        // A lock held by a run that is not running is released at start-up.
        db::runs::finish(pool, other, RunState::Failed, None, 3).await.expect("finish");
        assert!(!db::runs::lock_held(pool, second).await.expect("held"), "an ended run is held by nobody");
        assert_eq!(db::environments::release_stale_locks(pool).await.expect("release"), 1);
    }

    async fn a_retried_end_of_a_run_whose_first_commit_went_through_is_known_as_its_own(app: TestApp) {
        use app::dto::RunState;
        let seeded = crate::seed::shop_with_a_run(&app, RunState::Running).await;
        let pool = app.db().pool();
        sqlx::query("UPDATE runs SET runner_id = 'replica-a', attempt = 1 WHERE id = $1").bind(seeded.run_id).execute(pool).await.expect("hold");
        let end = |runner: &'static str, at: i64| db::runs::finish_attempt(pool, seeded.run_id, runner, 1, RunState::Succeeded, None, at);
        assert!(end("replica-a", 7).await.expect("end"));
        // The retry: the run is no longer running, but it ended as this try would end it.
        assert!(!end("replica-a", 7).await.expect("end"));
        assert!(db::runs::ended_as(pool, seeded.run_id, "replica-a", 1, RunState::Succeeded, 7).await.expect("read"));
        // Not another replica's end, another end or another attempt's.
        assert!(!db::runs::ended_as(pool, seeded.run_id, "replica-b", 1, RunState::Succeeded, 7).await.expect("read"));
        assert!(!db::runs::ended_as(pool, seeded.run_id, "replica-a", 1, RunState::Failed, 7).await.expect("read"));
        assert!(!db::runs::ended_as(pool, seeded.run_id, "replica-a", 2, RunState::Succeeded, 7).await.expect("read"));
        assert!(!db::runs::ended_as(pool, seeded.run_id, "replica-a", 1, RunState::Succeeded, 8).await.expect("read"));
    }

    async fn a_replica_that_lost_its_run_begins_no_deployment(app: TestApp) {
        use app::dto::RunState;
        use gantry::delivery::deploy::{DeployError, lifecycle::{self, Begin, Kind, Record, Subject}};
        let seeded = crate::seed::shop_with_a_run(&app, RunState::Running).await;
        let pool = app.db().pool();
        let (env, app_id): (i64, i64) = sqlx::query_as("SELECT environment_id, app_id FROM runs WHERE id = $1").bind(seeded.run_id).fetch_one(pool).await.expect("env");
        // Attempt 2 runs on replica-b: attempt 1 on replica-a lost the run.
        sqlx::query("UPDATE runs SET runner_id = 'replica-b', attempt = 2 WHERE id = $1").bind(seeded.run_id).execute(pool).await.expect("take over");
        let subject = Subject { app_id, app: "shop", environment_id: env, environment: "staging", rollout_timeout: std::time::Duration::from_secs(60) };
        let record = Record { shown: "{}".into(), digest: "d".into(), sealed: None };
        let begin = |runner: &'static str, attempt: i64| Begin {
            run: Some(db::runs::Holder { run_id: seeded.run_id, runner, attempt }),
            kind: Kind::Deploy,
            commit_sha: crate::seed::COMMIT,
            pipeline_sha: crate::seed::PIPELINE_COMMIT,
            image: None,
            created_by: None,
            record: &record,
            namespace: None,
            release: None,
        };
        let lost = lifecycle::begin(app.db(), &subject, begin("replica-a", 1), 5).await;
        assert!(matches!(lost, Err(DeployError::Lost { attempt: 1, .. })), "{lost:?}");
        let deployments: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(pool).await.expect("count");
        assert_eq!(deployments, 0, "nothing was begun");
        let state: String = sqlx::query_scalar("SELECT state FROM environments WHERE id = $1").bind(env).fetch_one(pool).await.expect("env");
        assert_ne!(state, "deploying");
        let begun = lifecycle::begin(app.db(), &subject, begin("replica-b", 2), 5).await.expect("the attempt that holds the run");
        let run_of: Option<i64> = sqlx::query_scalar("SELECT run_id FROM deployments WHERE id = $1").bind(begun.deployment_id).fetch_one(pool).await.expect("deployment");
        assert_eq!(run_of, Some(seeded.run_id));
    }
}
