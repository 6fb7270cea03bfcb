//! Merging an approved change request: in the bare mirror (no working
//! tree), then pushed to the remote without force, so a target branch that
//! moved meanwhile is never overwritten.

use std::path::Path;

use git2::{MergeOptions, PushOptions, RemoteCallbacks, Repository, Signature};

use super::{GitError, GitStore, fetch_blocking, parse_oid};
use serde::{Deserialize, Serialize};

/// How Gantry merges an approved change request into its target branch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeStrategy {
    /// Always a merge commit (the request stays visible in the history).
    #[default]
    MergeCommit,
    /// Only a fast-forward; a request behind its target must be updated first.
    FastForward,
}

impl MergeStrategy {
    pub fn parse(text: &str) -> Option<MergeStrategy> {
        match text {
            "merge-commit" => Some(MergeStrategy::MergeCommit),
            "fast-forward" => Some(MergeStrategy::FastForward),
            _ => None,
        }
    }
}

/// What to merge, and how.
#[derive(Clone, Debug)]
pub struct MergeRequest {
    pub source_branch: String,
    /// The approved head: the merge refuses if the source moved since.
    pub source_sha: String,
    pub target_branch: String,
    pub strategy: MergeStrategy,
    /// The merge commit's message (unused for a fast-forward).
    pub message: String,
    /// The commit an earlier, interrupted attempt recorded before pushing
    /// (its replica stopped): if the target has it, that merge landed.
    pub interrupted: Option<String>,
    /// What approvals cover on the target branch (an override's included):
    /// a merge that would take a commit outside it live — on the target's
    /// head, or under the request's — is not made. `None`: the target is no
    /// protected environment's branch.
    pub target_coverage: Option<super::Coverage>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The target branch now points at `sha` on the remote.
    Merged { sha: String, fast_forward: bool },
    /// The target already contains the source.
    AlreadyMerged { target_sha: String },
    /// The target already contains `sha`, the commit an interrupted attempt
    /// pushed: that merge landed, and only its record is missing.
    Landed { sha: String },
    /// The same files were changed on both sides.
    Conflict { files: Vec<String> },
    /// A fast-forward was required but the target has commits the source
    /// lacks.
    NotFastForward,
    /// The source branch moved (or vanished) after approval.
    SourceMoved { now: Option<String> },
    /// The target's head carries commits no approval covers: merging
    /// would take them live under this request's approval.
    Uncovered {
        target_sha: String,
        uncovered: super::Uncovered,
    },
}

impl GitStore {
    /// Fetches, merges `request` in the mirror and pushes the result to
    /// `url`. `before_push` receives the commit about to be pushed and may
    /// record it; an error from it cancels the push.
    pub async fn merge_and_push<F>(
        &self,
        url: &str,
        request: MergeRequest,
        before_push: F,
    ) -> Result<MergeOutcome, GitError>
    where
        F: FnOnce(&str) -> Result<(), GitError> + Send + 'static,
    {
        let url_owned = url.to_string();
        self.with_mirror(url, move |path| {
            merge_blocking(path, &url_owned, &request, before_push)
        })
        .await
    }
}

fn merge_blocking<F>(
    path: &Path,
    url: &str,
    request: &MergeRequest,
    before_push: F,
) -> Result<MergeOutcome, GitError>
where
    F: FnOnce(&str) -> Result<(), GitError>,
{
    let heads = fetch_blocking(path, url)?;
    let repo = Repository::open_bare(path)?;
    let source_now = heads.get(&request.source_branch);
    if source_now != Some(&request.source_sha) {
        return Ok(MergeOutcome::SourceMoved {
            now: source_now.cloned(),
        });
    }
    let Some(target_sha) = heads.get(&request.target_branch) else {
        return Err(GitError::Fetch {
            url: url.to_string(),
            message: format!("the target branch {} does not exist", request.target_branch),
        });
    };
    let source = parse_oid(&request.source_sha)?;
    let target = parse_oid(target_sha)?;
    if source == target || repo.graph_descendant_of(target, source)? {
        if let Some(sha) = &request.interrupted
            && let Ok(earlier) = parse_oid(sha)
            // An attempt that never pushed made its commit in another
            // replica's mirror, or in this one but not in the target.
            && (earlier == target || repo.graph_descendant_of(target, earlier).unwrap_or(false))
        {
            return Ok(MergeOutcome::Landed { sha: sha.clone() });
        }
        return Ok(MergeOutcome::AlreadyMerged {
            target_sha: target_sha.clone(),
        });
    }
    if let Some(coverage) = &request.target_coverage {
        let uncovered = super::coverage::uncovered_in_any(&repo, &[target, source], coverage)?;
        if !uncovered.is_empty() {
            return Ok(MergeOutcome::Uncovered {
                target_sha: target_sha.clone(),
                uncovered,
            });
        }
    }
    let fast_forwardable = repo.graph_descendant_of(source, target)?;
    let (new_head, fast_forward) = match request.strategy {
        MergeStrategy::FastForward if fast_forwardable => (source, true),
        MergeStrategy::FastForward => return Ok(MergeOutcome::NotFastForward),
        MergeStrategy::MergeCommit => {
            let source_commit = repo.find_commit(source)?;
            let target_commit = repo.find_commit(target)?;
            let mut index =
                repo.merge_commits(&target_commit, &source_commit, Some(&MergeOptions::new()))?;
            if index.has_conflicts() {
                let mut files: Vec<String> = index
                    .conflicts()?
                    .filter_map(Result::ok)
                    .filter_map(|conflict| conflict.our.or(conflict.their).or(conflict.ancestor))
                    .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
                    .collect();
                files.sort();
                files.dedup();
                return Ok(MergeOutcome::Conflict { files });
            }
            let tree = repo.find_tree(index.write_tree_to(&repo)?)?;
            let gantry = Signature::now("Gantry", "gantry@localhost")?;
            let commit = repo.commit(
                None,
                &gantry,
                &gantry,
                &request.message,
                &tree,
                &[&target_commit, &source_commit],
            )?;
            (commit, false)
        }
    };
    let sha = new_head.to_string();
    before_push(&sha)?;
    push(&repo, url, new_head, &request.target_branch)?;
    // The mirror follows the remote at once (the next fetch would anyway).
    repo.reference(
        &format!("refs/heads/{}", request.target_branch),
        new_head,
        true,
        "gantry merge",
    )?;
    Ok(MergeOutcome::Merged { sha, fast_forward })
}

/// Pushes `commit` to `branch` without force; a rejected update is an
/// error naming the branch.
pub(super) fn push(
    repo: &Repository,
    url: &str,
    commit: git2::Oid,
    branch: &str,
) -> Result<(), GitError> {
    let staging_ref = format!("refs/gantry/push/{branch}");
    repo.reference(&staging_ref, commit, true, "gantry push")?;
    let mut rejected: Option<String> = None;
    let result = {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.push_update_reference(|_, status| {
            if let Some(status) = status {
                rejected = Some(status.to_string());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let mut remote = repo.remote_anonymous(url)?;
        remote.push(
            &[format!("{staging_ref}:refs/heads/{branch}")],
            Some(&mut options),
        )
    };
    if let Ok(mut reference) = repo.find_reference(&staging_ref) {
        let _ = reference.delete();
    }
    let fail = |message: String| GitError::Push {
        url: url.to_string(),
        branch: branch.to_string(),
        message,
    };
    result.map_err(|error| fail(error.message().to_string()))?;
    match rejected {
        Some(status) => Err(fail(status)),
        None => Ok(()),
    }
}
