//! What an approval covers (issue 27): a developer — or an admin wanting
//! to approve their own work — tries to get a commit nobody approved into
//! a protected environment: riding a harmless change request's merge,
//! through a forge's "merged" event, through commit metadata naming someone
//! else. Each try failed to fail on the main branch before approvals were
//! bound to what they cover.

use app::dto::Role;
use serde_json::{Value, json};

use crate::forge::{app_known, deliver, github_pull_request, github_push, register_secrets};
use crate::on_both;
use crate::support::TestApp;
use crate::support::flow::{MINUTE, scan, served, start, wait_for};
use crate::support::remote::{Remote, approve_held, decide, open, ready};

/// Production (`master`) live at its first commit, approved by an admin.
async fn production_live(backend: &str, remote: &Remote) -> TestApp {
    let app = ready(start(backend, &remote.repos).await).await;
    let first = remote.head("master");
    approve_held(&app, "production", &[&app.admin_token.clone()]).await;
    serving(&app, "production", &first).await;
    app
}

async fn serving(app: &TestApp, env: &str, sha: &str) {
    wait_for(&format!("{env} to serve {sha}"), MINUTE, || async {
        served(app, env).await.filter(|text| text.contains(sha))
    })
    .await;
}

/// The production run of `sha`, once planned.
async fn run_of(app: &TestApp, sha: &str) -> Value {
    let id = wait_for(&format!("a production run of {sha}"), MINUTE, || async {
        let runs = app.get("/api/v1/runs").await.json();
        runs.as_array()?
            .iter()
            .find(|r| r["commit_sha"] == sha && r["environment"] == "production")
            .and_then(|r| r["id"].as_i64())
    })
    .await;
    app.get(&format!("/api/v1/runs/{id}")).await.json()
}

