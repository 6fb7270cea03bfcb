//! Writing a git tree to disk, refusing any entry name that could escape the
//! destination (crafted trees can hold `..` or names with `/`), and any
//! tree that names an entry twice: a crafted tree can hold a symlink `x`
//! to `/` and then a directory `x`, so that writing "into `x`" as root
//! would write into the host. Nothing is ever written through an existing
//! path: directories are made one by one, files created new without
//! following links.
//!
//! The tree may be a developer's: a 2 GiB blob of zeros or a tree fanned
//! out a million ways costs a push nothing. So an export is bounded in
//! bytes, entries and depth (`git.export_*`), each refusal naming the limit
//! and the object, checks a blob's size before reading it, and stops when
//! its run is cancelled.
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use git2::{FileMode, ObjectType, Oid, Repository, Tree};
use tokio_util::sync::CancellationToken;

use super::GitError;

/// How much one export may write (`git.export_max_bytes`, `_entries`,
/// `_depth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportLimits {
    pub max_bytes: u64,
    pub max_entries: u64,
    pub max_depth: usize,
}

impl Default for ExportLimits {
    fn default() -> Self {
        ExportLimits {
            max_bytes: 1 << 30,
            max_entries: 200_000,
            max_depth: 128,
        }
    }
}

/// What to write of a commit's tree: a folder of it (or all of it), less
/// the paths in `skip` (relative to that folder), until `cancel` fires.
#[derive(Clone, Debug, Default)]
pub struct Export {
    pub subdir: Option<String>,
    pub skip: Vec<String>,
    pub cancel: Option<CancellationToken>,
}

impl Export {
    /// The whole tree.
    pub fn all() -> Export {
        Export::default()
    }

    /// The folder `dir` of the tree.
    pub fn folder(dir: &str) -> Export {
        Export {
            subdir: Some(dir.to_string()),
            ..Export::default()
        }
    }

    /// Leaves out these paths (a file, or a folder with all under it).
    pub fn skipping(mut self, paths: impl IntoIterator<Item = String>) -> Export {
        self.skip.extend(paths);
        self
    }

    /// Stops (with [`GitError::Cancelled`]) once `cancel` fires.
    pub fn cancelled_by(mut self, cancel: &CancellationToken) -> Export {
        self.cancel = Some(cancel.clone());
        self
    }
}

/// What an export has left to spend, and where it is.
struct Budget<'a> {
    limits: ExportLimits,
    bytes: u64,
    entries: u64,
    skip: &'a [String],
    cancel: Option<&'a CancellationToken>,
    /// The commit, for messages.
    commit: &'a str,
}

impl Budget<'_> {
    fn refuse(&self, what: String) -> GitError {
        GitError::TooLarge(format!("the tree of {}: {what}", short(self.commit)))
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

pub(super) fn write_tree(
    repo: &Repository,
    tree: &Tree<'_>,
    dest: &Path,
    export: &Export,
    limits: ExportLimits,
    commit: &str,
) -> Result<(), GitError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut budget = Budget {
        limits,
        bytes: 0,
        entries: 0,
        skip: &export.skip,
        cancel: export.cancel.as_ref(),
        commit,
    };
    write_entries(repo, tree, dest, "", 0, &mut budget)
}

