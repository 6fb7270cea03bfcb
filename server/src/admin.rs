//! Admin commands of the `gantry` binary: `cluster …` talks to a running
//! Gantry over its REST API; `rotate-key` works on a stopped one.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use app::dto::ClusterSummary;
use serde_json::{Value, json};

use crate::cli::{ClusterCommand, TokenCommand};
use crate::config::Config;
use crate::db::{self, Db};
use crate::secrets::{Sealed, Vault};
use crate::storage::DataDir;

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `gantry cluster add|list|check|remove`, against `server.public_url`.
pub async fn cluster(config: &Config, command: ClusterCommand) -> anyhow::Result<()> {
    let base = config.public_url.as_str().trim_end_matches('/').to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(token) = std::env::var("GANTRY_TOKEN")
        && let Ok(value) = format!("Bearer {}", token.trim()).parse()
    {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;
    let call = |request: reqwest::RequestBuilder| async {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach Gantry at {base}; is it running?"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no details");
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok::<Value, anyhow::Error>(body)
    };
    let url = |path: &str| format!("{}{path}", config.public_url.as_str().trim_end_matches('/'));
    let mut out = std::io::stdout().lock();
    match command {
        ClusterCommand::Add {
            name,
            kubeconfig,
            context,
            api_server,
            token_file,
            ca_file,
            insecure,
            in_cluster,
        } => {
            let mut body = json!({ "name": name, "insecure": insecure, "in_cluster": in_cluster });
            if let Some(path) = kubeconfig {
                body["kubeconfig"] = json!(read(&path)?);
                body["context"] = json!(context);
            }
            if let (Some(server), Some(token)) = (api_server, token_file) {
                body["server"] = json!(server);
                body["token"] = json!(read(&token)?.trim());
                if let Some(ca) = ca_file {
                    body["ca"] = json!(read(&ca)?);
                }
            }
            let summary = call(client.post(url("/api/v1/clusters")).json(&body)).await?;
            writeln!(
                out,
                "registered {}",
                describe(&serde_json::from_value(summary)?)
            )?;
        }
        ClusterCommand::List => {
            let clusters: Vec<ClusterSummary> =
                serde_json::from_value(call(client.get(url("/api/v1/clusters"))).await?)?;
            if clusters.is_empty() {
                writeln!(out, "no clusters registered")?;
            }
            for cluster in clusters {
                writeln!(out, "{}", describe(&cluster))?;
            }
        }
        ClusterCommand::Check { name } => {
            let summary = call(client.post(url(&format!("/api/v1/clusters/{name}/check")))).await?;
            writeln!(out, "{}", describe(&serde_json::from_value(summary)?))?;
        }
        ClusterCommand::Remove { name } => {
            let response = client
                .delete(url(&format!("/api/v1/clusters/{name}")))
                .send()
                .await
                .with_context(|| format!("cannot reach Gantry at {base}"))?;
            if !response.status().is_success() {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                bail!(
                    "{}",
                    body["error"]["message"]
                        .as_str()
                        .unwrap_or("removal failed")
                );
            }
            writeln!(out, "removed {name}")?;
        }
    }
    Ok(())
}

fn describe(cluster: &ClusterSummary) -> String {
    let server = cluster.server_url.as_deref().unwrap_or("in-cluster");
    match (&cluster.server_version, &cluster.last_error) {
        (_, Some(error)) => format!("{}\t{server}\t{}\t{error}", cluster.name, cluster.state),
        (Some(version), None) => {
            format!("{}\t{server}\t{}\t{version}", cluster.name, cluster.state)
        }
        (None, None) => format!("{}\t{server}\t{}", cluster.name, cluster.state),
    }
}

/// A sealed row: id, the name it was sealed under, nonce, ciphertext, key id.
type SealedRow = (i64, String, Vec<u8>, Vec<u8>, String);

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

    let pool = db.pool();
    let mut tx = pool.begin().await?;
    let secrets: Vec<SealedRow> =
        sqlx::query_as("SELECT id, name, nonce, ciphertext, key_id FROM secrets")
            .fetch_all(&mut *tx)
            .await?;
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
        sqlx::query("UPDATE secrets SET nonce = $2, ciphertext = $3, key_id = $4 WHERE id = $1")
            .bind(id)
            .bind(sealed.nonce)
            .bind(sealed.ciphertext)
            .bind(sealed.key_id)
            .execute(&mut *tx)
            .await?;
    }
    let clusters: Vec<(String, Vec<u8>, Vec<u8>, String)> =
        sqlx::query_as("SELECT name, credentials_nonce, credentials, key_id FROM clusters")
            .fetch_all(&mut *tx)
            .await?;
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
    let deployments: Vec<SealedRow> = sqlx::query_as(
        "SELECT id, manifests_digest, manifests_nonce, manifests_sealed, manifests_key_id FROM deployments WHERE manifests_sealed IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
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
    tx.commit().await?;
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
        crate::gitops::duration::HumanDuration::parse(&expires).map_err(anyhow::Error::msg)?;
    // The database only, no data-directory lock: this also works while
    // Gantry runs.
    let state = crate::state::App::start(config).await?;
    let user_id = crate::auth::upsert_user(&state, "gantry-cli", &user, &user, None).await?;
    let (_, token) = crate::auth::tokens::create(
        &state,
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
