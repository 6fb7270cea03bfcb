//! Helm charts: an app's `deploy/` folder holding a `Chart.yaml` is
//! rendered by the real `helm template` — the chart's `values.yaml`, then
//! `values-<entry>.yaml` beside it (the stack entry's name: `staging`,
//! `preview`, …), then the entry's own `values:` — with Gantry's variables
//! under `gantry` (`.Values.gantry.image`, `.Values.gantry.commit`, …; a
//! key of its own, so a chart's `image:` map is left alone). Helm only
//! renders: Gantry applies what it renders itself (server-side apply,
//! prune, its own ledger), so there is no Helm release to drift from.
//!
//! A chart may also come from a chart repository at a pinned version
//! (`chart: {repo, name, version}` in the stack entry); `deploy/` then
//! holds only values files.
//!
//! Helm runs with an empty home of its own and no other environment: the
//! server's Helm configuration, plugins and credentials are never used.
//! What it says names the chart's files, never a path on the server.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::{ManifestError, RenderContext};

/// Whether `deploy_dir` is a chart.
pub fn is_chart(deploy_dir: &Path) -> bool {
    deploy_dir.join("Chart.yaml").is_file()
}

/// One rendered document: the chart file it came from (as `folder/…`) and
/// its text.
pub struct Document {
    pub file: String,
    pub text: String,
}

/// Renders the chart in `deploy_dir` (`folder` names it in messages).
pub fn template(
    deploy_dir: &Path,
    folder: &str,
    context: &RenderContext,
) -> Result<Vec<Document>, ManifestError> {
    let home = tempfile::tempdir().map_err(|source| ManifestError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let write = |name: &str, value: &Value| -> Result<std::path::PathBuf, ManifestError> {
        let path = home.path().join(name);
        let text = serde_saphyr::to_string(value).map_err(|e| ManifestError::Invalid {
            file: format!("{folder}/"),
            message: format!("values: {e}"),
        })?;
        std::fs::write(&path, text).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    if context.chart.is_none() {
        only_its_own_files(deploy_dir, folder)?;
    }
    let mut args: Vec<std::ffi::OsString> = vec!["template".into(), context.app.clone().into()];
    match &context.chart {
        // From a chart repository: its values over the chart's own come
        // from `deploy/values.yaml` when there is one.
        Some(source) => {
            args.extend([
                source.name.clone().into(),
                "--repo".into(),
                source.repo.clone().into(),
                "--version".into(),
                source.version.clone().into(),
            ]);
            let own = deploy_dir.join("values.yaml");
            if own.is_file() {
                args.push("--values".into());
                args.push(own.into_os_string());
            }
        }
        None => args.push(deploy_dir.as_os_str().to_owned()),
    }
    args.extend([
        "--namespace".into(),
        context.namespace.clone().into(),
        // `helm test` pods are not part of a deploy.
        "--skip-tests".into(),
    ]);
    if let Some(capabilities) = &context.capabilities {
        args.push("--kube-version".into());
        args.push(capabilities.kube_version.clone().into());
        for api_version in &capabilities.api_versions {
            args.push("--api-versions".into());
            args.push(api_version.into());
        }
    }
    let per_entry = deploy_dir.join(format!("values-{}.yaml", context.stack_entry));
    if per_entry.is_file() {
        args.push("--values".into());
        args.push(per_entry.into_os_string());
    }
    if let Some(values) = &context.values {
        args.push("--values".into());
        args.push(write("entry-values.yaml", values)?.into_os_string());
    }
    let gantry: serde_json::Map<String, Value> = context
        .values()
        .into_iter()
        .map(|(key, value)| (key, json!(value)))
        .collect();
    args.push("--values".into());
    args.push(write("gantry-values.yaml", &json!({ "gantry": gantry }))?.into_os_string());

    let mut command = Command::new(&context.helm);
    command
        .args(&args)
        .env_clear()
        .env("HOME", home.path())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .current_dir(home.path());
    let output = super::process::output(command, super::process::RENDER_TIMEOUT);
    let output = match output {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ManifestError::NoHelm {
                file: format!("{folder}/Chart.yaml"),
            });
        }
        Err(error) => {
            return Err(ManifestError::Helm {
                folder: folder.to_string(),
                message: error.to_string(),
            });
        }
    };
    // Server paths out of Helm's words: the chart is `folder`, the values
    // Gantry wrote are "Gantry's values".
    let scrub = |text: &str| {
        text.replace(&deploy_dir.display().to_string(), folder)
            .replace(&home.path().display().to_string(), "(Gantry's values)")
            .trim()
            .to_string()
    };
    if !output.status.success() {
        return Err(ManifestError::Helm {
            folder: folder.to_string(),
            message: scrub(&String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(documents(&String::from_utf8_lossy(&output.stdout), folder))
}

/// A chart reads only itself: a symbolic link leading out of it would let
/// `.Files.Get` put the server's files into a manifest. Refused, named.
fn only_its_own_files(dir: &Path, folder: &str) -> Result<(), ManifestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ManifestError::Io { path, source }
    };
    let root = dir.canonicalize().map_err(io(dir))?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(io(&current))?.flatten() {
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_symlink() {
                let inside = path
                    .canonicalize()
                    .is_ok_and(|target| target.starts_with(&root));
                if !inside {
                    let relative = path.strip_prefix(dir).unwrap_or(&path);
                    return Err(ManifestError::Invalid {
                        file: format!("{folder}/{}", relative.display()),
                        message: "a symbolic link that leads out of the chart: a chart is rendered from its own files only".into(),
                    });
                }
            } else if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// Splits Helm's output into documents, each named after the chart file its
/// `# Source:` comment gives (without the chart's own name in front).
fn documents(output: &str, folder: &str) -> Vec<Document> {
    let mut out: Vec<Document> = Vec::new();
    let mut current = String::new();
    let mut file = format!("{folder}/");
    let mut flush = |current: &mut String, file: &str| {
        if !current.trim().is_empty() {
            out.push(Document {
                file: file.to_string(),
                text: std::mem::take(current),
            });
        }
        current.clear();
    };
    for line in output.lines() {
        if line.trim_end() == "---" {
            flush(&mut current, &file);
            file = format!("{folder}/");
            continue;
        }
        if let Some(source) = line.strip_prefix("# Source: ") {
            let inside = source.split_once('/').map_or(source, |(_, rest)| rest);
            file = format!("{folder}/{inside}");
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&mut current, &file);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_named_after_their_chart_file() {
        let output = "---\n# Source: shop/templates/service.yaml\napiVersion: v1\nkind: Service\n---\n# Source: shop/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\n";
        let docs = documents(output, "apps/shop/deploy");
        let files: Vec<&str> = docs.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "apps/shop/deploy/templates/service.yaml",
                "apps/shop/deploy/templates/deployment.yaml"
            ]
        );
        assert!(docs[1].text.contains("kind: Deployment"));
    }
}
