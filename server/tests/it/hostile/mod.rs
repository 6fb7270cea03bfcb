//! The hostile-developer suite: what a developer's code (a step, a local
//! app, a preview, a fork) tries in order to get at what only admins have,
//! and fails to do. Each test failed on the main branch before the sandbox
//! and the origin split (issue 14).

mod approvals;
mod credentials;
mod forks;
mod local_apps;
mod masking;
mod previews;
mod scopes;
mod steps;

use std::path::Path;

/// A Python program that tries every door and prints one line per try:
/// `blocked <what>: <why>` or `ESCAPED <what>` (which a test refuses).
pub fn attack_program(data: &Path, gantry_pid: u32, gantry_port: u16) -> String {
    let data = data.display();
    let (host_ip, host_port) = host_service();
    format!(
        r#"import os, socket, sys, urllib.request
DATA = "{data}"
def attempt(name, action):
    try:
        result = action()
        print(f"ESCAPED {{name}}: {{str(result)[:80]!r}}")
    except Exception as error:
        print(f"blocked {{name}}: {{type(error).__name__}}")
def connect(host, port):
    with socket.create_connection((host, port), timeout=3):
        return "connected"
def api():
    with urllib.request.urlopen("http://127.0.0.1:{gantry_port}/api/v1/runs", timeout=5) as answer:
        return answer.read()
attempt("secret key", lambda: open(DATA + "/secret.key", "rb").read())
attempt("database", lambda: open(DATA + "/gantry.db", "rb").read(16))
attempt("sessions", lambda: os.listdir(DATA))
attempt("git mirrors", lambda: os.listdir(DATA + "/git"))
attempt("other workspaces", lambda: os.listdir(DATA + "/work"))
attempt("gantry environ", lambda: open("/proc/{gantry_pid}/environ", "rb").read())
attempt("signal gantry", lambda: os.kill({gantry_pid}, 0))
attempt("write outside", lambda: open("/escaped", "w").write("x"))
attempt("write the pipeline folder", lambda: open("/pipeline/escaped", "w").write("x"))
attempt("write system", lambda: open("/usr/escaped", "w").write("x"))
attempt("postgres on loopback", lambda: connect("127.0.0.1", 5432))
attempt("postgres through the gateway", lambda: connect("10.0.2.2", 5432))
attempt("gantry api", api)
attempt("a host service on its own address", lambda: connect("{host_ip}", {host_port}))
attempt("cloud metadata", lambda: connect("169.254.169.254", 80))
attempt("the pipeline repo", lambda: open("/pipeline/../other-secrets.txt").read())
def ptrace():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, {gantry_pid}, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "ptrace refused")
    return "attached"
attempt("ptrace gantry", ptrace)
print("uid", os.getuid())
print("pipeline", sorted(os.listdir(os.environ.get("GANTRY_PIPELINE_DIR", "/pipeline"))))
"#
    )
}

/// A service the host offers on every address (as `0.0.0.0` binds do), at
/// the host's own non-loopback address: through slirp4netns a sandbox would
/// reach it from the host itself. It accepts until the test process ends.
pub fn host_service() -> (String, u16) {
    static SERVICE: std::sync::OnceLock<(String, u16)> = std::sync::OnceLock::new();
    SERVICE
        .get_or_init(|| {
            let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
            let port = listener.local_addr().expect("address").port();
            std::thread::spawn(move || for _ in listener.incoming() {});
            let ip = nix::ifaddrs::getifaddrs()
                .expect("interfaces")
                .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
                .find(|ip| !ip.is_loopback())
                .expect("a non-loopback IPv4 address");
            (ip.to_string(), port)
        })
        .clone()
}

/// The lines of an attack's output that say something escaped.
pub fn escapes(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("ESCAPED"))
        .collect()
}
