//! A developer's pushed code, run as a step: it reads, writes, connects and
//! multiplies, and gets nowhere — while its smoke test still reaches the
//! environment it tests, and every other run goes on.

use super::{attack_program, escapes};
use crate::on_both;
use crate::support::TestApp;
use crate::support::flow::{MINUTE, Repos, scan, start_listening, wait_for};

const PIPELINE: &str = "apiVersion: gantry.dev/v1
steps:
  - { name: attack, run: \"if [ -f attack.py ]; then python3 attack.py; fi\" }
  - deploy
  - { name: smoke, run: \"if [ -f smoke.py ]; then python3 smoke.py; fi\" }
local:
  run: python3 app.py
  health: /healthz
  health_timeout: 20s
";

/// Reaches the environment by both its URLs, as a smoke test does.
const SMOKE: &str = r#"import os, sys, urllib.request
for name in ["GANTRY_PREFIX_URL", "GANTRY_URL"]:
    url = os.environ[name] + "smoke"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = answer.read().decode()
    print(name, body.strip())
    if os.environ["GANTRY_COMMIT"] not in body:
        sys.exit(f"{url} does not serve the commit")
"#;

/// The run of `sha` once it has ended, with its steps.
pub async fn ended_run(app: &TestApp, sha: &str) -> serde_json::Value {
    let run = wait_for("the run to end", 2 * MINUTE, || async {
        let runs = app.get("/api/v1/runs").await.json();
        runs.as_array()?
            .iter()
            .find(|r| {
                r["commit_sha"] == sha
                    && matches!(
                        r["state"].as_str(),
                        Some("succeeded" | "failed" | "cancelled")
                    )
            })
            .cloned()
    })
    .await;
    let mut detail = app.get(&format!("/api/v1/runs/{}", run["id"])).await.json();
    detail["id"] = run["id"].clone();
    detail
}

pub async fn step_log(app: &TestApp, run: &serde_json::Value, step: &str) -> String {
    let step = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {run}"));
    app.get(&format!(
        "/api/v1/runs/{}/steps/{}/log",
        run["id"], step["id"]
    ))
    .await
    .text()
}

on_both! {
    async fn a_step_reaches_nothing_of_gantry_and_its_smoke_test_still_works(backend) {
        let repos = Repos::new("");
        repos.pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
        repos.pipeline.write("other-secrets.txt", "the pipeline repo's other files\n");
        repos.pipeline.commit("an attack step, a smoke test, a file beside the apps");
        let (app, port) = start_listening(backend, &repos, |_| {}).await;

        repos.app.checkout_new("feature/attack");
        repos.app.write("attack.py", &attack_program(app.data_path(), std::process::id(), port));
        repos.app.write("smoke.py", SMOKE);
        let sha = repos.app.commit("try every door");
        scan(&app).await;
        let run = ended_run(&app, &sha).await;
        let attack = step_log(&app, &run, "attack").await;

        assert!(escapes(&attack).is_empty(), "escaped: {attack}");
        for door in [
            "secret key", "database", "sessions", "git mirrors", "other workspaces",
            "gantry environ", "signal gantry", "write outside", "write system",
            "write the pipeline folder",
            "postgres on loopback", "postgres through the gateway", "gantry api",
            "the pipeline repo", "ptrace gantry", "a host service on its own address",
            "cloud metadata",
        ] {
            assert!(attack.contains(&format!("blocked {door}:")), "{door}: {attack}");
        }
        assert!(!attack.contains("uid 0\n"), "the step does not run as root: {attack}");
        assert!(
            attack.contains("pipeline ['pipeline.yaml']"),
            "only its own app's pipeline.yaml: {attack}"
        );
        assert!(!app.data_path().parent().unwrap().join("escaped").exists());

        // The environment's URLs still work from inside (the relay).
        let smoke = step_log(&app, &run, "smoke").await;
        assert_eq!(run["run"]["state"], "succeeded", "{smoke}");
        assert!(smoke.contains(&format!("GANTRY_PREFIX_URL commit={sha}")), "{smoke}");
        assert!(smoke.contains(&format!("GANTRY_URL commit={sha}")), "{smoke}");
    }
}

const HOGS: &str = "apiVersion: gantry.dev/v1
steps:
  - name: hog
    run: \"if [ -f hog.sh ]; then sh hog.sh; fi\"
    timeout: 5m
    resources: { memory: 64Mi, pids: 64, tmp: 16Mi }
  - deploy
local:
  run: python3 app.py
  health: /healthz
  health_timeout: 20s
";

on_both! {
    async fn a_fork_bomb_a_memory_hog_and_a_disk_filler_fail_alone_with_their_reason(backend) {
        let repos = Repos::new("");
        repos.pipeline.write("apps/shop/pipeline.yaml", HOGS);
        repos.pipeline.commit("limits");
        let (app, _) = start_listening(backend, &repos, |config| config.runner_max_parallel = 4).await;
        let hogs = [
            ("bomb", "f() { f | f & }; f; sleep 120\n"),
            ("memory", "python3 -c 'x = b\"x\" * (512 << 20); print(len(x))'\n"),
            ("disk", "dd if=/dev/zero of=/tmp/fill bs=1M count=200\n"),
        ];
        let mut commits = Vec::new();
        for (branch, script) in hogs {
            repos.app.checkout("master");
            repos.app.checkout_new(branch);
            repos.app.write("hog.sh", script);
            commits.push(repos.app.commit(branch));
        }
        scan(&app).await;
        let mut reasons = Vec::new();
        for sha in &commits {
            let run = ended_run(&app, sha).await;
            let log = step_log(&app, &run, "hog").await;
            assert_eq!(run["run"]["state"], "failed", "{run}");
            reasons.push((run["error"].as_str().unwrap_or_default().to_string(), log));
        }
        let [(bomb, _), (memory, _), (disk, disk_log)] = &reasons[..] else {
            panic!("three runs")
        };
        assert!(
            bomb.contains("tried to run more than its limit of 64 processes"),
            "{bomb}"
        );
        assert!(memory.contains("used more than its memory limit (64 MiB)"), "{memory}");
        assert!(disk.contains("exited with code 1"), "{disk}");
        assert!(disk_log.contains("No space left on device"), "{disk_log}");

        // Everything else went on: staging deployed meanwhile, Gantry answers.
        let latest = repos.app.head("latest");
        let staging = ended_run(&app, &latest).await;
        assert_eq!(staging["run"]["state"], "succeeded", "{staging}");
        assert_eq!(app.get("/healthz").await.status, 200);
    }
}

/// A step whose test reports are traps: a FIFO (reading it would hang the
/// runner), a link to Gantry's secret key by its host path, and a link out
/// of the checkout.
const REPORT_TRAPS: &str = "apiVersion: gantry.dev/v1
steps:
  - name: traps
    run: \"if [ -f traps.sh ]; then sh traps.sh; fi\"
    reports: [fifo.xml, key.xml, out/escape.xml]
  - deploy
local:
  run: python3 app.py
  health: /healthz
  health_timeout: 20s
";

on_both! {
    async fn test_reports_that_are_fifos_or_links_out_are_refused_unread(backend) {
        let repos = Repos::new("");
        repos.pipeline.write("apps/shop/pipeline.yaml", REPORT_TRAPS);
        repos.pipeline.commit("a step whose reports are traps");
        let (app, _port) = start_listening(backend, &repos, |_| {}).await;
        let key = app.data_path().join("secret.key");
        assert!(key.is_file(), "the key the trap points at exists");

        repos.app.checkout_new("feature/traps");
        repos.app.write(
            "traps.sh",
            &format!("mkfifo fifo.xml\nln -s {} key.xml\nln -s / out\necho traps set\n", key.display()),
        );
        let sha = repos.app.commit("reports that are traps");
        scan(&app).await;
        // The run ends: the FIFO was not opened for a blocking read.
        let run = ended_run(&app, &sha).await;
        let log = step_log(&app, &run, "traps").await;
        assert!(log.contains("traps set"), "{log}");
        assert!(log.contains("test report fifo.xml is not a regular file; not read"), "{log}");
        for link in ["key.xml", "out/escape.xml"] {
            assert!(
                log.contains(&format!("test report {link} was not written (or points outside the checkout)"))
                    || log.contains(&format!("test report {link} cannot be opened")),
                "{link}: {log}"
            );
        }
        assert!(!log.contains("tests in"), "nothing was read as a report: {log}");
    }
}

/// The admins' part of the pipeline folder: a Secret manifest, the app's
/// environments, a script marked private — and a script steps may run.
const SEARCHER: &str = "apiVersion: gantry.dev/v1
private: [release/keys.sh]
steps:
  - { name: search, run: \"if [ -f search.sh ]; then sh search.sh; fi\" }
  - deploy
local:
  run: python3 app.py
  health: /healthz
  health_timeout: 20s
";

const SECRET_VALUE: &str = "s3cr3t-manifest-value-9f41c7";

/// A step that searches the whole sandbox for a Secret manifest's value.
/// (A test of the files alone: storage plays no part, one backend will do.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_searching_its_whole_sandbox_finds_no_manifest_and_no_private_file() {
    Box::pin(crate::support::bounded(async {
        let repos = Repos::new("");
        repos.pipeline.write("apps/shop/pipeline.yaml", SEARCHER);
        repos.pipeline.write(
            "apps/shop/deploy/secret.yaml",
            &format!("apiVersion: v1\nkind: Secret\nmetadata: {{ name: db }}\nstringData: {{ password: {SECRET_VALUE} }}\n"),
        );
        repos.pipeline.write("apps/shop/release/keys.sh", &format!("echo {SECRET_VALUE}\n"));
        repos.pipeline.write("apps/shop/scripts/build.sh", "echo building\n");
        repos.pipeline.commit("manifests, a private script and a build script");
        let (app, _port) = start_listening("sqlite", &repos, |_| {}).await;

        repos.app.checkout_new("feature/search");
        repos.app.write(
            "search.sh",
            // The value, assembled at run time so the script is no match.
            &format!(
                "V={}; V=\"${{V}}{}\"\n\
                 find / -xdev \\( -path /proc -o -path /sys \\) -prune -o -type f -print 2>/dev/null \\
                   | xargs grep -l \"$V\" 2>/dev/null | sed 's/^/FOUND /'\n\
                 grep -l \"$V\" /proc/self/environ 2>/dev/null | sed 's/^/FOUND /'\n\
                 echo pipeline: $(cd /pipeline && find . -type f | sort)\n\
                 echo searched\n",
                &SECRET_VALUE[..10],
                &SECRET_VALUE[10..]
            ),
        );
        let sha = repos.app.commit("search everything");
        scan(&app).await;
        let run = ended_run(&app, &sha).await;
        let log = step_log(&app, &run, "search").await;
        assert!(log.contains("searched"), "{log}");
        assert!(!log.contains("FOUND"), "the value was found: {log}");
        assert!(!log.contains(SECRET_VALUE), "{log}");
        assert!(
            log.contains("pipeline: ./pipeline.yaml ./scripts/build.sh"),
            "steps see their scripts and pipeline.yaml only: {log}"
        );
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
    }))
    .await;
}
