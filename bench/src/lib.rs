//! Shared helpers of the benchmark programs: percentiles and printing, git
//! repositories, and a real `gantry serve` to measure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Runs git in `dir`; its trimmed output.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A fresh working repository on `master`.
pub fn init_work(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    git(dir, &["init", "-q", "-b", "master"])?;
    git(dir, &["config", "user.name", "Bench"])?;
    git(dir, &["config", "user.email", "bench@example.com"])?;
    Ok(())
}

/// A pipeline repo in `pipeline` (initialised and committed) with one app,
/// `shop`, from `source`: `staging` follows `latest` on the local target,
/// with the given `steps:` list (YAML, one item per line).
pub fn staging_pipeline(pipeline: &Path, source: &Path, steps: &str) -> anyhow::Result<()> {
    init_work(pipeline)?;
    std::fs::create_dir_all(pipeline.join("apps/shop"))?;
    std::fs::write(
        pipeline.join("apps/shop/app.yaml"),
        format!(
            "apiVersion: gantry.dev/v1\nsource: {}\nstack:\n  - env: staging\n    branch: latest\n    target: local\n",
            source.display()
        ),
    )?;
    std::fs::write(
        pipeline.join("apps/shop/pipeline.yaml"),
        format!("apiVersion: gantry.dev/v1\nsteps:\n{steps}"),
    )?;
    commit(pipeline, "shop")?;
    Ok(())
}

/// Commits everything in `dir`; the new commit.
pub fn commit(dir: &Path, message: &str) -> anyhow::Result<String> {
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "--allow-empty", "-m", message])?;
    git(dir, &["rev-parse", "HEAD"])
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A real `gantry serve`, stopped when dropped.
pub struct Gantry {
    child: Child,
    pub base: String,
    pub token: String,
}

impl Gantry {
    /// Creates an admin token in `data`, then serves with `args` added
    /// (e.g. `--pipeline-repo`, `--database-url`).
    pub async fn start(binary: &str, data: &Path, args: &[&str]) -> anyhow::Result<Gantry> {
        Gantry::start_with_env(binary, data, args, &[]).await
    }

    /// [`Gantry::start`] with environment variables set for the server
    /// (they win over the benchmark defaults).
    pub async fn start_with_env(
        binary: &str,
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Gantry> {
        let data_arg = data.display().to_string();
        // The flags are global: the token goes into the same database.
        let created = Command::new(binary)
            .args([
                "token",
                "create",
                "--name",
                "bench",
                "--data-dir",
                &data_arg,
            ])
            .args(args)
            .env("GANTRY_LOG", "warn")
            .output()
            .context("creating a token")?;
        if !created.status.success() {
            bail!("token create: {}", String::from_utf8_lossy(&created.stderr));
        }
        let token = String::from_utf8_lossy(&created.stdout).trim().to_string();
        let port = free_port()?;
        let bind = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["serve", "--bind", &bind, "--data-dir", &data_arg])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GANTRY_LOG", "warn")
            .env("GANTRY_POLL_INTERVAL", "1s")
            // Build pods reach this server at its own address.
            .env("GANTRY_BUILDS_CALLBACK_URL", format!("http://{bind}/"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .context("starting gantry")?;
        let gantry = Gantry {
            child,
            base: format!("http://{bind}"),
            token,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !client
            .get(format!("{}/readyz", gantry.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("gantry did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(gantry)
    }

    /// A request to the API as the admin.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
    }
}

impl Gantry {
    /// Its process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL, as a crash (or a lost machine) does.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gantry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops a `gantry serve` as an operator would (SIGTERM), so it stops the
/// local apps it runs: with `runner.sandbox = "none"` they are not in a
/// sandbox that dies with Gantry, and a SIGKILL would leave them running.
/// SIGKILL only if it has not stopped within 20 s.
pub fn stop(child: &mut std::process::Child) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    for _ in 0..200 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `check` every 10 ms until it gives a value, for at most `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `p`-th percentile (0–100) of `values`, nearest-rank.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// `| name | p50 | p95 |` in milliseconds.
pub fn row(name: &str, values: &[f64]) -> String {
    format!(
        "| {name} | {:.0} | {:.0} |",
        percentile(values, 50.0),
        percentile(values, 95.0)
    )
}

/// Applies Gantry's migrations to `url` with the real binary, so a
/// benchmark can seed the tables before the server starts.
pub fn migrate(binary: &str, data: &Path, url: &str) -> anyhow::Result<()> {
    let migrated = Command::new(binary)
        .args([
            "migrate",
            "--data-dir",
            &data.display().to_string(),
            "--database-url",
            url,
        ])
        .env("GANTRY_LOG", "warn")
        .output()?;
    if !migrated.status.success() {
        bail!("migrate: {}", String::from_utf8_lossy(&migrated.stderr));
    }
    Ok(())
}

/// The database a benchmark runs on: a SQLite file in `data`, or a fresh
/// PostgreSQL database (on `TEST_POSTGRES_URL`) dropped by [`BenchDatabase::drop_now`].
pub struct BenchDatabase {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl BenchDatabase {
    pub async fn create(backend: &str, data: &Path, name: &str) -> anyhow::Result<BenchDatabase> {
        use sqlx::Executor;
        std::fs::create_dir_all(data)?;
        if backend == "sqlite" {
            return Ok(BenchDatabase {
                url: format!("sqlite://{}?mode=rwc", data.join("gantry.db").display()),
                postgres: None,
            });
        }
        let admin_url = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
        let database = format!("{name}_{}", std::process::id());
        let admin = sqlx::AnyPool::connect(&admin_url).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {database}").as_str())
            .await?;
        admin
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        Ok(BenchDatabase {
            url: format!("{base}/{database}"),
            postgres: Some((admin_url, database)),
        })
    }

    /// Drops the PostgreSQL database (once the server is gone).
    pub async fn drop_now(self) -> anyhow::Result<()> {
        use sqlx::Executor;
        if let Some((admin_url, database)) = self.postgres {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let admin = sqlx::AnyPool::connect(&admin_url).await?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
                .await?;
        }
        Ok(())
    }
}

/// An emulated cluster whose workloads are ready at once and whose every
/// API request takes `latency`, and a client of it (the cluster benches).
pub async fn emulated_cluster(
    latency: Duration,
) -> anyhow::Result<(kube_emulator::Emulator, kube::Client)> {
    let emulator = kube_emulator::Emulator::start(kube_emulator::Options {
        rollout: kube_emulator::RolloutMode::After(Duration::ZERO),
        ..kube_emulator::Options::default()
    })
    .await?;
    emulator.set_faults(kube_emulator::Faults {
        latency,
        fail_next: 0,
        ..Default::default()
    });
    let client = kube::Client::try_from(kube::Config::new(emulator.url().parse()?))?;
    Ok((emulator, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 10.0);
        assert_eq!(percentile(&values, 95.0), 19.0);
        assert_eq!(percentile(&values, 100.0), 20.0);
    }
}
