//! The `gantry` binary: version, configuration errors, bad input and
//! signals. Each failure must be one line naming the cause, with a non-zero
//! exit and nothing half-written.

use std::io::{Read, Write};
use std::process::Stdio;

use crate::support::process::{free_port, gantry, run, stderr, wait_until_serving};

fn one_line(text: &str) -> &str {
    let trimmed = text.trim_end();
    assert_eq!(
        trimmed.lines().count(),
        1,
        "expected one line, got:\n{text}"
    );
    trimmed
}

#[test]
fn version_prints_the_package_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = gantry(dir.path());
    command.arg("--version");
    let output = run(command);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("gantry {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn migrate_creates_the_default_data_directory_and_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = gantry(dir.path());
    command.arg("migrate");
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join(".gantry/gantry.db").is_file());
}

#[test]
fn an_unknown_key_in_the_config_file_names_the_key_the_file_and_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("gantry.toml"),
        "[server]\nbind = \"127.0.0.1:3000\"\nbnid = \"x\"\n",
    )
    .expect("write");
    let mut command = gantry(dir.path());
    command.arg("migrate");
    let output = run(command);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    let line = one_line(&message);
    assert!(line.contains("gantry.toml, line 3"), "{line}");
    assert!(line.contains("unknown field `bnid`"), "{line}");
    assert!(!dir.path().join(".gantry").exists(), "nothing created");
}

#[test]
fn a_bad_value_names_the_setting_and_where_it_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = gantry(dir.path());
    command.arg("migrate").env("GANTRY_BIND", "localhost");
    let output = run(command);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    let line = one_line(&message);
    assert!(line.contains("server.bind"), "{line}");
    assert!(line.contains("environment GANTRY_BIND"), "{line}");
    assert!(line.contains("\"localhost\""), "{line}");
}

#[test]
fn a_misspelt_environment_variable_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = gantry(dir.path());
    command.arg("migrate").env("GANTRY_DATA_DIR", "/tmp/x");
    let output = run(command);
    assert_eq!(output.status.code(), Some(2));
    let line = one_line(&stderr(&output)).to_string();
    assert!(
        line.contains("unknown environment variable GANTRY_DATA_DIR"),
        "{line}"
    );
}

#[test]
fn a_data_directory_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data"), "x").expect("write");
    let mut command = gantry(dir.path());
    command.args(["migrate", "--data-dir", "data"]);
    let output = run(command);
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&stderr(&output)).to_string();
    assert!(line.contains("is not a directory"), "{line}");
}

#[test]
fn a_corrupt_database_file_is_refused_and_kept_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let garbage = vec![0x42_u8; 8192];
    std::fs::write(data.join("gantry.db"), &garbage).expect("write");
    let mut command = gantry(dir.path());
    command.args(["migrate", "--data-dir", "data"]);
    let output = run(command);
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&stderr(&output)).to_string();
    assert!(line.contains("is not a SQLite database"), "{line}");
    assert_eq!(
        std::fs::read(data.join("gantry.db")).expect("read"),
        garbage
    );
}

#[test]
fn an_unreachable_database_url_names_the_host_and_hides_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut command = gantry(dir.path());
    command.arg("migrate").env(
        "DATABASE_URL",
        format!("postgres://gantry:hunter2@127.0.0.1:{port}/gantry"),
    );
    let output = run(command);
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&stderr(&output)).to_string();
    assert!(
        line.contains(&format!(
            "cannot connect to PostgreSQL at postgres://gantry:***@127.0.0.1:{port}/gantry"
        )),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
}

#[test]
fn a_port_in_use_is_reported_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address");
    let mut command = gantry(dir.path());
    command.args(["serve", "--bind", &address.to_string()]);
    let output = run(command);
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&stderr(&output)).to_string();
    assert!(
        line.contains(&format!("cannot listen on {address}")),
        "{line}"
    );
    assert!(
        !dir.path().join(".gantry/gantry.db").exists(),
        "no database created"
    );
}

#[test]
fn serve_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = gantry(dir.path())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("GANTRY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until_serving(&mut child, port);

    // A request with a known id: its log line must carry it.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nx-request-id: find-me-7\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    let log = stderr(&output);
    assert!(output.status.success(), "exit {:?}: {log}", output.status);
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.lines()
            .any(|line| line.contains("request_id=find-me-7") && line.contains("/healthz")),
        "the request's log line carries its id: {log}"
    );
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut first = gantry(dir.path())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until_serving(&mut first, port);

    let mut command = gantry(dir.path());
    command.args(["serve", "--bind", &format!("127.0.0.1:{}", free_port())]);
    let output = run(command);
    stop(&mut first);
    assert_eq!(output.status.code(), Some(1));
    let line = one_line(&stderr(&output)).to_string();
    assert!(line.contains("in use by another gantry process"), "{line}");
}

