//! The sandbox on its own: what a hostile script inside sees and reaches.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use gantry::sandbox::{Ending, Limits, Mount, Network, Sandbox, Settings, Spec, Status};
use tokio::io::AsyncReadExt;

pub fn helper() -> PathBuf {
    crate::support::sandbox_helper()
}

fn settings(data: &Path) -> Settings {
    Settings {
        enabled: true,
        user: (65534, 65534),
        uids: (1_500_000_000, 1_500_000_009),
        build_uids: (1_600_000_000, 1_600_131_071),
        helper: helper(),
        read_only: Vec::new(),
        blocked_networks: vec!["192.0.2.0/24".into()],
        private: vec![data.to_path_buf()],
        preview_socket: data.join("run/preview.sock"),
        run_dir: data.join("run"),
        tag: "test".into(),
        relay_port: None,
    }
}

const LIMITS: Limits = Limits {
    memory_bytes: 256 << 20,
    pids: 64,
    cpu_millis: 1000,
    tmp_bytes: 16 << 20,
};

/// Runs `script` in a sandbox with a workspace of its own; its output and exit.
async fn run(
    sandbox: &Sandbox,
    workspace: &Path,
    script: &str,
    network: Network,
) -> (String, gantry::sandbox::Exit) {
    run_with(sandbox, workspace, script, network, Vec::new()).await
}

/// [`run`] with the step's variables `env`.
async fn run_with(
    sandbox: &Sandbox,
    workspace: &Path,
    script: &str,
    network: Network,
    env: Vec<(String, String)>,
) -> (String, gantry::sandbox::Exit) {
    run_as(
        sandbox,
        workspace,
        script,
        (network, false),
        env,
        Vec::new(),
    )
    .await
}

