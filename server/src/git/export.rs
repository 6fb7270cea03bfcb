//! Writing a git tree to disk, refusing any entry name that could escape the
//! destination (crafted trees can hold `..` or names with `/`).

use std::path::Path;

use git2::{FileMode, Repository, Tree};

use super::GitError;

pub(super) fn write_tree(repo: &Repository, tree: &Tree<'_>, dest: &Path) -> Result<(), GitError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::Io { path, source }
    };
    std::fs::create_dir_all(dest).map_err(io(dest))?;
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
        let target = dest.join(name);
        match entry.filemode() {
            mode if mode == i32::from(FileMode::Tree) => {
                let subtree = entry.to_object(repo)?.peel_to_tree()?;
                write_tree(repo, &subtree, &target)?;
            }
            mode if mode == i32::from(FileMode::Link) => {
                let blob = entry.to_object(repo)?.peel_to_blob()?;
                let link = String::from_utf8_lossy(blob.content()).into_owned();
                std::os::unix::fs::symlink(&link, &target).map_err(io(&target))?;
            }
            mode if mode == i32::from(FileMode::Commit) => {
                // A submodule: its content is not in this repository.
                std::fs::create_dir_all(&target).map_err(io(&target))?;
            }
            mode => {
                let blob = entry.to_object(repo)?.peel_to_blob()?;
                std::fs::write(&target, blob.content()).map_err(io(&target))?;
                if mode == i32::from(FileMode::BlobExecutable) {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                        .map_err(io(&target))?;
                }
            }
        }
    }
    Ok(())
}
