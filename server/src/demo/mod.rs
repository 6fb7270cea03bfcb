//! `gantry demo`: Gantry doing its real job on one machine, no cluster.
//! Creates (once) a sample app repo with branches `master`, `latest` and
//! `feature/hello` and a pipeline repo deploying it to the `local` target,
//! both in `<data>/demo/`; then serves, runs the pipelines, approves the
//! first production run as `demo`, and prints where to look.

mod repos;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{Config, Origin};
use crate::db;
use crate::state::App;
use repos::Files;

const APP_PY: &str = include_str!("sample/app.py");
const TEST_PY: &str = include_str!("sample/test_app.py");
const SMOKE_PY: &str = include_str!("sample/smoke.py");
const APP_YAML: &str = include_str!("sample/app.yaml");
const PIPELINE_YAML: &str = include_str!("sample/pipeline.yaml");

/// Where the demo keeps its repositories.
pub struct DemoRepos {
    pub app: PathBuf,
    pub pipeline: PathBuf,
    /// True when this call created them (first run).
    pub created: bool,
}

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let repos = tokio::task::spawn_blocking(move || create_repos(&data_dir.join("demo")))
        .await
        .context("creating the demo repositories")??;
    if config.pipeline_repo.is_some() {
        tracing::warn!("the demo uses its own pipeline repo; the configured one is ignored");
    }
    config.pipeline_repo = Some(repos.app_pipeline_url());
    config.set_by_demo("pipeline.repo", repos.app_pipeline_url());
    // The demo signs people in without a password, on this machine only.
    if config.bind.ip().is_loopback() {
        config.dev_login = true;
        config.set_by_demo("auth.dev_login", "true".into());
        // ...and testers open share links without an account, unless set.
        if config.origin("auth.share_anonymous") == Some(&Origin::Default) {
            config.share_anonymous = true;
            config.set_by_demo("auth.share_anonymous", "true".into());
        }
    }
    // Quick feedback without the hook too; an explicit setting wins.
    if config.origin("pipeline.poll_interval") == Some(&Origin::Default) {
        config.poll_interval = Duration::from_secs(5);
        config.set_by_demo("pipeline.poll_interval", "5s".into());
    }
    let app_repo = repos.app.clone();
    let created = repos.created;
    crate::serve::serve_with(config, move |app| {
        tokio::spawn(async move {
            if let Err(error) = after_start(&app, &app_repo, created).await {
                tracing::error!(%error, "demo set-up failed");
            }
        });
    })
    .await
}

impl DemoRepos {
    fn app_pipeline_url(&self) -> String {
        self.pipeline.display().to_string()
    }
}

