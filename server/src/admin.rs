//! Admin commands of the `gantry` binary that work on the database:
//! `rotate-key` (Gantry stopped) and `token create` (the first admin token).

use std::io::Write;

use anyhow::Context as _;

use crate::cli::TokenCommand;
use crate::config::Config;
use crate::db::{self, Db};
use crate::secrets::{Sealed, Vault};
use crate::storage::DataDir;

/// Re-encrypts everything sealed with a fresh key. The new key is written
/// next to the old one first; after the database commits, the old key file
/// is kept as `<key>.previous` and the new one takes its place.
pub async fn rotate_key(config: Config) -> anyhow::Result<()> {
    let _data_dir =
        DataDir::open(&config.data_dir).context("stop Gantry before rotating its key")?;
    let db = Db::connect(&config.database).await?;
    db.migrate().await?;
    let key_file = &config.secret_key_file;
    let current = Vault::open(key_file)?;
    let next_path = key_file.with_extension("next");
    let _ = std::fs::remove_file(&next_path);
    let next = Vault::open(&next_path)?;

    let mut tx = db.begin().await?;
    let secrets = db::secrets::all_sealed(&mut *tx).await?;
    for (id, name, nonce, ciphertext, key_id) in &secrets {
        let value = current.open_value(
            name,
            &Sealed {
                nonce: nonce.clone(),
                ciphertext: ciphertext.clone(),
                key_id: key_id.clone(),
            },
        )?;
        let sealed = next.seal(name, &value)?;
        db::secrets::reseal(&mut *tx, *id, &sealed).await?;
    }
    let clusters = db::clusters::all_sealed(&mut *tx).await?;
    for (name, nonce, ciphertext, key_id) in &clusters {
        let seal_name = format!("cluster:{name}");
        let value = current.open_value(
            &seal_name,
            &Sealed {
                nonce: nonce.clone(),
                ciphertext: ciphertext.clone(),
                key_id: key_id.clone(),
            },
        )?;
        db::clusters::reseal(&mut *tx, name, &next.seal(&seal_name, &value)?).await?;
    }
    let deployments = db::deployments::all_sealed(&mut *tx).await?;
    for (id, digest, nonce, ciphertext, key_id) in &deployments {
        let seal_name = format!("deployment:{digest}");
        let value = current.open_value(
            &seal_name,
            &Sealed {
                nonce: nonce.clone(),
                ciphertext: ciphertext.clone(),
                key_id: key_id.clone(),
            },
        )?;
        db::deployments::store_sealed(&mut *tx, *id, &next.seal(&seal_name, &value)?).await?;
    }
    crate::db::commit(tx).await?;
    let previous = key_file.with_extension("previous");
    std::fs::rename(key_file, &previous)
        .with_context(|| format!("moving {} aside", key_file.display()))?;
    std::fs::rename(&next_path, key_file)
        .with_context(|| format!("installing the new key as {}", key_file.display()))?;
    db.close().await;
    tracing::info!(
        secrets = secrets.len(),
        clusters = clusters.len(),
        deployments = deployments.len(),
        old_key = current.key_id(),
        new_key = next.key_id(),
        "key rotated; the old key is kept as {} (delete it once Gantry starts fine)",
        previous.display()
    );
    Ok(())
}

/// `gantry token create`: a token for `--user` with `--role`, printed once.
pub async fn token(config: Config, command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create {
        name,
        role,
        app,
        expires,
        user,
    } = command;
    let role = app::dto::Role::parse(&role).with_context(|| {
        format!("unknown role {role:?}; use admin, developer, tester or viewer")
    })?;
    let lifetime =
        crate::config::duration::HumanDuration::parse(&expires).map_err(anyhow::Error::msg)?;
    // The database only, no data-directory lock: this also works while
    // Gantry runs.
    let state = crate::state::App::start(config).await?;
    let user_id = crate::auth::upsert_user(&state.db, "gantry-cli", &user, &user, None).await?;
    // Whoever runs this can read the database: they grant the user the
    // role (a token never holds more than its owner).
    crate::auth::add_grant(
        &state.db,
        user_id,
        "cli",
        &app::dto::Grant {
            role,
            app: app.clone(),
        },
    )
    .await?;
    let (_, token, _) = crate::auth::tokens::mint(
        &state.db,
        user_id,
        &name,
        role,
        app.as_deref(),
        i64::try_from(lifetime.0.as_millis()).unwrap_or(i64::MAX),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::db::audit::record(
        state.db.pool(),
        &crate::db::audit::NewEntry {
            actor: &user,
            action: "token.create",
            target: &name,
            reason: Some("gantry token create"),
            source_ip: None,
            detail: &serde_json::json!({ "role": role.as_str(), "app": app }).to_string(),
        },
        crate::db::now_millis(),
    )
    .await?;
    writeln!(std::io::stdout(), "{token}")?;
    state.db.close().await;
    Ok(())
}

/// `gantry health FILE [--rules DIR]`: each object's health, one line each
/// (`Widget/assets: Degraded: quota exceeded`), in Argo CD's words.
pub fn health(file: &std::path::Path, rules: Option<&std::path::Path>) -> anyhow::Result<()> {
    use crate::delivery::deploy::health::{Health, Judge};
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let documents: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // `kubectl get -o yaml` of several objects prints a List.
    let objects: Vec<serde_json::Value> = documents
        .into_iter()
        .flat_map(|doc| match doc["items"].as_array() {
            Some(items) if doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
                items.clone()
            }
            _ => vec![doc],
        })
        .filter(|doc| !doc.is_null())
        .collect();
    let rules = match rules {
        Some(dir) => repo_rules(dir)?,
        None => Default::default(),
    };
    let judge = Judge {
        rules: rules.compile().map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let mut out = std::io::stdout().lock();
    for object in &objects {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or("?");
        let name = object["metadata"]["name"].as_str().unwrap_or("?");
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
        let (verdict, message) = match judge.health(api_version, kind, object, generation) {
            Health::Healthy => ("Healthy", String::new()),
            Health::InProgress(why) => ("Progressing", why),
            Health::Failed(why) => ("Degraded", why),
            Health::Unknown(why) => ("Unknown", why),
        };
        if message.is_empty() {
            writeln!(out, "{kind}/{name}: {verdict}")?;
        } else {
            writeln!(out, "{kind}/{name}: {verdict}: {message}")?;
        }
    }
    Ok(())
}

/// The health rules of a pipeline repo checkout, loaded as Gantry loads
/// them from a commit; what does not load is named, file and line.
fn repo_rules(dir: &std::path::Path) -> anyhow::Result<crate::gitops::health_rules::RuleSet> {
    let admin = match std::fs::read_to_string(dir.join(crate::gitops::guardrails::FILE)) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).context("cannot read gantry.yaml"),
    };
    let mut scripts = Vec::new();
    let folders = |path: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
    };
    for group in folders(&dir.join("health")) {
        for kind in folders(&dir.join("health").join(&group)) {
            let path = format!("health/{group}/{kind}/health.lua");
            if let Ok(text) = std::fs::read_to_string(dir.join(&path)) {
                scripts.push((path, text));
            }
        }
    }
    crate::gitops::load::load_admin(admin.as_deref(), &scripts)
        .map(|admin| admin.health)
        .map_err(|issues| {
            anyhow::anyhow!(
                "the health rules do not load:\n{}",
                issues
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}