#[test]
fn a_second_server_on_the_same_sqlite_database_is_refused_from_another_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = dir.path().join("shared.db");
    let url = format!("sqlite://{}", database.display());
    let serve = |data: &str, port: u16| {
        let mut command = gantry(dir.path());
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", &dir.path().join(data).display().to_string()])
            .env("DATABASE_URL", &url);
        command
    };
    let port = free_port();
    let mut first = serve("one", port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until_serving(&mut first, port);

    let output = run(serve("two", free_port()));
    let line = one_line(&stderr(&output)).to_string();
    assert_eq!(output.status.code(), Some(1), "{line}");
    assert!(
        line.contains(&format!(
            "the SQLite database {} is in use by another gantry process (pid {})",
            database.display(),
            first.id()
        )) && line.contains("run several replicas on PostgreSQL"),
        "{line}"
    );
    // Once the first is gone the database is free again.
    stop(&mut first);
    let port = free_port();
    let mut second = serve("two", port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until_serving(&mut second, port);
    stop(&mut second);
}

#[test]
fn migrate_works_against_postgresql_from_database_url() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let database = runtime.block_on(crate::support::PostgresDatabase::create());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = gantry(dir.path());
    command.arg("migrate").env("DATABASE_URL", &database.url);
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !dir.path().join(".gantry/gantry.db").exists(),
        "PostgreSQL, not SQLite"
    );
    runtime.block_on(database.drop_now());
}

/// Runs `gantry --public-url <url> <args>` off the async runtime, with
/// `GANTRY_TOKEN` set to `token` (unless empty).
pub async fn gantry_cli(
    dir: &std::path::Path,
    url: &str,
    token: &str,
    args: &[&str],
) -> std::process::Output {
    let (dir, token) = (dir.to_path_buf(), token.to_string());
    let mut all = vec!["--public-url".to_string(), url.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let mut command = gantry(&dir);
        command.args(&all);
        if !token.is_empty() {
            command.env("GANTRY_TOKEN", token);
        }
        run(command)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_commands_and_key_rotation_work_against_the_real_binary() {
    let cluster = kube_emulator::Emulator::start(kube_emulator::Options::default())
        .await
        .expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig("emulated")).expect("write");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let serve = || {
        let mut child = gantry(dir.path())
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                &data_arg,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        wait_until_serving(&mut child, port);
        child
    };
    // The first admin token comes from the command line.
    let created = gantry_cli(
        dir.path(),
        &url,
        "",
        &[
            "token",
            "create",
            "--name",
            "cli",
            "--role",
            "admin",
            "--data-dir",
            &data_arg,
        ],
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let token = String::from_utf8_lossy(&created.stdout).trim().to_string();
    assert!(token.starts_with("gat_"), "{token}");

    let mut server = serve();
    let refused = gantry_cli(dir.path(), &url, "", &["cluster", "list"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("(HTTP 401)"),
        "{}",
        stderr(&refused)
    );

    let kubeconfig_arg = kubeconfig.display().to_string();
    let added = gantry_cli(
        dir.path(),
        &url,
        &token,
        &["cluster", "add", "dev", "--kubeconfig", &kubeconfig_arg],
    )
    .await;
    assert!(added.status.success(), "{}", stderr(&added));
    assert_eq!(
        String::from_utf8_lossy(&added.stdout),
        format!(
            "registered dev\t{}\treachable\tv1.33.0-gantry-emulator\n",
            cluster.url()
        )
    );
    let listed = gantry_cli(dir.path(), &url, &token, &["cluster", "list"]).await;
    assert!(
        String::from_utf8_lossy(&listed.stdout).starts_with("dev\t"),
        "{}",
        stderr(&listed)
    );

    // Rotate the key with Gantry stopped; the cluster still answers after.
    stop(&mut server);
    let before = std::fs::read_to_string(data.join("secret.key")).expect("key");
    let rotated = gantry_cli(
        dir.path(),
        &url,
        &token,
        &["rotate-key", "--data-dir", &data_arg],
    )
    .await;
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    assert_ne!(
        std::fs::read_to_string(data.join("secret.key")).expect("key"),
        before
    );
    assert_eq!(
        std::fs::read_to_string(data.join("secret.previous")).expect("previous"),
        before
    );
    let mut server = serve();
    let checked = gantry_cli(dir.path(), &url, &token, &["cluster", "check", "dev"]).await;
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("\treachable\t"),
        "{}",
        stderr(&checked)
    );
    // Credentials that may not delete namespaces or read events: the check
    // says so, one line each, under the cluster.
    cluster.set_denied(vec![
        kube_emulator::Denied::new("delete", "", "namespaces"),
        kube_emulator::Denied::new("*", "", "events"),
    ]);
    let checked = gantry_cli(dir.path(), &url, &token, &["cluster", "check", "dev"]).await;
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout),
        format!(
            "dev\t{}\treachable\tv1.33.0-gantry-emulator\n  missing permission: delete namespaces (to tear down previews)\n  missing permission: list events (to show why a rollout is stuck)\n",
            cluster.url()
        )
    );

    let removed = gantry_cli(dir.path(), &url, &token, &["cluster", "remove", "dev"]).await;
    assert_eq!(String::from_utf8_lossy(&removed.stdout), "removed dev\n");
    let gone = gantry_cli(dir.path(), &url, &token, &["cluster", "check", "dev"]).await;
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        stderr(&gone).trim(),
        "gantry: error: no cluster named dev (HTTP 404)"
    );
    stop(&mut server);
}