/// [`run_with`], as the image builder when `builder`.
async fn run_as(
    sandbox: &Sandbox,
    workspace: &Path,
    script: &str,
    (network, builder): (Network, bool),
    env: Vec<(String, String)>,
    extra: Vec<Mount>,
) -> (String, gantry::sandbox::Exit) {
    let user = sandbox.lease_user();
    let ids = user.as_ref().map(gantry::sandbox::users::UserLease::ids);
    sandbox.hand_over(workspace, ids).await.expect("hand over");
    let cwd = Mount::writable(workspace, "/workspace");
    let mut sandboxed = sandbox
        .spawn(Spec {
            script: script.into(),
            mounts: std::iter::once(cwd.clone()).chain(extra).collect(),
            cwd,
            env: [("HOME".to_string(), "/workspace".to_string())]
                .into_iter()
                .chain(env)
                .collect(),
            limits: LIMITS,
            network,
            publish: None,
            hosts: Vec::new(),
            user: ids,
            builder,
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        })
        .await
        .expect("the sandbox starts");
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = sandboxed.child.stdout.take().expect("stdout");
    let mut stderr = sandboxed.child.stderr.take().expect("stderr");
    let (a, b) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    a.expect("stdout");
    b.expect("stderr");
    let exit = sandboxed.wait().await.expect("wait");
    sandboxed.finish().await;
    (format!("{out}{err}"), exit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_sees_only_its_workspace_and_the_system() {
    let data = tempfile::tempdir().expect("data dir");
    std::fs::write(data.path().join("secret.key"), "KEY").expect("key");
    let workspace = data.path().join("work/run-1");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let sandbox = Sandbox::start(settings(data.path())).await;
    assert!(
        matches!(sandbox.status(), Status::On { .. }),
        "{:?}",
        sandbox.status()
    );
    let key = data.path().join("secret.key");
    let script = format!(
        "id -u; cat {} || echo no-key; ls /proc | grep -c '^[0-9]'; echo hi > /workspace/f && echo wrote; echo x > /usr/x || echo ro-usr",
        key.display()
    );
    let (output, exit) = run(&sandbox, &workspace, &script, Network::None).await;
    assert_eq!(exit.ending, Ending::Exited(0), "{output}");
    println!("{output}");
    assert!(output.contains("no-key"), "{output}");
    assert!(output.contains("wrote"), "{output}");
    assert!(output.contains("ro-usr"), "{output}");
}

/// Without a working sandbox nothing runs, and the run says why in one
/// line; with sandboxing turned off by an admin, pages say so.
mod refusals {
    use crate::support::flow::{MINUTE, QUICK_STEPS, Repos, start_with, wait_for};

    crate::on_both! {
        async fn no_sandbox_no_steps_and_turned_off_is_said_everywhere(backend) {
            let repos = Repos::new(QUICK_STEPS);
            let broken = start_with(backend, &repos, |config| {
                config.sandbox_helper = "/nonexistent/gantry-sandbox".into();
            })
            .await;
            let run = wait_for("the staging run to fail", MINUTE, || async {
                let runs = broken.get("/api/v1/runs").await.json();
                runs.as_array()?.iter().find(|r| r["state"] == "failed").cloned()
            })
            .await;
            let detail = broken.get(&format!("/api/v1/runs/{}", run["id"])).await.json();
            let error = detail["error"].as_str().unwrap_or_default();
            assert!(error.contains("the sandbox is unavailable"), "{detail}");
            assert!(error.contains("/nonexistent/gantry-sandbox"), "{detail}");
            assert!(!error.contains('\n'), "one line: {error}");

            let off = start_with(backend, &repos, |config| config.sandbox = false).await;
            let run = wait_for("a run without the sandbox", MINUTE, || async {
                let runs = off.get("/api/v1/runs").await.json();
                runs.as_array()?.iter().find(|r| r["state"] == "succeeded").cloned()
            })
            .await;
            let detail = off.get(&format!("/api/v1/runs/{}", run["id"])).await.json();
            let warnings = detail["warnings"].to_string();
            assert!(warnings.contains("sandboxing is off"), "{detail}");
            let settings = off.get("/api/v1/settings").await.json();
            assert!(
                settings["sandbox_warning"].as_str().unwrap_or_default().contains("runner.sandbox"),
                "{settings}"
            );
            let page = off.get(&format!("/runs/{}", run["id"])).await.text();
            assert!(page.contains("isolation-warning"), "the run page shows the banner");
        }
    }
}

/// Tries each network a sandbox must not reach and says how it failed: a
/// `prohibit` route refuses at once (`PermissionError`), where a missing
/// route or a silent network would only time out.
fn egress_script(host_ip: &str, host_port: u16) -> String {
    format!(
        r#"import socket
def attempt(name, host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        print("REACHED", name)
    except Exception as error:
        print("refused", name, type(error).__name__)
attempt("aws-gcp-metadata", "169.254.169.254", 80)
attempt("alibaba-metadata", "100.100.100.200", 80)
attempt("azure-wireserver", "168.63.129.16", 80)
attempt("admin-listed", "192.0.2.7", 80)
attempt("host-own-address", "{host_ip}", {host_port})
print(open("/proc/self/status").read())
"#
    )
}

fn check_egress(output: &str) {
    check_refusals(output);
    // The command holds no capability (the helper's are gone).
    for line in [
        "CapEff:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "CapPrm:\t0000000000000000",
    ] {
        assert!(output.contains(line), "{line}: {output}");
    }
}

/// Nothing blocked was reached, and each attempt was refused at once.
fn check_refusals(output: &str) {
    assert!(!output.contains("REACHED"), "{output}");
    for name in [
        "aws-gcp-metadata",
        "alibaba-metadata",
        "azure-wireserver",
        "admin-listed",
        "host-own-address",
    ] {
        assert!(
            output.contains(&format!("refused {name} PermissionError")),
            "{name}: {output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_of_its_own_reaches_no_blocked_network() {
    let data = tempfile::tempdir().expect("data dir");
    let workspace = data.path().join("work/run-1");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let sandbox = Sandbox::start(settings(data.path())).await;
    let (ip, port) = crate::hostile::host_service();
    std::fs::write(workspace.join("egress.py"), egress_script(&ip, port)).expect("script");
    let (output, exit) = run(&sandbox, &workspace, "python3 egress.py", Network::Isolated).await;
    assert_eq!(exit.ending, Ending::Exited(0), "{output}");
    check_egress(&output);
}

/// The image builder is root of a namespace of its own — what buildah
/// needs — and that buys it nothing of the host: its users are the run's
/// uid and a block of `runner.build_uids`, the system stays read-only and
/// locked, Gantry's files stay hidden, `/sys` is empty, and without the
/// network's capabilities it cannot lift the routes that keep it off the
/// host's addresses and the blocked networks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_builder_is_root_of_its_own_namespace_and_nothing_more() {
    let data = tempfile::tempdir().expect("data dir");
    std::fs::write(data.path().join("secret.key"), "KEY").expect("key");
    let workspace = data.path().join("work/run-1");
    std::fs::create_dir_all(&workspace).expect("workspace");
    // Gantry's config file in an extra read-only path, masked for steps:
    // the builder, which could lift a mask, is not shown the path at all.
    let extra = tempfile::tempdir().expect("extra path");
    let config = extra.path().join("gantry.toml");
    std::fs::write(&config, "CONFIG-SECRET").expect("config");
    // A host file only the host's root may read, where the builder sees
    // it: its root is not that one.
    let system = tempfile::Builder::new()
        .prefix("gantry-builder-test-")
        .tempdir_in("/usr/local/share")
        .expect("a folder under /usr");
    let root_only = system.path().join("root-only");
    std::fs::write(&root_only, "ROOT-ONLY").expect("root-only file");
    std::fs::set_permissions(
        &root_only,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let mut settings = settings(data.path());
    settings.read_only = vec![extra.path().to_path_buf()];
    settings.private.push(config.clone());
    let sandbox = Sandbox::start(settings).await;
    let key = data.path().join("secret.key");
    let script = format!(
        "id -u; cat /proc/self/uid_map; \
         cat {root_only} 2>/dev/null || echo not-host-root; \
         umount -l {config} 2>/dev/null; cat {config} 2>/dev/null || echo no-config; \
         cat {key} 2>/dev/null || echo no-key; \
         echo x > /usr/x 2>/dev/null && echo WROTE-USR || echo ro-usr; \
         mount -o remount,rw /usr 2>/dev/null && echo REMOUNTED-USR || echo usr-stays-ro; \
         mount -o remount,bind,rw /usr 2>/dev/null; echo x > /usr/bin/x 2>/dev/null && echo WROTE-USR-BIN || echo usr-files-are-not-its; \
         echo sys-entries $(ls -A /sys | wc -l); \
         ip route flush type prohibit 2>/dev/null && echo FLUSHED || echo routes-kept; \
         ip route show type prohibit | grep -c 192.0.2.0 ; \
         touch /workspace/mine && touch /workspace/theirs && chown 1234:1234 /workspace/theirs && echo chowned; \
         mount -o remount,bind,rw /pipeline 2>/dev/null; echo x > /pipeline/planted 2>/dev/null && echo WROTE-PIPELINE || echo pipeline-stays-ro; \
         mount -o remount,bind,rw /pipeline/sub 2>/dev/null; echo x > /pipeline/sub/planted 2>/dev/null && echo WROTE-SUBMOUNT || echo submount-stays-ro; \
         mount -o remount,bind,rw /usr 2>/dev/null && echo REMOUNTED-USR-RW || echo usr-locked-ro; \
         python3 egress.py",
        root_only = root_only.display(),
        config = config.display(),
        key = key.display()
    );
    let (ip, port) = crate::hostile::host_service();
    std::fs::write(workspace.join("egress.py"), egress_script(&ip, port)).expect("script");
    // A read-only mount the build could write were it not read-only (as
    // the pipeline folder, which is the run's uid's).
    let pipeline = data.path().join("work/pipeline");
    std::fs::create_dir_all(pipeline.join("sub")).expect("pipeline");
    std::fs::set_permissions(
        &pipeline,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    // A mount of its own under it (as `/usr/local` may be), writable by
    // anyone: only the lock keeps the build out.
    let sub = pipeline.join("sub");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0777,size=1m", "gantry-test"])
        .arg(&sub)
        .status()
        .expect("mount");
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(sub.clone());
    let (output, exit) = run_as(
        &sandbox,
        &workspace,
        &script,
        (Network::Isolated, true),
        Vec::new(),
        vec![Mount::read_only(&pipeline, "/pipeline")],
    )
    .await;
    println!("{output}");
    assert_eq!(exit.ending, Ending::Exited(0), "{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], "0", "root of its namespace: {output}");
    for expected in [
        "no-key",
        "ro-usr",
        "not-host-root",
        "usr-stays-ro",
        "usr-files-are-not-its",
        "no-config",
        "pipeline-stays-ro",
        "submount-stays-ro",
        "usr-locked-ro",
        "sys-entries 0",
        "routes-kept",
        "chowned",
    ] {
        assert!(output.contains(expected), "{expected}: {output}");
    }
    // Its root is the run's uid, its other users a block of build uids.
    use std::os::unix::fs::MetadataExt;
    let mine = std::fs::metadata(workspace.join("mine"))
        .expect("mine")
        .uid();
    assert!((1_500_000_000..=1_500_000_009).contains(&mine), "{mine}");
    let theirs = std::fs::metadata(workspace.join("theirs"))
        .expect("theirs")
        .uid();
    assert!(
        (1_600_000_000..=1_600_131_071).contains(&theirs),
        "uid 1234 inside is {theirs} outside"
    );
    assert!(!output.contains("CONFIG-SECRET"), "{output}");
    check_refusals(&output);
}

/// The same without root: Gantry run by an ordinary user (this test's body
/// runs again in a child process as uid 65534).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_root_a_network_of_its_own_reaches_no_blocked_network() {
    const AS_NOBODY: &str = "GANTRY_TEST_AS_NOBODY";
    let (ip, port) = match std::env::var(AS_NOBODY) {
        Ok(target) => {
            let (ip, port) = target.split_once(' ').expect("ip port");
            (ip.to_string(), port.parse::<u16>().expect("port"))
        }
        Err(_) => {
            let (ip, port) = crate::hostile::host_service();
            // As on Debian: anyone may open the tun device (slirp4netns
            // does, for a rootless network). This machine's is root's only.
            let tun = std::path::Path::new("/dev/net/tun");
            let mode = std::fs::metadata(tun).expect("/dev/net/tun").permissions();
            std::fs::set_permissions(tun, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .expect("chmod");
            let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--exact",
                    "sandbox::without_root_a_network_of_its_own_reaches_no_blocked_network",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(AS_NOBODY, format!("{ip} {port}"))
                .env("HOME", "/tmp")
                .uid(65534)
                .gid(65534)
                .output()
                .expect("the test as nobody");
            std::fs::set_permissions(tun, mode).expect("restore");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&child.stdout),
                String::from_utf8_lossy(&child.stderr)
            );
            assert!(child.status.success(), "as nobody: {text}");
            assert!(text.contains("checked as uid 65534"), "{text}");
            return;
        }
    };
    assert!(!nix::unistd::Uid::effective().is_root());
    let data = tempfile::tempdir().expect("data dir");
    let workspace = data.path().join("work/run-1");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let sandbox = Sandbox::start(settings(data.path())).await;
    assert!(
        matches!(sandbox.status(), Status::On { network: None, .. }),
        "{:?}",
        sandbox.status()
    );
    std::fs::write(workspace.join("egress.py"), egress_script(&ip, port)).expect("script");
    let (output, exit) = run(&sandbox, &workspace, "python3 egress.py", Network::Isolated).await;
    assert_eq!(exit.ending, Ending::Exited(0), "{output}");
    check_egress(&output);
    println!("checked as uid {}", nix::unistd::Uid::effective());
}

/// The cgroup v2 path against a real v2 hierarchy, mounted by the test: on
/// a pure v2 kernel, a delegated group with its controllers; on a hybrid
/// one like these machines (memory, pids and cpu bound to v1), the refusal
/// names what the group is not delegated.
#[tokio::test]
async fn a_real_cgroup_v2_hierarchy_is_delegated_or_refused_with_what_it_lacks() {
    let mount = tempfile::tempdir().expect("mount point");
    nix::mount::mount(
        Some("none"),
        mount.path(),
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount cgroup2 (the tests run as root)");
    let own = mount
        .path()
        .join(format!("gantry-test-{}", std::process::id()));
    std::fs::create_dir(&own).expect("a group of the test's own");
    let available =
        std::fs::read_to_string(mount.path().join("cgroup.controllers")).expect("controllers");
    let wanted = ["memory", "pids", "cpu"];
    if wanted
        .iter()
        .all(|c| available.split_whitespace().any(|a| a == *c))
    {
        std::fs::write(
            mount.path().join("cgroup.subtree_control"),
            "+memory +pids +cpu",
        )
        .expect("enable");
        let parent = gantry::sandbox::cgroup::CgroupParent::delegate(&own).expect("delegated");
        assert_eq!(parent.describe(), "cgroup v2");
        let limits = Limits {
            memory_bytes: 64 << 20,
            pids: 32,
            cpu_millis: 500,
            tmp_bytes: 0,
        };
        drop(parent.child("s1", &limits).expect("a sandbox's group"));
    } else {
        let error = gantry::sandbox::cgroup::CgroupParent::delegate(&own)
            .expect_err("not delegated")
            .0;
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|c| !available.split_whitespace().any(|a| a == *c))
            .collect();
        assert!(error.contains(&missing.join(", ")), "{error} ({available})");
    }
    let _ = std::fs::remove_dir(own.join("sandboxes"));
    let _ = std::fs::remove_dir(own.join("gantry"));
    let _ = std::fs::remove_dir(&own);
    nix::mount::umount(mount.path()).expect("unmount");
}

/// Each sandbox runs as a uid of its own from `runner.uids` (Gantry as
/// root): per-user kernel limits are never shared between two of them, and
/// each finds itself in its `/etc/passwd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sandboxes_at_once_run_as_two_uids_of_the_range() {
    let data = tempfile::tempdir().expect("data dir");
    let sandbox = Sandbox::start(settings(data.path())).await;
    let script = "id -u; id -un; stat -c %u /workspace; sleep 1";
    let (first, second) = (data.path().join("work/a"), data.path().join("work/b"));
    std::fs::create_dir_all(&first).expect("a");
    std::fs::create_dir_all(&second).expect("b");
    let ((a, _), (b, _)) = tokio::join!(
        run(&sandbox, &first, script, Network::None),
        run(&sandbox, &second, script, Network::None)
    );
    let uid = |output: &str| {
        output
            .lines()
            .next()
            .unwrap_or_default()
            .parse::<u32>()
            .expect(output)
    };
    let (ua, ub) = (uid(&a), uid(&b));
    assert_ne!(ua, ub, "{a} / {b}");
    for (output, uid) in [(&a, ua), (&b, ub)] {
        assert!((1_500_000_000..=1_500_000_009).contains(&uid), "{output}");
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.get(1), Some(&"gantry"), "{output}");
        assert_eq!(
            lines.get(2),
            Some(&uid.to_string().as_str()),
            "its workspace is its: {output}"
        );
    }
}

/// A step's variables are its command's only: a `LD_PRELOAD` an admin's
/// pipeline.yaml sets (to a library a developer's checkout holds, at its
/// predictable host path) never reaches bubblewrap or the helper, which
/// run on the host before the sandbox exists — as root, when Gantry is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_variable_never_reaches_the_processes_that_build_the_sandbox() {
    let data = tempfile::tempdir().expect("data dir");
    let workspace = data.path().join("work/run-1");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let marker = data.path().join("loaded-on-the-host");
    let source = workspace.join("evil.c");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void evil(void) {{ FILE *f = fopen(\"{}\", \"a\"); if (f) {{ fputs(\"loaded\\n\", f); fclose(f); }} }}\n",
            marker.display()
        ),
    )
    .expect("source");
    let library = workspace.join("evil.so");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("cc (./x installs gcc)");
    assert!(built.success());
    // The library does load where it can: a process on the host.
    let control = std::process::Command::new("true")
        .env("LD_PRELOAD", &library)
        .status()
        .expect("true");
    assert!(
        control.success() && marker.exists(),
        "the control case loads it"
    );
    std::fs::remove_file(&marker).expect("reset");

    let sandbox = Sandbox::start(settings(data.path())).await;
    let (out, exit) = run_with(
        &sandbox,
        &workspace,
        "echo ran",
        Network::Isolated,
        vec![("LD_PRELOAD".into(), library.display().to_string())],
    )
    .await;
    assert_eq!(exit.ending, Ending::Exited(0), "{out}");
    assert!(out.contains("ran"), "{out}");
    assert!(!marker.exists(), "the step's LD_PRELOAD ran on the host");
}
