//! Writing a git tree to disk, refusing any entry name that could escape the
//! destination (crafted trees can hold `..` or names with `/`), and any
//! tree that names an entry twice: a crafted tree can hold a symlink `x`
//! to `/` and then a directory `x`, so that writing "into `x`" as root
//! would write into the host. Nothing is ever written through an existing
//! path: directories are made one by one, files created new without
//! following links.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use git2::{FileMode, Repository, Tree};

use super::GitError;

pub(super) fn write_tree(repo: &Repository, tree: &Tree<'_>, dest: &Path) -> Result<(), GitError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    write_entries(repo, tree, dest)
}

fn write_entries(repo: &Repository, tree: &Tree<'_>, dest: &Path) -> Result<(), GitError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    let mut seen = HashSet::new();
    for entry in tree.iter() {
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
        let target = dest.join(name);
        match entry.filemode() {
            mode if mode == i32::from(FileMode::Tree) => {
                let subtree = entry.to_object(repo)?.peel_to_tree()?;
                // A new directory: never one that exists (or a link).
                std::fs::create_dir(&target).map_err(io(&target))?;
                write_entries(repo, &subtree, &target)?;
            }
            mode if mode == i32::from(FileMode::Link) => {
                let blob = entry.to_object(repo)?.peel_to_blob()?;
                let link = String::from_utf8_lossy(blob.content()).into_owned();
                std::os::unix::fs::symlink(&link, &target).map_err(io(&target))?;
            }
            mode if mode == i32::from(FileMode::Commit) => {
                // A submodule: its content is not in this repository.
                std::fs::create_dir(&target).map_err(io(&target))?;
            }
            mode => {
                let blob = entry.to_object(repo)?.peel_to_blob()?;
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
        let error = write_tree(&repo, &tree, &dest).expect_err("refused");
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
        assert!(write_tree(&repo, &tree, &dest).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).expect("victim"),
            "original"
        );
    }
}
