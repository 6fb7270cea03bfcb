//! History questions the release ledger asks: which commits lie between two
//! versions, which files they changed, and writing one file (a pin) to a
//! branch as a commit of Gantry's.

use std::path::Path;

use git2::{Repository, Signature, Sort, build::TreeUpdateBuilder};

use super::{CommitInfo, GitError, GitStore, commit_of, fetch_blocking, merge::push, parse_oid};

/// A file two versions differ in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    /// added, modified, deleted, renamed, …
    pub status: String,
}

/// One file to write (or, with `content: None`, remove) in a commit.
#[derive(Clone, Debug)]
pub struct FileCommit {
    pub branch: String,
    pub path: String,
    pub content: Option<String>,
    pub message: String,
}

impl GitStore {
    /// The commits reachable from `to` but not from `from` (all of `to`'s
    /// history when `from` is `None`), newest first, at most `limit`.
    pub async fn log_range(
        &self,
        url: &str,
        from: Option<&str>,
        to: &str,
        limit: usize,
    ) -> Result<Vec<CommitInfo>, GitError> {
        let (from, to) = (from.map(str::to_string), to.to_string());
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            let mut walk = repo.revwalk()?;
            walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
            walk.push(commit_of(&repo, &to)?.id())?;
            if let Some(from) = &from {
                walk.hide(commit_of(&repo, from)?.id())?;
            }
            let mut out = Vec::new();
            for oid in walk.take(limit) {
                out.push(CommitInfo::of(&repo.find_commit(oid?)?));
            }
            Ok(out)
        })
        .await
    }

    /// The files that differ between the trees of `from` and `to`.
    pub async fn changed_files(
        &self,
        url: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<ChangedFile>, GitError> {
        let (from, to) = (from.to_string(), to.to_string());
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            let old = commit_of(&repo, &from)?.tree()?;
            let new = commit_of(&repo, &to)?.tree()?;
            let mut diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None)?;
            diff.find_similar(None)?;
            Ok(diff
                .deltas()
                .map(|delta| {
                    let file = delta.new_file().path().or_else(|| delta.old_file().path());
                    ChangedFile {
                        path: file.map(|p| p.display().to_string()).unwrap_or_default(),
                        status: format!("{:?}", delta.status()).to_lowercase(),
                    }
                })
                .collect())
        })
        .await
    }

    /// The index of the first of `candidates` that contains `sha` (is it,
    /// or descends from it). Commits the mirror lacks are passed over.
    pub async fn first_containing(
        &self,
        url: &str,
        sha: &str,
        candidates: Vec<String>,
    ) -> Result<Option<usize>, GitError> {
        let sha = sha.to_string();
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            let wanted = parse_oid(&sha)?;
            for (index, candidate) in candidates.iter().enumerate() {
                let Ok(oid) = parse_oid(candidate) else {
                    continue;
                };
                if oid == wanted || repo.graph_descendant_of(oid, wanted).unwrap_or(false) {
                    return Ok(Some(index));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Commits `change` on top of the remote's branch and pushes it (never
    /// forced: a branch that moved meanwhile is fetched and tried once
    /// more). Returns the new commit, or `None` when the file already had
    /// that content.
    pub async fn commit_file(
        &self,
        url: &str,
        change: FileCommit,
    ) -> Result<Option<String>, GitError> {
        let url_owned = url.to_string();
        self.with_mirror(url, move |path| {
            match commit_file_blocking(path, &url_owned, &change) {
                Err(GitError::Push { .. }) => commit_file_blocking(path, &url_owned, &change),
                other => other,
            }
        })
        .await
    }
}

fn commit_file_blocking(
    path: &Path,
    url: &str,
    change: &FileCommit,
) -> Result<Option<String>, GitError> {
    let heads = fetch_blocking(path, url)?;
    let repo = Repository::open_bare(path)?;
    let head_sha = heads.get(&change.branch).ok_or_else(|| GitError::Fetch {
        url: url.to_string(),
        message: format!("the branch {} does not exist", change.branch),
    })?;
    let parent = repo.find_commit(parse_oid(head_sha)?)?;
    let base = parent.tree()?;
    let mut update = TreeUpdateBuilder::new();
    match &change.content {
        Some(text) => {
            let blob = repo.blob(text.as_bytes())?;
            update.upsert(&change.path, blob, git2::FileMode::Blob);
        }
        None if base.get_path(Path::new(&change.path)).is_err() => return Ok(None),
        None => {
            update.remove(&change.path);
        }
    }
    let tree_id = update.create_updated(&repo, &base)?;
    if tree_id == base.id() {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id)?;
    let gantry = Signature::now("Gantry", "gantry@localhost")?;
    let commit = repo.commit(None, &gantry, &gantry, &change.message, &tree, &[&parent])?;
    push(&repo, url, commit, &change.branch)?;
    repo.reference(
        &format!("refs/heads/{}", change.branch),
        commit,
        true,
        "gantry commit",
    )?;
    Ok(Some(commit.to_string()))
}
