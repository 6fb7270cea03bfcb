//! Writing commits straight into bare repositories with `git2`, so the demo
//! needs no `git` command.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{FileMode, Oid, Repository, Signature};

/// Path inside the repo → (content, executable).
pub type Files = BTreeMap<String, (Vec<u8>, bool)>;

pub fn open_or_init(path: &Path) -> Result<Repository, git2::Error> {
    Repository::open_bare(path).or_else(|_| Repository::init_bare(path))
}

/// Commits `files` (the whole tree) on `branch`, on top of `parent`.
pub fn commit(
    repo: &Repository,
    branch: &str,
    parent: Option<Oid>,
    files: &Files,
    message: &str,
) -> Result<Oid, git2::Error> {
    let tree_id = write_tree(repo, files, "")?;
    let tree = repo.find_tree(tree_id)?;
    let signature = Signature::now("Gantry Demo", "demo@gantry.invalid")?;
    let parents: Vec<git2::Commit<'_>> = parent
        .map(|id| repo.find_commit(id))
        .transpose()?
        .into_iter()
        .collect();
    let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(
        Some(&format!("refs/heads/{branch}")),
        &signature,
        &signature,
        message,
        &tree,
        &parent_refs,
    )
}

/// Builds the tree of every file under `prefix` (recursively).
fn write_tree(repo: &Repository, files: &Files, prefix: &str) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(None)?;
    let mut subdirs: BTreeMap<&str, ()> = BTreeMap::new();
    for (path, (content, executable)) in files.range(prefix.to_string()..) {
        let Some(rest) = path.strip_prefix(prefix) else {
            break;
        };
        match rest.split_once('/') {
            Some((dir, _)) => {
                subdirs.insert(dir, ());
            }
            None => {
                let blob = repo.blob(content)?;
                let mode = if *executable {
                    FileMode::BlobExecutable
                } else {
                    FileMode::Blob
                };
                builder.insert(rest, blob, i32::from(mode))?;
            }
        }
    }
    for dir in subdirs.keys() {
        let sub = write_tree(repo, files, &format!("{prefix}{dir}/"))?;
        builder.insert(dir, sub, i32::from(FileMode::Tree))?;
    }
    builder.write()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_files_become_nested_trees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = open_or_init(&dir.path().join("r.git")).expect("repo");
        let mut files = Files::new();
        files.insert("a.txt".into(), (b"a".to_vec(), false));
        files.insert("apps/shop/app.yaml".into(), (b"x".to_vec(), false));
        files.insert("bin/run".into(), (b"#!/bin/sh".to_vec(), true));
        let id = commit(&repo, "master", None, &files, "first").expect("commit");
        let tree = repo.find_commit(id).expect("commit").tree().expect("tree");
        assert!(tree.get_path(Path::new("apps/shop/app.yaml")).is_ok());
        assert_eq!(
            tree.get_path(Path::new("bin/run")).expect("bin").filemode(),
            i32::from(FileMode::BlobExecutable)
        );
        let second = commit(&repo, "latest", Some(id), &files, "second").expect("commit");
        assert_eq!(
            repo.find_commit(second)
                .expect("c")
                .parent_id(0)
                .expect("parent"),
            id
        );
    }
}
