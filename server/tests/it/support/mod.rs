//! `TestApp`: the real router, in-process, over a fresh database — a SQLite
//! file in a temp dir, or a PostgreSQL database created for the test and
//! dropped after it. `on_both!` runs one test body against each.

pub mod database_link;
pub mod flow;
pub mod git;
pub mod postgres_server;
pub mod process;
pub mod prometheus;
pub mod receiver;
pub mod registry;
pub mod remote;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use gantry::config::{Config, DatabaseTarget, Flags};
use gantry::db::Db;
use gantry::{App, AppState};
use sqlx::{Connection, Executor};
use tempfile::TempDir;
use tower::ServiceExt;

/// Where tests find PostgreSQL; `./x test` makes sure one answers there.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_string())
}

/// Runs each test body once on SQLite and once on PostgreSQL, as
/// `<name>::sqlite` and `<name>::postgres` — the one macro for both
/// backends. A body takes either a fresh `TestApp` (`async fn t(app:
/// TestApp)`) or the backend's name, to start Gantry its own way (`async fn
/// t(backend)`, e.g. with `support::flow::start`).
#[macro_export]
macro_rules! on_both {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($app: $crate::support::TestApp) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::support::bounded(body($crate::support::TestApp::sqlite().await)).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::support::bounded(body($crate::support::TestApp::postgres().await)).await
                }
            }
        )*
    };
    ($(async fn $name:ident($backend:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn body($backend: &'static str) $body
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() { $crate::support::bounded(body("sqlite")).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() { $crate::support::bounded(body("postgres")).await }
            }
        )*
    };
}

/// Fails a test that takes longer than four minutes instead of letting it
/// hang the whole suite.
pub async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    if tokio::time::timeout(std::time::Duration::from_secs(240), body)
        .await
        .is_err()
    {
        panic!("the test did not finish within 4 minutes");
    }
}

pub struct TestApp {
    pub state: AppState,
    router: Router,
    /// An admin API token, sent with every request unless it has its own
    /// `Authorization` (or is sent with `request_as(None, ..)`).
    pub admin_token: String,
    _data_dir: TempDir,
    postgres: Option<PostgresDatabase>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// A response read to the end.
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

impl TestApp {
    pub async fn sqlite() -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let database = DatabaseTarget::Sqlite(data_dir.path().join("gantry.db"));
        TestApp::start(data_dir, database, None).await
    }

