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
        Registry::serve(None).await
    }

    /// A registry that asks for a bearer token from `TokenService`.
    pub async fn with_tokens() -> (Registry, TokenService) {
        let (tokens, cert) = TokenService::start().await;
        let auth = format!(
            "auth:\n  token: {{ realm: \"{}\", service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {} }}\n",
            tokens.url,
            cert.display()
        );
        (Registry::serve(Some(auth)).await, tokens)
    }

    async fn serve(auth: Option<String>) -> Registry {
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
                "version: 0.1\nlog: {{ level: error }}\nstorage:\n  filesystem: {{ rootdirectory: {} }}\nhttp: {{ addr: \"127.0.0.1:{port}\" }}\n{}",
                data.path().join("store").display(),
                auth.unwrap_or(format!(
                    "auth:\n  htpasswd: {{ realm: gantry-test, path: {} }}\n",
                    passwords.display()
                ))
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

/// A token service as Docker Hub, GHCR or Harbor run one: it checks the
/// robot's password (HTTP Basic) and answers a JWT the registry trusts
/// (RS256, its certificate in `x5c`), granting what was asked. Every
/// request it got is kept, for the test to read.
pub struct TokenService {
    _keys: tempfile::TempDir,
    pub url: String,
    pub asked: Asked,
}

/// Each token request: its `Authorization` header and its query.
pub type Asked = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>;

pub const SERVICE: &str = "gantry-test-registry";
const ISSUER: &str = "gantry-test-issuer";

impl TokenService {
    async fn start() -> (TokenService, std::path::PathBuf) {
        use base64::Engine;
        let keys = tempfile::tempdir().unwrap();
        let (key, cert) = (keys.path().join("key.pem"), keys.path().join("cert.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=gantry-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(made.success());
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl x509");
        let x5c = base64::engine::general_purpose::STANDARD.encode(der.stdout);
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let kept = asked.clone();
        let signing_key = key.clone();
        let router = axum::Router::new().route(
            "/token",
            axum::routing::get(
                move |headers: axum::http::HeaderMap,
                      axum::extract::RawQuery(query): axum::extract::RawQuery| {
                    let kept = kept.clone();
                    let key = signing_key.clone();
                    let x5c = x5c.clone();
                    async move {
                        let basic = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let query = query.unwrap_or_default();
                        kept.lock().unwrap().push((basic.clone(), query.clone()));
                        let expected = format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD
                                .encode(format!("{USER}:{PASSWORD}"))
                        );
                        if basic.as_deref() != Some(expected.as_str()) {
                            return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                        }
                        let scope = url::form_urlencoded::parse(query.as_bytes())
                            .find(|(k, _)| k == "scope")
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default();
                        let mut parts = scope.splitn(3, ':');
                        let (_, name, actions) = (
                            parts.next(),
                            parts.next().unwrap_or(""),
                            parts.next().unwrap_or(""),
                        );
                        let token = sign(&key, &x5c, name, actions);
                        (
                            axum::http::StatusCode::OK,
                            serde_json::json!({ "token": token }).to_string(),
                        )
                    }
                },
            ),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (
            TokenService {
                _keys: keys,
                url,
                asked,
            },
            cert,
        )
    }
}

impl TokenService {
    /// `GET /v2/<path>` of `registry` with a token of this service.
    pub async fn get(&self, registry: &Registry, path: &str, scope: &str) -> reqwest::Response {
        let client = reqwest::Client::new();
        let answer: serde_json::Value = client
            .get(
                url::Url::parse_with_params(&self.url, [("service", SERVICE), ("scope", scope)])
                    .unwrap(),
            )
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        client
            .get(format!("http://{}/v2/{path}", registry.host))
            .bearer_auth(answer["token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
    }
}

/// A JWT the registry accepts: RS256 by `openssl dgst`, the certificate
/// in the header.
fn sign(key: &std::path::Path, x5c: &str, name: &str, actions: &str) -> String {
    use base64::Engine;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [x5c] });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 10, "iat": now, "jti": format!("{now}-{name}"),
        "access": [{ "type": "repository", "name": name, "actions": actions.split(',').collect::<Vec<_>>() }],
    });
    let signed = format!(
        "{}.{}",
        url.encode(header.to_string()),
        url.encode(claims.to_string())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl dgst");
    std::io::Write::write_all(&mut openssl.stdin.take().unwrap(), signed.as_bytes()).unwrap();
    let signature = openssl.wait_with_output().unwrap().stdout;
    format!("{signed}.{}", url.encode(signature))
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
