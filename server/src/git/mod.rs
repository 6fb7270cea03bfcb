//! Git: bare mirrors of the pipeline repo and every app repo in the data
//! directory, fetched incrementally with `git2`. Every operation runs on the
//! blocking pool, at most `max_parallel` at once, and one at a time per
//! mirror (libgit2 does not like two fetches into one repository).

mod coverage;
mod export;
mod history;
mod merge;
mod patch;

pub use coverage::{Coverage, CoveredRange, RangeBase, Uncovered};
pub use export::{Export, ExportLimits};
pub use history::{ChangedFile, FileCommit};
pub use merge::{MergeOutcome, MergeRequest, MergeStrategy};
pub use patch::{FilePatch, PatchLimits, Patches};

use crate::error::Rejected;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};

use git2::{AutotagOption, BranchType, FetchOptions, FetchPrune, Oid, Repository};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot fetch {}: {message}", redact_source(.url))]
    Fetch { url: String, message: String },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("commit {0} is not in the mirror")]
    UnknownCommit(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to write {0:?}: it would leave the checkout")]
    UnsafePath(String),
    #[error("cannot push to {branch} of {}: {message}", redact_source(.url))]
    Push {
        url: String,
        branch: String,
        message: String,
    },
    #[error("{0}")]
    Refused(String),
    /// A tree past an export limit: the text names the limit and the object.
    #[error("{0}")]
    TooLarge(String),
    #[error("cancelled")]
    Cancelled,
    #[error("git worker stopped: {0}")]
    Join(String),
}

impl crate::error::Classified for GitError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            // The remote did not answer or refused: an outage to retry.
            GitError::Fetch { .. } | GitError::Push { .. } => Kind::Unavailable,
            GitError::UnknownCommit(_) => Kind::NotFound,
            GitError::Refused(_) | GitError::UnsafePath(_) | GitError::TooLarge(_) => Kind::Invalid,
            GitError::Cancelled => Kind::Conflict,
            GitError::Git(_) | GitError::Io { .. } | GitError::Join(_) => Kind::Internal,
        }
    }
}

/// A commit, as people read it in the stack view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    pub sha: String,
    /// First line of the message.
    pub summary: String,
    pub author: String,
    pub author_email: String,
    /// Seconds since the epoch.
    pub time: i64,
}

impl CommitInfo {
    fn of(commit: &git2::Commit<'_>) -> CommitInfo {
        let author = commit.author();
        CommitInfo {
            sha: commit.id().to_string(),
            summary: commit
                .summary()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_string(),
            author: author.name().unwrap_or_default().to_string(),
            author_email: author.email().unwrap_or_default().to_string(),
            time: commit.time().seconds(),
        }
    }
}

/// The branch heads of a repository: branch name → commit SHA.
pub type Heads = BTreeMap<String, String>;

/// All mirrors, under one directory.
#[derive(Debug)]
pub struct GitStore {
    root: PathBuf,
    limits: ExportLimits,
    permits: Semaphore,
    locks: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
    /// `distance` answers: two commits' distance never changes.
    distances: StdMutex<Distances>,
}

/// (a, b) → (commits of a not in b, commits of b not in a).
type Distances = HashMap<(String, String), Distance>;

/// How two commits differ, as a lane tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Distance {
    /// Commits of the first that the second lacks.
    pub ahead: usize,
    /// Commits of the second that the first lacks.
    pub behind: usize,
    /// Both have the same tree: the same code, whatever the history says
    /// (a merge commit made by a promotion is "ahead" but changes nothing).
    pub same_tree: bool,
}

/// How long `distance` may walk history before it gives up (the lane
/// then says the stages cannot be compared yet).
const DISTANCE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Distances `distance` remembers, at most (then it starts over).
const DISTANCES_KEPT: usize = 20_000;

impl GitStore {
    pub fn new(root: PathBuf, max_parallel: usize) -> GitStore {
        GitStore {
            root,
            limits: ExportLimits::default(),
            permits: Semaphore::new(max_parallel.max(1)),
            locks: StdMutex::default(),
            distances: StdMutex::default(),
        }
    }

    /// Bounds every export by `limits` (`git.export_*`).
    pub fn with_export_limits(mut self, limits: ExportLimits) -> GitStore {
        self.limits = limits;
        self
    }

