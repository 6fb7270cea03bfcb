//! The helper's command line as Gantry uses it: instructions as JSON in
//! the first argument, and a refusal it can read when they are missing or
//! wrong. (Running it for real needs bubblewrap: the server's sandbox tests
//! do that.) Also makes `cargo test --workspace` build the binary the
//! server's tests start.

// Test code panics on purpose when something is not as expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn helper(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gantry-sandbox"))
        .args(args)
        .output()
        .expect("run gantry-sandbox");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn without_instructions_it_refuses_with_the_setup_failed_code() {
    for args in [&[][..], &["not json"][..], &["{\"argv\": 3}"][..]] {
        let (code, stderr) = helper(args);
        assert_eq!(code, gantry_sandbox::SETUP_FAILED, "{args:?}: {stderr}");
        assert!(
            stderr.contains("expected the sandbox instructions as JSON"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn instructions_round_trip_as_the_server_writes_them() {
    let instructions = gantry_sandbox::Instructions {
        argv: vec!["sh".into(), "-c".into(), "true".into()],
        user: Some((61000, 61000)),
        rlimits: vec![gantry_sandbox::Rlimit::Core(0)],
        unreachable: vec!["169.254.0.0/16".into()],
        ..Default::default()
    };
    let text = serde_json::to_string(&instructions).expect("json");
    let read: gantry_sandbox::Instructions = serde_json::from_str(&text).expect("read back");
    assert_eq!(read, instructions);
}