    pub async fn postgres() -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let database = PostgresDatabase::create().await;
        let target = DatabaseTarget::Postgres(database.url.clone());
        TestApp::start(data_dir, target, Some(database)).await
    }

    /// A database of the given backend, configured by `configure`.
    pub async fn with_config(backend: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let (database, postgres) = if backend == "postgres" {
            let database = PostgresDatabase::create().await;
            (
                DatabaseTarget::Postgres(database.url.clone()),
                Some(database),
            )
        } else {
            (
                DatabaseTarget::Sqlite(data_dir.path().join("gantry.db")),
                None,
            )
        };
        let mut config = test_config(data_dir.path(), database);
        configure(&mut config);
        // Boxed: the configuration and the app's start are large, and every
        // test's future would carry them.
        Box::pin(TestApp::boot(data_dir, config, postgres)).await
    }

    async fn start(
        data_dir: TempDir,
        database: DatabaseTarget,
        postgres: Option<PostgresDatabase>,
    ) -> TestApp {
        let config = test_config(data_dir.path(), database);
        Box::pin(TestApp::boot(data_dir, config, postgres)).await
    }

    async fn boot(
        data_dir: TempDir,
        config: Config,
        postgres: Option<PostgresDatabase>,
    ) -> TestApp {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        capture_logs();
        let app = App::start(config).await.expect("the app starts");
        let state = AppState::new(Arc::new(app));
        let router = gantry::http::build_app(state.clone());
        let admin_token = token_for(&state, "test-admin", app::dto::Role::Admin, None).await;
        TestApp {
            state,
            router,
            admin_token,
            _data_dir: data_dir,
            postgres,
            background: Vec::new(),
        }
    }

    /// Starts watching, planning and running, as `gantry serve` does.
    pub async fn start_flow(&mut self) {
        self.background = gantry::http::start(&self.state)
            .await
            .expect("background starts");
    }

    /// Serves the router on a real TCP listener too (for what only a port
    /// shows: a sandboxed step trying to reach Gantry, a browser).
    pub fn serve_tcp(&mut self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let router = self.router.clone();
        self.background.push(tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await;
        }));
    }

    /// Stops the loops and every local process.
    pub async fn stop(&mut self) {
        self.state.stop().await;
        for task in self.background.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
    }

    pub fn data_path(&self) -> &Path {
        self._data_dir.path()
    }

    /// One text column of one row, for assertions on what is stored.
    pub async fn db_value(&self, sql: &str, bind: &str) -> String {
        sqlx::query_scalar::<_, Option<String>>(sql)
            .bind(bind)
            .fetch_one(self.db().pool())
            .await
            .expect("query")
            .unwrap_or_default()
    }

    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// An API token for a user `name` with `role` (on `app`, or all).
    pub async fn token(&self, name: &str, role: app::dto::Role, app: Option<&str>) -> String {
        token_for(&self.state, name, role, app).await
    }

    /// Makes `name` (a user of [`TestApp::token`]) the person who signs in
    /// as forge account `login` with e-mail `email` — what a sign-in sets
    /// through `auth.forge_login_claim`.
    pub async fn forge_account(&self, name: &str, login: &str, email: &str) {
        let user =
            gantry::auth::upsert_user(&self.state.db, "gantry-test", name, name, Some(email))
                .await
                .expect("user");
        gantry::auth::set_forge_login(&self.state.db, user, Some(login))
            .await
            .expect("forge login");
    }

    /// Signs `name` in with the dev login (which the test config must
    /// enable), as a browser would: a session cookie and its CSRF token.
    pub async fn sign_in(&self, name: &str, role: &str) -> Browser {
        let response = self.dev_login(name, role, "%2F", None).await;
        assert_eq!(response.status, 303, "dev login: {}", response.text());
        let cookie = response
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_string();
        let me = self
            .request_as(
                None,
                Request::get("/api/v1/me")
                    .header("cookie", &cookie)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(me.status, 200, "{}", me.text());
        Browser {
            csrf: me.json()["csrf"].as_str().expect("csrf").to_string(),
            cookie,
        }
    }

    /// The dev login as a browser does it: the form first (a session
    /// cookie and the form's token), then the post (`return_to` as sent,
    /// URL-encoded). `cookie`: a session the browser already had.
    pub async fn dev_login(
        &self,
        name: &str,
        role: &str,
        return_to: &str,
        cookie: Option<&str>,
    ) -> TestResponse {
        let mut form = Request::get("/auth/dev");
        if let Some(cookie) = cookie {
            form = form.header("cookie", cookie);
        }
        let form = self
            .request_as(None, form.body(Body::empty()).expect("request"))
            .await;
        assert_eq!(form.status, 200, "the dev login form: {}", form.text());
        let session = form
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .map(str::to_string)
            .or_else(|| cookie.map(str::to_string))
            .expect("a session for the form");
        let csrf = dev_login_token(&form.text());
        let request = Request::post("/auth/dev")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", session)
            .body(Body::from(format!(
                "name={name}&role={role}&return_to={return_to}&csrf={csrf}"
            )))
            .expect("request");
        self.request_as(None, request).await
    }

    /// A JSON POST with the browser's cookie and CSRF header.
    pub async fn post_as_browser(
        &self,
        browser: &Browser,
        path: &str,
        body: serde_json::Value,
    ) -> TestResponse {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .header("cookie", &browser.cookie)
            .header("x-csrf-token", &browser.csrf)
            .body(Body::from(body.to_string()))
            .expect("request");
        self.request_as(None, request).await
    }

    /// A JSON POST with an API token.
    pub async fn post_as(&self, token: &str, path: &str, body: serde_json::Value) -> TestResponse {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.request_as(Some(token), request).await
    }

    /// A GET with an API token.
    pub async fn get_as(&self, token: &str, path: &str) -> TestResponse {
        let request = Request::get(path).body(Body::empty()).expect("request");
        self.request_as(Some(token), request).await
    }

    /// Sends `request` with `token` as the bearer, or with no credentials.
    pub async fn request_as(
        &self,
        token: Option<&str>,
        mut request: Request<Body>,
    ) -> TestResponse {
        request.headers_mut().remove("authorization");
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        self.send(request).await
    }

    pub async fn request(&self, mut request: Request<Body>) -> TestResponse {
        if !request.headers().contains_key("authorization") {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {}", self.admin_token)
                    .parse()
                    .expect("header"),
            );
        }
        self.send(request).await
    }

    /// The body of an event stream at `path` (as the admin), read as it
    /// comes.
    pub async fn stream(&self, path: &str) -> axum::body::BodyDataStream {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {}", self.admin_token))
            .body(Body::empty())
            .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.into_body().into_data_stream()
    }

    /// The status of `request` sent with `token` (or none), without reading
    /// the body (which may be an endless event stream).
    pub async fn status_as(&self, token: Option<&str>, mut request: Request<Body>) -> StatusCode {
        request.headers_mut().remove("authorization");
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible router")
            .status()
    }

    async fn send(&self, request: Request<Body>) -> TestResponse {
        // No single request may take the test's whole time: one that hangs
        // fails here, naming itself.
        let what = format!("{} {}", request.method(), request.uri());
        let answer = async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible router");
            let status = response.status();
            let headers = response.headers().clone();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            (status, headers, body)
        };
        let (status, headers, body) =
            tokio::time::timeout(std::time::Duration::from_secs(90), answer)
                .await
                .unwrap_or_else(|_| panic!("{what} did not answer within 90 s"));
        match body {
            Ok(body) => TestResponse {
                status,
                headers,
                body: body.to_vec(),
            },
            // A proxied app that stops mid-answer (a preview torn down while
            // a test polls it) cuts the body short: what a client would see
            // as a bad gateway, not a reason to abort the test.
            Err(error) => TestResponse {
                status: StatusCode::BAD_GATEWAY,
                headers,
                body: format!("body cut short: {error}").into_bytes(),
            },
        }
    }

    /// A request with a Host header (for the environment proxy).
    pub async fn get_host(&self, host: &str, path: &str) -> TestResponse {
        self.request(
            Request::get(path)
                .header("host", host)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> TestResponse {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.request(request).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Request::get(path).body(Body::empty()).expect("request"))
            .await
    }

    /// Calls a Leptos server function the way the browser does.
    pub async fn server_fn(&self, name: &str) -> TestResponse {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("/fn/{name}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(Body::empty())
            .expect("request");
        self.request(request).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Whatever a failing test left running must not outlive it.
        self.state.replica.shutdown.cancel();
        gantry::jobs::recovery::kill_orphans(&self.state.instance_tag);
        if let Some(database) = self.postgres.take() {
            // Drop cannot await, and the test's runtime may be the one
            // blocked here: a fresh runtime on another thread drops the
            // database with FORCE, which ends the pool's connections
            // without waiting for them.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(async move {
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(30),
                            database.drop_now(),
                        )
                        .await;
                    });
                }
            })
            .join();
        }
    }
}

