//! A real container registry (Debian's `docker-registry`, installed by
//! `./x test`) on a loopback port, asking for HTTP Basic credentials from
//! a bcrypt password file (`htpasswd`).

use std::process::{Child, Command, Stdio};

use super::flow::{MINUTE, wait_for};
use super::process::free_port;

pub const USER: &str = "robot";
pub const PASSWORD: &str = "push-s3cret-for-shop";

/// Stopped when dropped.
pub struct Registry {
    child: Child,
    _data: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub host: String,
}

impl Registry {
    pub async fn start() -> Registry {
        let data = tempfile::tempdir().unwrap();
        let passwords = data.path().join("htpasswd");
        let made = Command::new("htpasswd")
            .args(["-Bbc"])
            .arg(&passwords)
            .args([USER, PASSWORD])
            .stderr(Stdio::null())
            .status()
            .expect("htpasswd (Debian's apache2-utils; `./x test` installs it)");
        assert!(made.success());
        let port = free_port();
        let config = data.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{ level: error }}\nstorage:\n  filesystem: {{ rootdirectory: {} }}\nhttp: {{ addr: \"127.0.0.1:{port}\" }}\nauth:\n  htpasswd: {{ realm: gantry-test, path: {} }}\n",
                data.path().join("store").display(),
                passwords.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package; `./x test` installs it)");
        let registry = Registry {
            child,
            _data: data,
            host: format!("127.0.0.1:{port}"),
        };
        let ping = format!("http://{}/v2/", registry.host);
        wait_for("the registry to answer", MINUTE, || async {
            let status = reqwest::get(&ping).await.ok()?.status();
            (status == reqwest::StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
        registry
    }

    /// `GET /v2/<path>` with the registry's credentials.
    pub async fn get(&self, path: &str, accept: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("http://{}/v2/{path}", self.host))
            .basic_auth(USER, Some(PASSWORD))
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