    /// The mirror directory for `url`: readable, and unique per URL.
    pub fn mirror_path(&self, url: &str) -> PathBuf {
        let digest = Sha256::digest(url.as_bytes());
        let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let stem: String = url
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .rsplit(['/', ':'])
            .next()
            .unwrap_or("repo")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        self.root.join(format!("{stem}-{hash}.git"))
    }

    /// Runs `work` on the mirror of `url` on the blocking pool, holding a
    /// global permit and the mirror's own lock.
    async fn with_mirror<T, F>(&self, url: &str, work: F) -> Result<T, GitError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, GitError> + Send + 'static,
    {
        let path = self.mirror_path(url);
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(path.display().to_string()).or_default().clone()
        };
        let _mirror = lock.lock().await;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| GitError::Join(e.to_string()))?;
        tokio::task::spawn_blocking(move || work(&path))
            .await
            .map_err(|e| GitError::Join(e.to_string()))?
    }

    /// Fetches every branch of `url` into its mirror (creating it on first
    /// use) and returns the branch heads. Deleted branches disappear.
    pub async fn fetch(&self, url: &str) -> Result<Heads, GitError> {
        let owned_url = url.to_string();
        self.with_mirror(url, move |path| fetch_blocking(path, &owned_url))
            .await
    }

    /// Fetches a fork's request head, which the forge keeps in the base
    /// repository under `remote_ref` (`refs/pull/7/head`), into the mirror
    /// as `refs/forks/<name>`; from then on it is a head named `<name>`
    /// (`pr-7`) like a branch. Returns its commit.
    pub async fn fetch_fork_head(
        &self,
        url: &str,
        remote_ref: &str,
        name: &str,
    ) -> Result<String, GitError> {
        let (owned_url, remote_ref, local) = (
            url.to_string(),
            remote_ref.to_string(),
            format!("{FORK_REFS}{name}"),
        );
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            let fail = |error: git2::Error| GitError::Fetch {
                url: owned_url.clone(),
                message: error.message().to_string(),
            };
            let mut remote = repo.remote_anonymous(&owned_url).map_err(fail)?;
            let mut options = FetchOptions::new();
            options
                .download_tags(AutotagOption::None)
                .update_fetchhead(false);
            remote
                .fetch(
                    &[format!("+{remote_ref}:{local}")],
                    Some(&mut options),
                    None,
                )
                .map_err(fail)?;
            let target = repo.refname_to_id(&local)?;
            Ok(target.to_string())
        })
        .await
    }

    /// Whether the head `name` is a fork's request head (and no branch of
    /// the repository): such a head is never trusted, whatever else says.
    pub async fn is_fork_head(&self, url: &str, name: &str) -> Result<bool, GitError> {
        let (branch, fork) = (format!("refs/heads/{name}"), format!("{FORK_REFS}{name}"));
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            Ok(repo.find_reference(&branch).is_err() && repo.find_reference(&fork).is_ok())
        })
        .await
    }

    /// Forgets a fork's request head (the request ended).
    pub async fn forget_fork_head(&self, url: &str, name: &str) -> Result<(), GitError> {
        let local = format!("{FORK_REFS}{name}");
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            match repo.find_reference(&local) {
                Ok(mut reference) => Ok(reference.delete()?),
                Err(error) if error.code() == git2::ErrorCode::NotFound => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    /// The heads as of the last fetch, without touching the network.
    pub async fn heads(&self, url: &str) -> Result<Heads, GitError> {
        self.with_mirror(url, |path| heads_of(&Repository::open_bare(path)?))
            .await
    }

    /// A file's text at a commit, `None` when the path does not exist.
    pub async fn read_file(
        &self,
        url: &str,
        sha: &str,
        file: &str,
    ) -> Result<Option<String>, GitError> {
        let (owned_url, sha, file) = (url.to_string(), sha.to_string(), file.to_string());
        self.with_mirror(url, move |path| {
            let repo = mirror_with(path, &owned_url, &sha)?;
            let tree = commit_of(&repo, &sha)?.tree()?;
            let entry = match tree.get_path(Path::new(&file)) {
                Ok(entry) => entry,
                Err(error) if error.code() == git2::ErrorCode::NotFound => return Ok(None),
                Err(error) => return Err(error.into()),
            };
            let blob = entry.to_object(&repo)?.peel_to_blob()?;
            Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
        })
        .await
    }

    /// Names of the sub-folders of `dir` at a commit (empty if none).
    pub async fn list_dirs(
        &self,
        url: &str,
        sha: &str,
        dir: &str,
    ) -> Result<Vec<String>, GitError> {
        let (owned_url, sha, dir) = (url.to_string(), sha.to_string(), dir.to_string());
        self.with_mirror(url, move |path| {
            let repo = mirror_with(path, &owned_url, &sha)?;
            let tree = commit_of(&repo, &sha)?.tree()?;
            let sub = match tree.get_path(Path::new(&dir)) {
                Ok(entry) => entry.to_object(&repo)?.peel_to_tree()?,
                Err(error) if error.code() == git2::ErrorCode::NotFound => return Ok(Vec::new()),
                Err(error) => return Err(error.into()),
            };
            Ok(sub
                .iter()
                .filter(|entry| entry.kind() == Some(git2::ObjectType::Tree))
                .filter_map(|entry| entry.name().ok().map(str::to_string))
                .collect())
        })
        .await
    }

    /// Writes what `export` asks of a commit's tree into `dest`, like `git
    /// archive`: no `.git`, modes and symlinks kept, within the export
    /// limits.
    pub async fn export(
        &self,
        url: &str,
        sha: &str,
        dest: &Path,
        export: Export,
    ) -> Result<(), GitError> {
        let (owned_url, sha, dest, limits) = (
            url.to_string(),
            sha.to_string(),
            dest.to_path_buf(),
            self.limits,
        );
        self.with_mirror(url, move |path| {
            let repo = mirror_with(path, &owned_url, &sha)?;
            let commit = commit_of(&repo, &sha)?;
            export::tree_fits(&repo, commit.tree_id(), limits, "")?;
            let mut tree = commit.tree()?;
            if let Some(subdir) = &export.subdir {
                let entry = tree.get_path(Path::new(subdir))?;
                export::tree_fits(&repo, entry.id(), limits, subdir)?;
                tree = entry.to_object(&repo)?.peel_to_tree()?;
            }
            export::write_tree(&repo, &tree, &dest, &export, limits, &sha)
        })
        .await
    }

    pub async fn commit_info(&self, url: &str, sha: &str) -> Result<CommitInfo, GitError> {
        let (owned_url, sha) = (url.to_string(), sha.to_string());
        self.with_mirror(url, move |path| {
            let repo = mirror_with(path, &owned_url, &sha)?;
            Ok(CommitInfo::of(&commit_of(&repo, &sha)?))
        })
        .await
    }

    /// The id of a commit's tree: what its files are, whatever commit
    /// holds them (a fast-forward and a merge with the same content agree).
    pub async fn tree_of(&self, url: &str, sha: &str) -> Result<String, GitError> {
        let (owned_url, sha) = (url.to_string(), sha.to_string());
        self.with_mirror(url, move |path| {
            let repo = mirror_with(path, &owned_url, &sha)?;
            Ok(commit_of(&repo, &sha)?.tree_id().to_string())
        })
        .await
    }

    /// A fingerprint of `folder` at commit `sha` of the repo at `url`,
    /// leaving out its entries named in `skip`: the same files give the same
    /// fingerprint whatever else the commit changed (another app's folder, a
    /// pin). A folder that does not exist has one too.
    pub async fn folder_fingerprint(
        &self,
        url: &str,
        sha: &str,
        folder: &str,
        skip: &[&str],
    ) -> Result<String, GitError> {
        let (owned_url, sha, folder) = (url.to_string(), sha.to_string(), folder.to_string());
        let skip: Vec<String> = skip.iter().map(|s| s.to_string()).collect();
        self.with_mirror(url, move |path| {
            let repo = mirror_with(path, &owned_url, &sha)?;
            let tree = commit_of(&repo, &sha)?.tree()?;
            let mut digest = Sha256::new();
            match tree.get_path(Path::new(&folder)) {
                Ok(entry) => {
                    let sub = entry.to_object(&repo)?.peel_to_tree()?;
                    // A tree lists its entries sorted: the order is stable.
                    for entry in sub.iter() {
                        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
                        if skip.contains(&name) {
                            continue;
                        }
                        digest.update(format!("{:o} {name}\0{}\n", entry.filemode(), entry.id()));
                    }
                }
                Err(error) if error.code() == git2::ErrorCode::NotFound => {}
                Err(error) => return Err(error.into()),
            }
            Ok(format!("{:x}", digest.finalize()))
        })
        .await
    }

    /// The parents of a commit, first parent first.
    pub async fn parents(&self, url: &str, sha: &str) -> Result<Vec<String>, GitError> {
        let (owned_url, sha) = (url.to_string(), sha.to_string());
        self.with_mirror(url, move |path| {
            let repo = mirror_with(path, &owned_url, &sha)?;
            Ok(commit_of(&repo, &sha)?
                .parent_ids()
                .map(|id| id.to_string())
                .collect())
        })
        .await
    }

    /// How many commits `a` has that `b` does not, the reverse, and whether
    /// their trees are the same: the arrows between a lane's stages. Remembered (commits never change),
    /// and read without waiting for a fetch of the same mirror: git's
    /// objects are immutable, so reading beside a fetch is safe.
    pub async fn distance(&self, url: &str, a: &str, b: &str) -> Result<Distance, GitError> {
        let key = (a.to_string(), b.to_string());
        let known = self
            .distances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
            .copied();
        if let Some(distance) = known {
            return Ok(distance);
        }
        let path = self.mirror_path(url);
        let (oa, ob) = (parse_oid(a)?, parse_oid(b)?);
        // Within the git work's bounds, and short: a page waits for it.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| GitError::Join(e.to_string()))?;
        let walk = tokio::task::spawn_blocking(move || -> Result<_, GitError> {
            let repo = Repository::open_bare(&path)?;
            let (ahead, behind) = repo.graph_ahead_behind(oa, ob)?;
            let same_tree = repo.find_commit(oa)?.tree_id() == repo.find_commit(ob)?.tree_id();
            Ok(Distance {
                ahead,
                behind,
                same_tree,
            })
        });
        let distance = tokio::time::timeout(DISTANCE_WITHIN, walk)
            .await
            .map_err(|_| {
                GitError::Join(format!(
                    "comparing {a} and {b} took over {DISTANCE_WITHIN:?}"
                ))
            })?
            .map_err(|e| GitError::Join(e.to_string()))??;
        let mut distances = self
            .distances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if distances.len() >= DISTANCES_KEPT {
            distances.clear();
        }
        distances.insert(key, distance);
        Ok(distance)
    }

    /// True when `ancestor` is `descendant` or one of its ancestors.
    pub async fn is_ancestor(
        &self,
        url: &str,
        ancestor: &str,
        descendant: &str,
    ) -> Result<bool, GitError> {
        let (ancestor, descendant) = (ancestor.to_string(), descendant.to_string());
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            let (a, d) = (parse_oid(&ancestor)?, parse_oid(&descendant)?);
            Ok(a == d || repo.graph_descendant_of(d, a)?)
        })
        .await
    }
}