/// A signed-in browser: its session cookie (`name=value`) and CSRF token.
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

/// Creates (or reuses) the user `name` and gives them an API token.
pub async fn token_for(
    state: &AppState,
    name: &str,
    role: app::dto::Role,
    app: Option<&str>,
) -> String {
    let user = gantry::auth::upsert_user(&state.db, "gantry-test", name, name, None)
        .await
        .expect("user");
    // A token holds at most its owner's grants: the owner gets the role.
    let grant = app::dto::Grant {
        role,
        app: app.map(str::to_string),
    };
    gantry::auth::add_grant(&state.db, user, "test", &grant)
        .await
        .expect("grant");
    let (_, token, _) = gantry::auth::tokens::mint(
        &state.db,
        user,
        &format!("{name} token"),
        role,
        app,
        3_600_000,
    )
    .await
    .expect("token");
    token
}

/// Gantry's logs, with the time since the test binary started, into the
/// output of the test that caused them: the test harness shows it only when
/// that test fails, so a timed-out flow tells what it was doing.
/// `GANTRY_TEST_LOG` overrides the filter.
fn capture_logs() {
    let filter = std::env::var("GANTRY_TEST_LOG").unwrap_or_else(|_| "info,gantry=debug".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// The sandbox helper, where cargo builds it: next to the gantry binary.
/// It is a crate of its own (`gantry-sandbox`), built by `cargo test
/// --workspace` (`./x test`) for its own tests.
pub fn sandbox_helper() -> PathBuf {
    let helper = Path::new(env!("CARGO_BIN_EXE_gantry")).with_file_name("gantry-sandbox");
    assert!(
        helper.is_file(),
        "{} is missing: build it with `cargo build -p gantry-sandbox` (./x test does)",
        helper.display()
    );
    helper
}

pub fn test_config(data_dir: &Path, database: DatabaseTarget) -> Config {
    let flags = Flags {
        data_dir: Some(data_dir.to_path_buf()),
        bind: Some("127.0.0.1:0".parse().expect("address")),
        ..Flags::default()
    };
    let mut config = Config::resolve(&flags, &[]).expect("test config resolves");
    config.database = database;
    // The test binary is not next to the helper; gantry is.
    config.sandbox_helper = crate::support::sandbox_helper();
    config.helm_path = helm();
    config
}

/// The real helm `./x` installs into `.tools/bin` (or `$HELM`).
pub fn helm() -> PathBuf {
    std::env::var_os("HELM").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/helm"),
        PathBuf::from,
    )
}

/// A database of its own for one test, on the shared PostgreSQL server.
pub struct PostgresDatabase {
    pub url: String,
    name: String,
}

impl PostgresDatabase {
    pub async fn create() -> PostgresDatabase {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        sqlx::any::install_default_drivers();
        let name = format!(
            "gantry_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let admin = postgres_admin_url();
        let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is required for the tests and is not reachable at {admin}: {error}. \
                 Run the tests with ./x test, which starts it, or set TEST_POSTGRES_URL."
            )
        });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let (base, _) = admin
            .rsplit_once('/')
            .expect("the admin URL names a database");
        PostgresDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub async fn drop_now(self) {
        if let Ok(mut conn) = sqlx::AnyConnection::connect(&postgres_admin_url()).await {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
                .await;
            let _ = conn.close().await;
        }
    }
}

/// The token in a dev login form's page.
pub fn dev_login_token(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's token")
        .to_string()
}