/// Creates the two bare repositories unless they exist.
pub fn create_repos(dir: &Path) -> anyhow::Result<DemoRepos> {
    let app = dir.join("shop.git");
    let pipeline = dir.join("pipeline.git");
    if app.join("HEAD").exists() && pipeline.join("HEAD").exists() {
        return Ok(DemoRepos {
            app,
            pipeline,
            created: false,
        });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let repo = repos::open_or_init(&app)?;
    let mut files = Files::new();
    let mut put = |path: &str, text: &str, executable: bool| {
        files.insert(path.to_string(), (text.as_bytes().to_vec(), executable));
    };
    put("app.py", APP_PY, false);
    put("test_app.py", TEST_PY, false);
    put("smoke.py", SMOKE_PY, false);
    put("greeting.txt", "Hello from production\n", false);
    put(".gitignore", "VERSION\nreports/\n__pycache__/\n", false);
    put(
        "README.md",
        "# shop\n\nThe sample app of `gantry demo`. Push a branch and watch it deploy.\n",
        false,
    );
    let master = repos::commit(&repo, "master", None, &files, "Initial shop")?;
    files.insert(
        "greeting.txt".into(),
        (b"Hello from staging\n".to_vec(), false),
    );
    let latest = repos::commit(&repo, "latest", Some(master), &files, "Greet from staging")?;
    files.insert(
        "greeting.txt".into(),
        (b"Hello from a preview of feature/hello\n".to_vec(), false),
    );
    repos::commit(
        &repo,
        "feature/hello",
        Some(latest),
        &files,
        "Say hello in the preview",
    )?;
    repo.set_head("refs/heads/master")?;

    let pipeline_repo = repos::open_or_init(&pipeline)?;
    let mut config = Files::new();
    config.insert(
        "apps/shop/app.yaml".into(),
        (
            APP_YAML
                .replace("{{SOURCE}}", &app.display().to_string())
                .into_bytes(),
            false,
        ),
    );
    config.insert(
        "apps/shop/pipeline.yaml".into(),
        (PIPELINE_YAML.as_bytes().to_vec(), false),
    );
    config.insert("README.md".into(), (b"# Pipeline repo of the Gantry demo\n\nAdmins only: how `shop` is built and where it goes.\n".to_vec(), false));
    repos::commit(&pipeline_repo, "master", None, &config, "Add shop")?;
    pipeline_repo.set_head("refs/heads/master")?;
    Ok(DemoRepos {
        app,
        pipeline,
        created: true,
    })
}

/// Installs the push hook, approves the first production run, prints help.
async fn after_start(app: &Arc<App>, app_repo: &Path, created: bool) -> anyhow::Result<()> {
    let app_row = crate::jobs::plan::wait_for_app(app, "shop", Duration::from_secs(60)).await?;
    let token = crate::auth::tokens::rotate_hook_token(&app.db, app_row.id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    install_hook(app_repo, &app.config.public_url, &token)?;
    let dashboard = app
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    tracing::info!(
        "\n\n  Gantry demo: {dashboard}/  (sign in with the dev login: any name, any role)\n\n  \
         sample app repo  {app_repo}  (branches master, latest, feature/hello)\n  \
         pipeline repo    {}\n\n  \
         Push a change and watch it deploy:\n    \
         git clone {app_repo} shop && cd shop && git checkout feature/hello\n    \
         echo 'Hello again' > greeting.txt && git commit -am 'Hello again' && git push\n",
        app.config.pipeline_repo.as_deref().unwrap_or_default(),
        app_repo = app_repo.display(),
    );
    if created {
        approve_first_runs(app).await?;
    }
    Ok(())
}

/// A post-receive hook that calls the trigger endpoint, so pushes deploy at
/// once (polling still catches them if `curl` is missing).
fn install_hook(app_repo: &Path, public_url: &url::Url, token: &str) -> anyhow::Result<()> {
    let endpoint = format!(
        "{}/api/v1/hooks/git",
        public_url.as_str().trim_end_matches('/')
    );
    let script = format!(
        "#!/bin/sh\n# Installed by `gantry demo`: tell Gantry about the push.\n\
         command -v curl >/dev/null 2>&1 || exit 0\n\
         curl -fsS -X POST -H 'Authorization: Bearer {token}' -H 'content-type: application/json' \
         -d '{{\"app\":\"shop\"}}' '{endpoint}' >/dev/null || true\n"
    );
    let hook = app_repo.join("hooks").join("post-receive");
    std::fs::create_dir_all(app_repo.join("hooks"))?;
    std::fs::write(&hook, script).with_context(|| format!("cannot write {}", hook.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The demo starts with all three environments live, so it approves the
/// first staging and production runs itself (recorded in the audit log as
/// `demo`): both are protected, as Gantry's defaults protect them.
async fn approve_first_runs(app: &App) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut waiting = vec!["staging", "production"];
    while tokio::time::Instant::now() < deadline {
        let pending = db::runs::list_waiting_for_approval(app.db.pool()).await?;
        let due: Vec<_> = pending
            .iter()
            .filter(|p| waiting.contains(&p.environment.as_str()))
            .collect();
        for run in due {
            let demo = crate::auth::system_caller(&app.db, "demo", app::dto::Role::Admin).await?;
            crate::approvals::approve(
                &app.approvals(),
                &demo,
                run.run_id,
                Some("approved by gantry demo so every environment starts live"),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            waiting.retain(|env| *env != run.environment);
        }
        if waiting.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!(
        "the first {} run never waited for approval",
        waiting.join(" and ")
    )
}
