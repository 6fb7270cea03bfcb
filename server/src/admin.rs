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