/// Stops a `gantry serve` as a service manager would (SIGTERM), so that it
/// stops the sample app it deployed; a SIGKILL would leave that running.
fn stop(server: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}

// `gantry health FILE --rules DIR`: what a deploy would read of each
// object, with a pipeline repo's CEL and Lua rules, so an admin tests a
// rule before committing it; a rule that does not compile is named with
// its file and line, and one that loops is stopped and says so.
#[test]
fn health_prints_each_objects_verdict_with_the_repos_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("pipeline");
    std::fs::create_dir_all(repo.join("health/example.com/Gadget")).expect("mkdir");
    std::fs::create_dir_all(repo.join("health/example.com/Spinner")).expect("mkdir");
    std::fs::write(
        repo.join("gantry.yaml"),
        "apiVersion: gantry.dev/v1\nhealth:\n  - apiVersion: example.com/v1\n    kind: Widget\n    current: \"status.phase == 'Ready'\"\n    failed: \"status.phase == 'Error'\"\n",
    )
    .expect("write");
    std::fs::write(
        repo.join("health/example.com/Gadget/health.lua"),
        "hs = {}\nif obj.status ~= nil and obj.status.broken then\n  hs.status = \"Degraded\"\n  hs.message = obj.status.reason\n  return hs\nend\nhs.status = \"Healthy\"\nreturn hs\n",
    )
    .expect("write");
    std::fs::write(
        repo.join("health/example.com/Spinner/health.lua"),
        "while true do end\n",
    )
    .expect("write");
    let objects = dir.path().join("objects.yaml");
    std::fs::write(
        &objects,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: { name: ready }\nstatus: { phase: Ready }\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: { name: broken }\nstatus: { phase: Error }\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: { name: g }\nstatus: { broken: true, reason: \"the gear slipped\" }\n---\napiVersion: example.com/v1\nkind: Spinner\nmetadata: { name: s }\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web, generation: 2 }\nspec: { replicas: 2 }\nstatus: { observedGeneration: 1 }\n",
    )
    .expect("write");
    let mut command = gantry(dir.path());
    command
        .arg("health")
        .arg(&objects)
        .arg("--rules")
        .arg(&repo);
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], "Widget/ready: Healthy", "{printed}");
    assert_eq!(
        lines[1], "Widget/broken: Degraded: the health rule's failed expression is true",
        "{printed}"
    );
    assert_eq!(
        lines[2], "Gadget/g: Degraded: the gear slipped",
        "{printed}"
    );
    assert!(
        lines[3].starts_with("Spinner/s: Unknown: the health rule ran past its budget"),
        "{printed}"
    );
    assert_eq!(
        lines[4], "Deployment/web: Progressing: the controller has not seen generation 2 yet",
        "{printed}"
    );

    // A rule that does not compile: named, nothing judged.
    std::fs::write(
        repo.join("health/example.com/Gadget/health.lua"),
        "hs = {}\nif then\n",
    )
    .expect("write");
    let mut command = gantry(dir.path());
    command
        .arg("health")
        .arg(&objects)
        .arg("--rules")
        .arg(&repo);
    let output = run(command);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("health/example.com/Gadget/health.lua, line 2")
            || stderr(&output).contains("health/example.com/Gadget/health.lua:2"),
        "{}",
        stderr(&output)
    );
}
