//! The built-in `image` step as the pipeline declares it:
//! `- image: {context: ., dockerfile: Dockerfile, repository: registry.example.com/shop}`.
//! Gantry builds the image with buildah inside the step's sandbox and
//! pushes it itself (docs/src/pipeline-repo.md, "The image step").

use serde::{Deserialize, Serialize};

use crate::error::Rejected;

/// The step's name when the pipeline gives none.
pub const DEFAULT_NAME: &str = "image";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBuild {
    /// The build context, relative to the checkout.
    pub context: String,
    /// The Dockerfile, relative to the checkout.
    pub dockerfile: String,
    /// Where it is pushed, tagged with the commit.
    pub repository: Repository,
    /// A registered secret holding `user:password` (or `user:token`): read
    /// by Gantry to push, never given to the build.
    pub credentials: Option<String>,
}

/// Where the build works, in the step's home (outside the checkout):
/// buildah's storage, and the OCI layout Gantry pushes from.
pub const WORK_DIR: &str = ".gantry-image";
/// The OCI image layout the build leaves, under [`WORK_DIR`].
pub const LAYOUT_DIR: &str = "layout";

impl ImageBuild {
    /// What the sandbox runs: a rootless buildah build (its own user
    /// namespace, `vfs` storage, `chroot` isolation: no daemon, no
    /// privilege), written out as an OCI layout. The push is Gantry's,
    /// outside the sandbox, so the registry's credentials never meet the
    /// Dockerfile's code.
    pub fn script(&self) -> String {
        format!(
            r#"set -eu
command -v buildah >/dev/null || {{ echo "the image step needs buildah on the Gantry host (Debian: apt-get install buildah)" >&2; exit 127; }}
work="$HOME/{WORK_DIR}"
rm -rf "$work"
mkdir -p "$work/run" "$work/tmp"
export XDG_RUNTIME_DIR="$work/run" TMPDIR="$work/tmp" BUILDAH_ISOLATION=chroot
set -- --storage-driver vfs --root "$work/storage" --runroot "$work/run/storage"
echo building {context} with {dockerfile}
buildah "$@" build --isolation chroot --layers=false -f {dockerfile} -t gantry-build {context}
buildah "$@" push --quiet gantry-build "oci:$work/{LAYOUT_DIR}:latest"
echo "built; Gantry pushes it to {repository}"
"#,
            // `./`: a path is never taken for one of buildah's options.
            context = quoted(&format!("./{}", self.context)),
            dockerfile = quoted(&format!("./{}", self.dockerfile)),
            repository = self.repository,
        )
    }
}

/// `text` as one single-quoted shell word.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// A repository in a registry: `registry.example.com[:port]/team/shop`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// `host[:port]`.
    pub registry: String,
    /// The path under it: `team/shop`.
    pub name: String,
}

impl Repository {
    /// Reads `registry/name`: the registry must be named (a host with a
    /// dot or a port, or `localhost`), the name is the registry's path
    /// grammar, and neither a tag nor a digest is given (Gantry tags with
    /// the commit and records the digest it pushed).
    pub fn parse(text: &str) -> Result<Repository, Rejected> {
        let shown: String = text.chars().take(120).collect();
        let Some((registry, name)) = text.split_once('/') else {
            return Err(format!(
                "{shown:?} names no registry: write it as registry.example.com/{shown}"
            )
            .into());
        };
        let (host, port) = match registry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
        let looks_like_registry = host.contains('.') || port.is_some() || host == "localhost";
        if !(host_ok && port_ok && looks_like_registry) {
            return Err(format!(
                "{shown:?}: {registry:?} is not a registry host (e.g. registry.example.com or localhost:5000)"
            )
            .into());
        }
        if name.contains(':') || name.contains('@') {
            return Err(format!(
                "{shown:?} gives a tag or a digest: name the repository only; Gantry tags the image with the commit and records the digest it pushed"
            )
            .into());
        }
        if name.len() > 255 || !name.split('/').all(path_component) {
            return Err(format!(
                "{shown:?}: {name:?} is not a repository path (lowercase letters and digits, separated by `.`, `_`, `__`, `-` or `/`)"
            )
            .into());
        }
        Ok(Repository {
            registry: registry.to_ascii_lowercase(),
            name: name.to_string(),
        })
    }

    /// Whether the registry is this host's loopback, reached over plain
    /// HTTP as Docker and buildah do; every other one over HTTPS.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, _)) => host,
            None => &self.registry,
        };
        host == "localhost" || host == "127.0.0.1"
    }

    /// `https://registry.example.com` (`http://` on loopback).
    pub fn base_url(&self) -> String {
        let scheme = if self.is_loopback() { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

/// One component of a repository path: `[a-z0-9]+` runs joined by `.`,
/// `_`, `__` or any number of `-` (the distribution spec's grammar).
fn path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(b) {
            let ok = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|c| c == '-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(b as char);
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_one_shell_word_whatever_it_holds() {
        for path in [
            "plain",
            "it's",
            "$(touch /tmp/x)",
            "a b",
            "`id`",
            "back\\slash",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quoted(path)))
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), path);
        }
    }

    #[test]
    fn repositories_name_a_registry_and_a_path_and_nothing_else() {
        let repo = Repository::parse("registry.example.com/team/shop").expect("valid");
        assert_eq!(repo.registry, "registry.example.com");
        assert_eq!(repo.name, "team/shop");
        assert_eq!(repo.base_url(), "https://registry.example.com");
        let local = Repository::parse("127.0.0.1:5000/shop").expect("valid");
        assert_eq!(local.base_url(), "http://127.0.0.1:5000");
        assert!(Repository::parse("localhost/my_app-2").is_ok());

        for (bad, says) in [
            ("shop", "names no registry"),
            ("library/shop", "is not a registry host"),
            ("registry.example.com/shop:1.0", "gives a tag or a digest"),
            (
                "registry.example.com/shop@sha256:abc",
                "gives a tag or a digest",
            ),
            ("registry.example.com/Shop", "is not a repository path"),
            ("registry.example.com/shop/", "is not a repository path"),
            ("registry.example.com/a..b", "is not a repository path"),
            ("registry.example.com:0/shop", "is not a registry host"),
            ("reg istry.example.com/shop", "is not a registry host"),
            ("registry.example.com/sh op", "is not a repository path"),
        ] {
            let error = Repository::parse(bad).expect_err(bad).0;
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