fn fetch_blocking(path: &Path, url: &str) -> Result<Heads, GitError> {
    let repo = match Repository::open_bare(path) {
        Ok(repo) => repo,
        Err(_) => {
            std::fs::create_dir_all(path).map_err(|source| GitError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            Repository::init_bare(path)?
        }
    };
    let fail = |error: git2::Error| GitError::Fetch {
        url: url.to_string(),
        message: error.message().to_string(),
    };
    // libgit2 calls a missing local path an "unsupported URL protocol".
    let local = url.strip_prefix("file://").unwrap_or(url);
    if local.starts_with('/') && !Path::new(local).exists() {
        return Err(GitError::Fetch {
            url: url.to_string(),
            message: format!("no repository at {local}"),
        });
    }
    let mut remote = repo.remote_anonymous(url).map_err(fail)?;
    let mut options = FetchOptions::new();
    options
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    remote
        .fetch(&["+refs/heads/*:refs/heads/*"], Some(&mut options), None)
        .map_err(fail)?;
    // An anonymous remote does not prune local refs by itself: drop the
    // branches the remote no longer has.
    let advertised: Vec<String> = remote
        .list()
        .map_err(fail)?
        .iter()
        .filter_map(|head| head.name().strip_prefix("refs/heads/").map(str::to_string))
        .collect();
    for branch in repo.branches(Some(BranchType::Local))? {
        let (mut branch, _) = branch?;
        let name = branch.name()?.unwrap_or_default().to_string();
        if !advertised.contains(&name) {
            branch.delete()?;
        }
    }
    heads_of(&repo)
}

/// Where fork request heads live in a mirror (never fetched over by the
/// `refs/heads/*` refspec, never pruned as branches).
const FORK_REFS: &str = "refs/forks/";

fn heads_of(repo: &Repository) -> Result<Heads, GitError> {
    let mut heads = Heads::new();
    for branch in repo.branches(Some(BranchType::Local))? {
        let (branch, _) = branch?;
        if let (Some(name), Some(target)) = (branch.name()?, branch.get().target()) {
            heads.insert(name.to_string(), target.to_string());
        }
    }
    // A fork's head never takes the place of a real branch of that name.
    for reference in repo.references_glob(&format!("{FORK_REFS}*"))? {
        let reference = reference?;
        if let (Ok(name), Some(target)) = (reference.name(), reference.target())
            && let Some(name) = name.strip_prefix(FORK_REFS)
        {
            heads
                .entry(name.to_string())
                .or_insert_with(|| target.to_string());
        }
    }
    Ok(heads)
}

fn parse_oid(sha: &str) -> Result<Oid, GitError> {
    Oid::from_str(sha).map_err(|_| GitError::UnknownCommit(sha.to_string()))
}

fn commit_of<'r>(repo: &'r Repository, sha: &str) -> Result<git2::Commit<'r>, GitError> {
    repo.find_commit(parse_oid(sha)?)
        .map_err(|_| GitError::UnknownCommit(sha.to_string()))
}