fn uncovered_shas(list: &Value) -> Vec<String> {
    list["commits"]
        .as_array()
        .map(|commits| {
            commits
                .iter()
                .filter_map(|c| c["sha"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Production live at its first commit, and mallory's commit X, "tidy up
/// imports", pushed straight to master and seen by Gantry: its production
/// run (`held`) waits for an approval.
struct Smuggled {
    remote: Remote,
    app: TestApp,
    admin: String,
    mallory: String,
    first: String,
    x: String,
    held: Value,
}

async fn smuggled(backend: &str) -> Smuggled {
    let remote = Remote::new();
    let app = production_live(backend, &remote).await;
    let admin = app.admin_token.clone();
    let mallory = app.token("mallory", Role::Developer, Some("shop")).await;
    let first = remote.head("master");
    let work = remote.work();
    work.checkout("master");
    work.write("backdoor.py", "print('owned')\n");
    let x = work.commit("tidy up imports");
    remote.push("master");
    scan(&app).await;
    let held = run_of(&app, &x).await;
    Smuggled {
        remote,
        app,
        admin,
        mallory,
        first,
        x,
        held,
    }
}

/// Commits what is staged in the work tree as `author` (any text: the
/// author line is the pusher's to write).
fn commit_as(remote: &Remote, author: &str, message: &str) -> String {
    let work = remote.work();
    work.git(&["add", "-A"]);
    work.git(&[
        "commit",
        "-q",
        "--allow-empty",
        "--author",
        author,
        "-m",
        message,
    ]);
    work.git(&["rev-parse", "HEAD"])
}

on_both! {
    async fn a_commit_pushed_straight_to_production_does_not_ride_a_harmless_request_live(backend) {
        // Mallory pushes X straight to master: its production run is held,
        // and says which commit nothing covers.
        let Smuggled { remote, mut app, admin, mallory, first, x, held } = smuggled(backend).await;
        assert_eq!(held["run"]["state"], "waiting_for_approval", "{held}");
        assert_eq!(uncovered_shas(&held["uncovered"]), [x.as_str()], "{held}");
        assert_eq!(held["uncovered"]["commits"][0]["summary"], "tidy up imports");

        // A harmless request, branched before X, into master.
        let typo = remote.feature("feature/typo", &first, "typo.txt");
        let id = open(&app, &mallory, json!({ "app": "shop", "source_branch": "feature/typo", "target_branch": "master", "title": "fix a typo" })).await["id"].as_i64().unwrap();
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        let own: Vec<&str> = detail["commits"].as_array().unwrap().iter().map(|c| c["sha"].as_str().unwrap()).collect();
        assert_eq!(own, [typo.as_str()], "the request's own commits: {detail}");
        assert_eq!(uncovered_shas(&detail["uncovered_on_target"]), [x.as_str()], "listed apart: {detail}");

        // The admin approves "fix a typo": Gantry does not merge it onto X.
        let (status, approved) = decide(&app, &admin, id, "approve", "typo, fine").await;
        assert_eq!(status, 200, "{approved}");
        assert_eq!(approved["state"], "approved", "{approved}");
        let why = approved["state_detail"].as_str().unwrap();
        assert!(why.contains(&x[..12]) && why.contains("tidy up imports") && why.contains("no approval covers"), "{why}");
        assert_eq!(remote.head("master"), x, "nothing was merged");
        let audit = app.get("/api/v1/audit").await.json();
        assert!(!audit.as_array().unwrap().iter().any(|e| e["action"] == "change_request.merge"), "{audit}");
        serving(&app, "production", &first).await;
        let still = app.get(&format!("/api/v1/runs/{}", held["run"]["id"])).await.json();
        assert_eq!(still["run"]["state"], "waiting_for_approval");

        // Once X itself is approved (its run), the request merges, and its
        // merge deploys without a second hold: everything in it is covered.
        let approve = app.post_json(&format!("/api/v1/runs/{}/approve", held["run"]["id"]), json!({ "comment": "seen it" })).await;
        assert_eq!(approve.status, 200, "{}", approve.text());
        gantry::change_requests::merge_thawed(&app.state.change_request_service()).await.expect("retry");
        let merged = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(merged["summary"]["state"], "merged", "{merged}");
        let merge = remote.head("master");
        assert_eq!(remote.parents("master"), [x, typo]);
        serving(&app, "production", &merge).await;
        let deployed = run_of(&app, &merge).await["run"]["id"].clone();
        wait_for("the merge's run to succeed", MINUTE, || async {
            let run = app.get(&format!("/api/v1/runs/{deployed}")).await.json();
            (run["run"]["state"] == "succeeded").then_some(())
        })
        .await;
        app.stop().await;
    }

    async fn a_request_built_on_an_unapproved_commit_never_merges_it_even_once_the_target_is_reset(backend) {
        // X straight onto master (held), and a request built on X.
        let Smuggled { remote, mut app, admin, mallory, first, x, .. } = smuggled(backend).await;
        let work = remote.work();
        remote.feature("feature/on-x", "master", "y.txt");
        let id = open(&app, &mallory, json!({ "app": "shop", "source_branch": "feature/on-x", "target_branch": "master" })).await["id"].as_i64().unwrap();
        let (status, approved) = decide(&app, &admin, id, "approve", "y is fine").await;
        assert_eq!(status, 200, "{approved}");
        assert_eq!(approved["state"], "approved", "{approved}");

        // Mallory resets master to what production runs: the target is
        // covered now, but X is still under the request's head.
        work.checkout("master");
        work.git(&["reset", "-q", "--hard", &first]);
        work.git(&["push", "-q", "--force", "origin", "master"]);
        gantry::change_requests::merge_thawed(&app.state.change_request_service()).await.expect("retry");
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(detail["summary"]["state"], "approved", "{detail}");
        let why = detail["summary"]["state_detail"].as_str().unwrap_or_default();
        assert!(why.contains(&x[..12]) && why.contains("no approval covers"), "{why}");
        assert_eq!(remote.head("master"), first, "nothing was merged");
        serving(&app, "production", &first).await;
        app.stop().await;
    }

    async fn a_push_that_goes_back_from_what_production_runs_waits_for_an_approval(backend) {
        let remote = Remote::new();
        let mut app = production_live(backend, &remote).await;
        // A second release of two commits, pushed at once: approved, live.
        let work = remote.work();
        work.checkout("master");
        work.write("release-2a.txt", "2a\n");
        let middle = work.commit("release 2, first half");
        work.write("release-2b.txt", "2b\n");
        let second = work.commit("release 2");
        remote.push("master");
        scan(&app).await;
        approve_held(&app, "production", &[&app.admin_token.clone()]).await;
        serving(&app, "production", &second).await;

        // Mallory force-pushes master back to the release's first half:
        // every commit of it was approved with the release, but production
        // would go back.
        work.git(&["reset", "-q", "--hard", &middle]);
        work.git(&["push", "-q", "--force", "origin", "master"]);
        scan(&app).await;
        let held = run_of(&app, &middle).await;
        assert_eq!(held["run"]["state"], "waiting_for_approval", "{held}");
        assert_eq!(held["uncovered"]["rewinds_from"], second.as_str(), "{held}");
        assert_eq!(held["uncovered"]["total"], 0, "{held}");
        serving(&app, "production", &second).await;
        app.stop().await;
    }

    async fn an_admins_override_merges_onto_uncovered_commits_and_its_audit_names_them(backend) {
        let Smuggled { remote, mut app, admin, mallory, first, x, .. } = smuggled(backend).await;
        remote.feature("feature/typo", &first, "typo.txt");
        let id = open(&app, &mallory, json!({ "app": "shop", "source_branch": "feature/typo", "target_branch": "master" })).await["id"].as_i64().unwrap();

        let (status, merged) = decide(&app, &admin, id, "override", "outage: ship it with the import tidy-up").await;
        assert_eq!(status, 200, "{merged}");
        assert_eq!(merged["state"], "merged", "{merged}");
        let detail: String = sqlx::query_scalar("SELECT detail FROM audit_log WHERE action = 'change_request.override'")
            .fetch_one(app.db().pool())
            .await
            .expect("the override's audit entry");
        let detail: Value = serde_json::from_str(&detail).unwrap();
        assert_eq!(detail["uncovered_on_target"][0]["sha"], x.as_str(), "{detail}");
        serving(&app, "production", &remote.head("master")).await;
        app.stop().await;
    }

    async fn a_request_its_target_already_contains_records_no_merge_of_the_target(backend) {
        let remote = Remote::new();
        let mut app = production_live(backend, &remote).await;
        let admin = app.admin_token.clone();
        let mallory = app.token("mallory", Role::Developer, Some("shop")).await;
        let first = remote.head("master");
        let feature = remote.feature("feature/f", &first, "f.txt");
        let id = open(&app, &mallory, json!({ "app": "shop", "source_branch": "feature/f", "target_branch": "master" })).await["id"].as_i64().unwrap();

        // Mallory fast-forwards master to the request and adds X on top,
        // and the admin approves before Gantry's next scan sees it.
        let work = remote.work();
        work.checkout("master");
        work.git(&["merge", "-q", "--ff-only", "feature/f"]);
        work.write("backdoor.py", "print('owned')\n");
        let x = work.commit("more of feature f");
        remote.push("master");

        // The approval finds the request merged already: the target's head
        // is not recorded as the request's merge.
        let (status, done) = decide(&app, &admin, id, "approve", "ok").await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["state"], "merged", "{done}");
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(detail["merge_sha"], Value::Null, "{detail}");

        // So X, planned now, is held like any commit nobody approved; the
        // request's own commit is covered by its approval.
        scan(&app).await;
        let held = run_of(&app, &x).await;
        assert_eq!(held["run"]["state"], "waiting_for_approval", "{held}");
        assert_eq!(uncovered_shas(&held["uncovered"]), [x.as_str()], "{held}");
        assert!(!uncovered_shas(&held["uncovered"]).contains(&feature));
        serving(&app, "production", &first).await;
        app.stop().await;
    }

    async fn the_pusher_not_the_commit_author_line_is_who_may_not_approve(backend) {
        let remote = Remote::new();
        let mut app = production_live(backend, &remote).await;
        register_secrets(&app).await;
        app_known(&app).await;
        let alice = app.token("alice", Role::Admin, None).await;
        let bob = app.token("bob", Role::Admin, None).await;
        app.forge_account("alice", "alice-gh", "alice@example.com").await;
        app.forge_account("bob", "bob-gh", "bob@example.com").await;

        // Alice pushes to master a commit whose author line names Bob.
        let work = remote.work();
        work.checkout("master");
        let before = remote.head("master");
        work.write("hotfix.txt", "fix\n");
        let sha = commit_as(&remote, "Bob <bob@example.com>", "hotfix");
        remote.push("master");
        let mut push = github_push(remote.bare.path().to_str().unwrap().trim_end_matches(".git"), "master", &sha);
        push["before"] = json!(before);
        push["sender"]["login"] = json!("alice-gh");
        assert_eq!(deliver(&app, "github", "push", "push-alice", &push, None).await.status, 202);
        let held = run_of(&app, &sha).await;
        assert_eq!(held["run"]["state"], "waiting_for_approval");
        assert_eq!(held["pushed_by"], "alice", "{held}");

        // Alice may not approve her own push; Bob, named by the commit, may.
        let run = held["run"]["id"].as_i64().unwrap();
        // (Told who pushed after the run was planned, as when a scan sees
        // the push before its event arrives: still hers.)
        sqlx::query("UPDATE runs SET pushed_by_user_id = NULL WHERE id = $1")
            .bind(run)
            .execute(app.db().pool())
            .await
            .expect("forget");
        let own = app.post_as(&alice, &format!("/api/v1/runs/{run}/approve"), json!({})).await;
        assert_eq!(own.status, 403, "{}", own.text());
        assert!(own.text().contains("cannot approve"), "{}", own.text());
        let other = app.post_as(&bob, &format!("/api/v1/runs/{run}/approve"), json!({})).await;
        assert_eq!(other.status, 200, "{}", other.text());
        app.stop().await;
    }

    async fn the_author_of_a_forge_request_cannot_approve_it(backend) {
        let remote = Remote::new();
        let mut app = production_live(backend, &remote).await;
        register_secrets(&app).await;
        let alice = app.token("alice", Role::Admin, None).await;
        let bob = app.token("bob", Role::Admin, None).await;
        let head = remote.feature("feature/mine", "master", "mine.txt");
        let bare = remote.bare.path().display().to_string();
        let mut opened = github_pull_request("opened", &bare, 21, "feature/mine", &head);
        opened["pull_request"]["base"]["ref"] = json!("master");
        opened["pull_request"]["user"]["login"] = json!("alice-gh");
        assert_eq!(deliver(&app, "github", "pull_request", "pr-21", &opened, None).await.status, 202);
        let id = wait_for("the forge request", MINUTE, || async {
            let list = app.get("/api/v1/change-requests").await.json();
            list.as_array()?.iter().find(|c| c["source_branch"] == "feature/mine").and_then(|c| c["id"].as_i64())
        })
        .await;

        // Alice signs in for the first time after she opened it: her forge
        // account is hers from then on, and so is the request.
        app.forge_account("alice", "alice-gh", "alice@example.com").await;
        let (status, body) = decide(&app, &alice, id, "approve", "mine, fine").await;
        assert_eq!(status, 403, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("wrote this change"), "{body}");
        let (status, body) = decide(&app, &bob, id, "approve", "fine").await;
        assert_eq!(status, 200, "{body}");
        app.stop().await;
    }

    async fn a_push_is_an_approval_only_where_the_policy_counts_pushes_and_only_an_approvers(backend) {
        let remote = Remote::with_app_yaml(|yaml| yaml.replace("approval: { required: 1 }", "approval: { required: 1, forge_push: true, self_approval: true }"));
        let mut app = production_live(backend, &remote).await;
        register_secrets(&app).await;
        app_known(&app).await;
        app.token("alice", Role::Admin, None).await;
        app.token("mallory", Role::Developer, Some("shop")).await;
        app.forge_account("alice", "alice-gh", "alice@example.com").await;
        app.forge_account("mallory", "mallory-gh", "mallory@example.com").await;
        let bare = remote.bare.path().display().to_string();
        let work = remote.work();
        work.checkout("master");
        let push_as = |login: &'static str, file: &'static str| {
            let before = remote.head("master");
            work.write(file, "x\n");
            let sha = work.commit(file);
            remote.push("master");
            let mut push = github_push(&bare, "master", &sha);
            push["before"] = json!(before);
            push["sender"]["login"] = json!(login);
            (sha, push)
        };

        // A developer's push is no approval.
        let (mine, push) = push_as("mallory-gh", "mallory.txt");
        assert_eq!(deliver(&app, "github", "push", "push-mallory", &push, None).await.status, 202);
        let held = run_of(&app, &mine).await;
        assert_eq!(held["run"]["state"], "waiting_for_approval", "{held}");
        let run = held["run"]["id"].as_i64().unwrap();
        assert_eq!(app.post_json(&format!("/api/v1/runs/{run}/approve"), json!({})).await.status, 200);

        // An admin's push approves what it adds: it deploys without a hold.
        let (hers, push) = push_as("alice-gh", "alice.txt");
        assert_eq!(deliver(&app, "github", "push", "push-alice", &push, None).await.status, 202);
        serving(&app, "production", &hers).await;
        app.stop().await;
    }

    async fn staging_is_protected_under_gantrys_defaults(backend) {
        // An app.yaml without a stack: Gantry's default stack.
        let remote = Remote::with_app_yaml(|yaml| yaml[..yaml.find("stack:").unwrap()].to_string());
        let mut app = ready(start(backend, &remote.repos).await).await;
        let admin = app.admin_token.clone();
        let mallory = app.token("mallory", Role::Developer, Some("shop")).await;
        approve_held(&app, "staging", &[&admin]).await;
        serving(&app, "staging", &remote.head("latest")).await;

        // An approved change request into latest covers its commits.
        remote.feature("feature/ok", "latest", "ok.txt");
        let id = open(&app, &mallory, json!({ "app": "shop", "source_branch": "feature/ok" })).await["id"].as_i64().unwrap();
        let (status, merged) = decide(&app, &admin, id, "approve", "ok").await;
        assert_eq!(status, 200, "{merged}");
        assert_eq!(merged["state"], "merged", "{merged}");
        serving(&app, "staging", &remote.head("latest")).await;

        // A push straight to latest waits for an admin.
        let work = remote.work();
        work.checkout("latest");
        work.git(&["pull", "-q", "--ff-only", "origin", "latest"]);
        work.write("direct.txt", "x\n");
        let direct = work.commit("straight to staging");
        remote.push("latest");
        scan(&app).await;
        let held = wait_for("the staging run of the push", MINUTE, || async {
            let runs = app.get("/api/v1/runs").await.json();
            runs.as_array()?.iter().find(|r| r["commit_sha"] == direct.as_str() && r["environment"] == "staging").cloned()
        })
        .await;
        assert_eq!(held["state"], "waiting_for_approval", "{held}");
        app.stop().await;
    }

    async fn a_forge_merge_is_no_approval_unless_the_policy_and_the_merger_make_it_one(backend) {
        let remote = Remote::with_app_yaml(|yaml| yaml.replace("approval: { required: 1 }", "approval: { required: 1, forge_merge: true }"));
        let mut app = production_live(backend, &remote).await;
        register_secrets(&app).await;
        let admin = app.admin_token.clone();
        app.token("alice", Role::Admin, None).await;
        app.token("mallory", Role::Developer, Some("shop")).await;
        app.forge_account("alice", "alice-gh", "alice@example.com").await;
        app.forge_account("mallory", "mallory-gh", "mallory@example.com").await;

        // Merged by an admin the policy accepts, not the author: it counts,
        // and production deploys the merge without a hold.
        let counted = merged_on_forge(&app, &remote, 31, "mallory-gh", "alice-gh", Merge::Commit("master")).await;
        serving(&app, "production", &counted).await;
        assert_eq!(request_of(&app, 31).await["merged_by"], "alice");

        // Merged by a developer, by its own author, or by an account that is
        // nobody in Gantry: no approval, and what it brought is held.
        for (number, author, by, why) in [
            (32, "alice-gh", "mallory-gh", "needs the admin role"),
            (33, "alice-gh", "alice-gh", "cannot approve"),
            (34, "mallory-gh", "stranger-gh", "no Gantry user"),
        ] {
            let merge = merged_on_forge(&app, &remote, number, author, by, Merge::Commit("master")).await;
            scan(&app).await;
            let held = run_of(&app, &merge).await;
            assert_eq!(held["run"]["state"], "waiting_for_approval", "merged by {by}: {held}");
            assert!(uncovered_shas(&held["uncovered"]).contains(&merge), "{held}");
            let request = request_of(&app, number).await;
            let detail = request["summary"]["state_detail"].as_str().unwrap_or_default().to_string();
            assert!(detail.contains("not an approval") && detail.contains(why), "merged by {by}: {detail}");
            // An admin releases it, so the next case starts covered.
            let run = held["run"]["id"].as_i64().unwrap();
            assert_eq!(app.post_as(&admin, &format!("/api/v1/runs/{run}/approve"), json!({})).await.status, 200);
        }

        // Retargeted on the forge to a scratch branch and fast-forwarded
        // there by an admin: then pushed to master by its author. Held.
        let head = merged_on_forge(&app, &remote, 35, "mallory-gh", "alice-gh", Merge::FastForward("scratch")).await;
        let request = request_of(&app, 35).await;
        assert_eq!(request["summary"]["target_branch"], "scratch", "{request}");
        let work = remote.work();
        work.checkout("master");
        work.git(&["merge", "-q", "--ff-only", &head]);
        remote.push("master");
        scan(&app).await;
        let held = run_of(&app, &head).await;
        assert_eq!(held["run"]["state"], "waiting_for_approval", "{held}");
        assert_eq!(held["run"]["environment"], "production");
        app.stop().await;
    }

    async fn a_forge_merge_counts_for_nothing_where_the_policy_does_not_say_so(backend) {
        // The default policy: `approval: { required: 1 }`, no `forge_merge`.
        let remote = Remote::new();
        let mut app = production_live(backend, &remote).await;
        register_secrets(&app).await;
        app.token("alice", Role::Admin, None).await;
        app.token("mallory", Role::Developer, Some("shop")).await;
        app.forge_account("alice", "alice-gh", "alice@example.com").await;
        app.forge_account("mallory", "mallory-gh", "mallory@example.com").await;
        // Merged on the forge by an admin who could approve it in Gantry:
        // still no approval, and what it brought to master is held.
        let merge = merged_on_forge(&app, &remote, 41, "mallory-gh", "alice-gh", Merge::Commit("master")).await;
        scan(&app).await;
        let held = run_of(&app, &merge).await;
        assert_eq!(held["run"]["state"], "waiting_for_approval", "{held}");
        assert!(uncovered_shas(&held["uncovered"]).contains(&merge), "{held}");
        let detail = request_of(&app, 41).await["summary"]["state_detail"].as_str().unwrap_or_default().to_string();
        assert!(detail.contains("not an approval") && detail.contains("does not count forge merges"), "{detail}");
        app.stop().await;
    }
}

/// How the forge merged a request, into which branch.
#[derive(Clone, Copy)]
enum Merge<'a> {
    Commit(&'a str),
    FastForward(&'a str),
}

/// A pull request by forge account `author` from a new branch off master
/// into master, merged on the forge by `by` (retargeted first when the
/// merge goes into another branch): the merge made and pushed as the forge
/// would, then the request's events delivered in order. Returns the commit
/// the merge left on its branch.
async fn merged_on_forge(
    app: &TestApp,
    remote: &Remote,
    number: i64,
    author: &str,
    by: &str,
    merge: Merge<'_>,
) -> String {
    let branch = format!("pr/{number}");
    let head = remote.feature(&branch, "master", &format!("pr-{number}.txt"));
    let bare = remote.bare.path().display().to_string();
    let mut opened = github_pull_request("opened", &bare, number, &branch, &head);
    opened["pull_request"]["base"]["ref"] = json!("master");
    opened["pull_request"]["user"]["login"] = json!(author);
    let mut events = vec![opened.clone()];
    let work = remote.work();
    let (base, merged) = match merge {
        Merge::Commit(base) => {
            work.checkout(base);
            work.git(&[
                "merge",
                "-q",
                "--no-ff",
                &branch,
                "-m",
                &format!("Merge pull request #{number}"),
            ]);
            (base, work.git(&["rev-parse", "HEAD"]))
        }
        Merge::FastForward(base) => {
            work.git(&["branch", "-f", base, &head]);
            (base, head.clone())
        }
    };
    remote.push(base);
    let mut last = opened;
    if base != "master" {
        last["action"] = json!("edited");
        last["pull_request"]["base"]["ref"] = json!(base);
        events.push(last.clone());
    }
    last["action"] = json!("closed");
    last["pull_request"]["merged"] = json!(true);
    last["pull_request"]["merged_by"] = json!({ "login": by });
    last["pull_request"]["merge_commit_sha"] = json!(merged);
    events.push(last);
    for (n, event) in events.iter().enumerate() {
        let delivery = format!("pr-{number}-{n}");
        assert_eq!(
            deliver(app, "github", "pull_request", &delivery, event, None)
                .await
                .status,
            202
        );
    }
    wait_for(
        &format!("request #{number} to be merged"),
        MINUTE,
        || async {
            request_of(app, number)
                .await
                .get("summary")
                .filter(|s| s["state"] == "merged")
                .map(|_| ())
        },
    )
    .await;
    merged
}

/// The change request of pull request `number` (its page's detail).
async fn request_of(app: &TestApp, number: i64) -> Value {
    let branch = format!("pr/{number}");
    let Some(id) = app
        .get("/api/v1/change-requests")
        .await
        .json()
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|c| c["source_branch"] == branch.as_str())
                .and_then(|c| c["id"].as_i64())
        })
    else {
        return json!({});
    };
    app.get(&format!("/api/v1/change-requests/{id}"))
        .await
        .json()
}