fn write_entries(
    repo: &Repository,
    tree: &Tree<'_>,
    dest: &Path,
    prefix: &str,
    depth: usize,
    budget: &mut Budget<'_>,
) -> Result<(), GitError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    if depth > budget.limits.max_depth {
        return Err(budget.refuse(format!(
            "{prefix} is nested deeper than git.export_max_depth ({})",
            budget.limits.max_depth
        )));
    }
    let mut seen = HashSet::new();
    for entry in tree.iter() {
        if budget.cancel.is_some_and(CancellationToken::is_cancelled) {
            return Err(GitError::Cancelled);
        }
        let name = entry.name().unwrap_or_default();
        if name.is_empty()
            || name == "."
            || name == ".."
            || name == ".git"
            || name.contains(['/', '\\', '\0'])
        {
            return Err(GitError::UnsafePath(name.to_string()));
        }
        if !seen.insert(name.to_string()) {
            return Err(GitError::UnsafePath(format!(
                "{name} (the tree names it twice)"
            )));
        }
        let relative = format!("{prefix}{name}");
        if budget.skip.contains(&relative) {
            continue;
        }
        budget.entries += 1;
        if budget.entries > budget.limits.max_entries {
            return Err(budget.refuse(format!(
                "more than git.export_max_entries ({}) files and folders (at {relative})",
                budget.limits.max_entries
            )));
        }
        let target = dest.join(name);
        match entry.filemode() {
            mode if mode == i32::from(FileMode::Tree) => {
                tree_fits(repo, entry.id(), budget.limits, &relative)?;
                let subtree = entry.to_object(repo)?.peel_to_tree()?;
                // A new directory: never one that exists (or a link).
                std::fs::create_dir(&target).map_err(io(&target))?;
                write_entries(
                    repo,
                    &subtree,
                    &target,
                    &format!("{relative}/"),
                    depth + 1,
                    budget,
                )?;
            }
            mode if mode == i32::from(FileMode::Link) => {
                let blob = read_blob(repo, entry.id(), &relative, budget)?;
                let link = String::from_utf8_lossy(blob.content()).into_owned();
                std::os::unix::fs::symlink(&link, &target).map_err(io(&target))?;
            }
            mode if mode == i32::from(FileMode::Commit) => {
                // A submodule: its content is not in this repository.
                std::fs::create_dir(&target).map_err(io(&target))?;
            }
            mode => {
                let blob = read_blob(repo, entry.id(), &relative, budget)?;
                let permissions = if mode == i32::from(FileMode::BlobExecutable) {
                    0o755
                } else {
                    0o644
                };
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(permissions)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&target)
                    .map_err(io(&target))?;
                file.write_all(blob.content()).map_err(io(&target))?;
            }
        }
    }
    Ok(())
}

/// Refuses a tree object too big for the entries an export may write (read
/// from its header, before it is parsed: a tree of a million names costs a
/// push nothing). A tree entry takes at most ~300 bytes (a name, an id, a
/// mode).
pub(super) fn tree_fits(
    repo: &Repository,
    id: Oid,
    limits: ExportLimits,
    path: &str,
) -> Result<(), GitError> {
    let (size, _) = repo.odb()?.read_header(id)?;
    if size as u64 > limits.max_entries.saturating_mul(300) {
        return Err(GitError::TooLarge(format!(
            "the tree {} is {size} bytes: more than git.export_max_entries ({}) entries could take",
            if path.is_empty() { "at the top" } else { path },
            limits.max_entries
        )));
    }
    Ok(())
}