/// A git branch name as `git check-ref-format --branch` would accept it.
/// The mirror of `url` with commit `sha` in it. Mirrors are caches, one
/// per replica: a commit another replica fetched (and planned a run for)
/// is fetched here on first use.
fn mirror_with(path: &Path, url: &str, sha: &str) -> Result<Repository, GitError> {
    if let Ok(repo) = Repository::open_bare(path)
        && commit_of(&repo, sha).is_ok()
    {
        return Ok(repo);
    }
    fetch_blocking(path, url)?;
    Ok(Repository::open_bare(path)?)
}

pub fn check_branch_name(name: &str) -> Result<(), Rejected> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{name}")) && !name.starts_with('-') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid branch name").into())
    }
}

/// A git URL as people may see it: `https://ghp_token@github.com/o/r` or
/// `https://user:pass@host/r` → `https://***@host/r` (forges take a token
/// as the user name, so the user part goes too).
pub fn redact_source(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            // Only URLs that cannot carry credentials refuse these.
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fetching_a_missing_repository_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = GitStore::new(dir.path().to_path_buf(), 2);
        let error = store
            .fetch("/nonexistent/ghost.git")
            .await
            .expect_err("missing repo");
        assert!(
            error.to_string().starts_with(
                "cannot fetch /nonexistent/ghost.git: no repository at /nonexistent/ghost.git"
            ),
            "{error}"
        );
    }

    /// A replica's mirror is a cache: a commit another replica fetched (it
    /// planned the run) is fetched on first use here, and a mirror that does
    /// not exist yet is made.
    #[tokio::test]
    async fn a_commit_this_replica_never_fetched_is_fetched_on_first_read() {
        let source = tempfile::tempdir().expect("source");
        let repo = Repository::init(source.path()).expect("init");
        std::fs::write(source.path().join("README"), "first\n").expect("write");
        let commit = |message: &str| {
            let mut index = repo.index().expect("index");
            index
                .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
                .expect("add");
            let tree = repo
                .find_tree(index.write_tree().expect("tree"))
                .expect("tree");
            let signature = git2::Signature::now("Ada", "ada@example.com").expect("signature");
            let parents: Vec<git2::Commit<'_>> = repo
                .head()
                .ok()
                .and_then(|head| head.peel_to_commit().ok())
                .into_iter()
                .collect();
            let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
            repo.commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .expect("commit")
            .to_string()
        };
        let first = commit("first");
        let url = source.path().display().to_string();
        let replica = tempfile::tempdir().expect("replica");
        let store = GitStore::new(replica.path().to_path_buf(), 2);
        assert_eq!(
            store.read_file(&url, &first, "README").await.expect("read"),
            Some("first\n".to_string()),
            "no mirror yet"
        );
        std::fs::write(source.path().join("README"), "second\n").expect("write");
        let second = commit("second");
        assert_eq!(
            store
                .read_file(&url, &second, "README")
                .await
                .expect("read"),
            Some("second\n".to_string()),
            "a mirror without the commit"
        );
        assert!(
            store
                .read_file(&url, &"0".repeat(40), "README")
                .await
                .is_err(),
            "a commit nobody has is still an error"
        );
    }
}
