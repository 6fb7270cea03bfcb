//! A PostgreSQL server of one test's own, made with the installed
//! PostgreSQL's `initdb` and `pg_ctl`: for faults the shared server must
//! not suffer, such as a restart in the middle of the work.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::free_port;

pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// A database `gantry` on it.
    pub url: String,
}

/// Where `initdb` and `pg_ctl` are: the newest installed PostgreSQL.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (./x test installs it)")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").is_file())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect("initdb and pg_ctl")
}

/// `program` as the owner of the server's files: PostgreSQL refuses to run
/// as root, so as root it runs as the `postgres` user.
fn as_owner(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PostgresServer {
    /// A new server on a free loopback port, trusting local connections,
    /// with durability off (a test's data need not survive the machine).
    pub async fn start() -> PostgresServer {
        let dir = tempfile::tempdir().expect("tempdir");
        if nix::unistd::geteuid().is_root() {
            run(
                {
                    let mut chown = Command::new("chown");
                    chown.arg("postgres:").arg(dir.path());
                    chown
                },
                "chown the server's directory",
            );
        }
        let bin = bin_dir();
        let mut initdb = as_owner(&bin.join("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.path().join("data"));
        run(initdb, "initdb");
        let mut server = PostgresServer {
            port: free_port(),
            url: String::new(),
            bin,
            dir,
        };
        server.pg_ctl("start");
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("the new server answers");
        sqlx::Executor::execute(&mut conn, "CREATE DATABASE gantry")
            .await
            .expect("create database");
        let _ = sqlx::Connection::close(conn).await;
        server.url = format!("postgres://postgres@127.0.0.1:{}/gantry", server.port);
        server
    }

    fn pg_ctl(&self, action: &str) {
        let mut pg_ctl = as_owner(&self.bin.join("pg_ctl"));
        pg_ctl
            .arg(action)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-m", "immediate", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port,
                self.dir.path().display()
            ));
        run(pg_ctl, &format!("pg_ctl {action}"));
    }

    /// Stops the server as a crash does (every connection drops, nothing
    /// is shut down cleanly) and starts it again; returns once it accepts
    /// connections.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let mut pg_ctl = as_owner(&self.bin.join("pg_ctl"));
        pg_ctl
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"));
        let _ = pg_ctl.output();
    }
}