/// A blob's content, once its size (read from the object's header, without
/// inflating it) fits what the export has left.
fn read_blob<'r>(
    repo: &'r Repository,
    id: Oid,
    path: &str,
    budget: &mut Budget<'_>,
) -> Result<git2::Blob<'r>, GitError> {
    let (size, kind) = repo.odb()?.read_header(id)?;
    if kind != ObjectType::Blob {
        return Err(GitError::UnsafePath(format!("{path} (not a blob)")));
    }
    let size = size as u64;
    if budget.bytes + size > budget.limits.max_bytes {
        return Err(budget.refuse(format!(
            "{path} ({size} bytes) takes it past git.export_max_bytes ({} bytes; {} written so far)",
            budget.limits.max_bytes, budget.bytes
        )));
    }
    budget.bytes += size;
    Ok(repo.find_blob(id)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::{ObjectType, Oid};

    /// A raw tree object, entries as given (libgit2's builder would refuse
    /// or merge what a crafted push can carry).
    fn raw_tree(repo: &Repository, entries: &[(&str, &str, Oid)]) -> Oid {
        let mut bytes = Vec::new();
        for (mode, name, oid) in entries {
            bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            bytes.extend_from_slice(oid.as_bytes());
        }
        repo.odb()
            .expect("odb")
            .write(ObjectType::Tree, &bytes)
            .expect("tree")
    }

    #[test]
    fn a_tree_naming_an_entry_twice_writes_nothing_through_a_link() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repository::init_bare(dir.path().join("repo.git")).expect("repo");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        let link = repo
            .blob(outside.display().to_string().as_bytes())
            .expect("link");
        let payload = repo.blob(b"pwned\n").expect("blob");
        let inner = raw_tree(&repo, &[("100644", "pwn", payload)]);
        // `x` → outside, then a directory `x` holding `pwn`.
        let tree = raw_tree(&repo, &[("120000", "x", link), ("40000", "x", inner)]);
        let tree = repo.find_tree(tree).expect("tree");
        let dest = dir.path().join("checkout");
        let error = write_tree(
            &repo,
            &tree,
            &dest,
            &Export::all(),
            ExportLimits::default(),
            "test",
        )
        .expect_err("refused");
        assert!(error.to_string().contains("twice"), "{error}");
        assert!(!outside.join("pwn").exists(), "nothing was written outside");

        // A file `x` after the link `x` is refused too, and the link's
        // target is left alone.
        std::fs::write(outside.join("victim"), "original").expect("victim");
        let link = repo
            .blob(outside.join("victim").display().to_string().as_bytes())
            .expect("link");
        let tree = raw_tree(&repo, &[("120000", "y", link), ("100644", "y", payload)]);
        let tree = repo.find_tree(tree).expect("tree");
        let dest = dir.path().join("checkout2");
        assert!(
            write_tree(
                &repo,
                &tree,
                &dest,
                &Export::all(),
                ExportLimits::default(),
                "test"
            )
            .is_err()
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).expect("victim"),
            "original"
        );
    }

    fn tree_of(repo: &Repository, entries: &[(&str, Oid, i32)]) -> Oid {
        let mut builder = repo.treebuilder(None).expect("builder");
        for (name, oid, mode) in entries {
            builder.insert(name, *oid, *mode).expect("insert");
        }
        builder.write().expect("tree")
    }

    fn export(
        repo: &Repository,
        tree: Oid,
        export: &Export,
        limits: ExportLimits,
    ) -> (tempfile::TempDir, Result<(), GitError>) {
        let dir = tempfile::tempdir().expect("dest");
        let tree = repo.find_tree(tree).expect("tree");
        let result = write_tree(
            repo,
            &tree,
            &dir.path().join("out"),
            export,
            limits,
            "0123456789abcdef",
        );
        (dir, result)
    }

    const SMALL: ExportLimits = ExportLimits {
        max_bytes: 1000,
        max_entries: 10,
        max_depth: 3,
    };

    #[test]
    fn a_blob_past_the_byte_limit_is_refused_by_its_size_and_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repository::init_bare(dir.path().join("repo.git")).expect("repo");
        let big = repo.blob(&vec![0u8; 4096]).expect("blob");
        let small = repo.blob(b"ok").expect("blob");
        let tree = tree_of(
            &repo,
            &[("a.txt", small, 0o100644), ("zeros.bin", big, 0o100644)],
        );
        let (out, result) = export(&repo, tree, &Export::all(), SMALL);
        let error = result.expect_err("too large").to_string();
        assert!(
            error.contains("zeros.bin")
                && error.contains("git.export_max_bytes")
                && error.contains("0123456789ab"),
            "{error}"
        );
        assert!(!out.path().join("out/zeros.bin").exists());
    }

    #[test]
    fn too_many_entries_or_too_deep_a_tree_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repository::init_bare(dir.path().join("repo.git")).expect("repo");
        let blob = repo.blob(b"x").expect("blob");
        let names: Vec<String> = (0..11).map(|n| format!("f{n}")).collect();
        let wide: Vec<(&str, Oid, i32)> =
            names.iter().map(|n| (n.as_str(), blob, 0o100644)).collect();
        let wide = tree_of(&repo, &wide);
        let (_out, result) = export(&repo, wide, &Export::all(), SMALL);
        let error = result.expect_err("too many").to_string();
        assert!(error.contains("git.export_max_entries (10)"), "{error}");

        let mut deep = tree_of(&repo, &[("leaf", blob, 0o100644)]);
        for _ in 0..5 {
            deep = tree_of(&repo, &[("d", deep, 0o040000)]);
        }
        let (_out, result) = export(&repo, deep, &Export::all(), SMALL);
        let error = result.expect_err("too deep").to_string();
        assert!(
            error.contains("git.export_max_depth (3)") && error.contains("d/d/d/d/"),
            "{error}"
        );
    }

    #[test]
    fn skipped_paths_are_not_written_and_a_cancelled_export_stops() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repository::init_bare(dir.path().join("repo.git")).expect("repo");
        let blob = repo.blob(b"kind: Secret").expect("blob");
        let deploy = tree_of(&repo, &[("secret.yaml", blob, 0o100644)]);
        let tree = tree_of(
            &repo,
            &[
                ("deploy", deploy, 0o040000),
                ("app.yaml", blob, 0o100644),
                ("build.sh", blob, 0o100755),
            ],
        );
        let skip = Export::all().skipping(["deploy".to_string(), "app.yaml".to_string()]);
        let (out, result) = export(&repo, tree, &skip, ExportLimits::default());
        result.expect("exported");
        assert!(out.path().join("out/build.sh").exists());
        assert!(
            !out.path().join("out/deploy").exists() && !out.path().join("out/app.yaml").exists()
        );

        let cancel = CancellationToken::new();
        cancel.cancel();
        let (_out, result) = export(
            &repo,
            tree,
            &Export::all().cancelled_by(&cancel),
            ExportLimits::default(),
        );
        assert!(matches!(result, Err(GitError::Cancelled)), "{result:?}");
    }
}
