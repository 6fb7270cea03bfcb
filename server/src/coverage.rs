//! What an approval covers (user guide, docs/src/approvals.md, "What an approval covers"). Whether a
//! protected environment may deploy a commit is decided by content, not by
//! the road the commit took: every commit between what the environment has
//! deployed and the candidate must be covered —
//!
//! - by a deployment there (it was covered when it went live),
//! - by an approved or overridden run of the environment (its approvers
//!   were shown every commit it would take live),
//! - by an approved change request into the environment's branch: only
//!   the request's own commits, what its head adds to the target head each
//!   approver saw,
//! - by Gantry's merge of such a request (made only onto a covered target,
//!   or by an admin's override),
//! - by a forge merge or push the policy counts (`approval.forge_merge`,
//!   `approval.forge_push`): what it adds, when a forge user mapped to an
//!   approver made it.
//!
//! Anything else holds the run, and the approval screens list it.

use app::dto::{ChangelogCommit, UncoveredCommits};

use crate::db::{self, Db, coverage::NewGrant, now_millis};
use crate::git::{Coverage, CoveredRange, GitError, GitStore, RangeBase, Uncovered};
use crate::gitops::schema::ApprovalPolicy;

#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
    #[error(transparent)]
    Git(#[from] GitError),
}

impl crate::error::Classified for CoverageError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            CoverageError::Db(error) => crate::error::Classified::kind(error),
            CoverageError::Git(error) => error.kind(),
        }
    }
}

/// A protected environment's branch, as the coverage rule reads it.
#[derive(Clone, Copy, Debug)]
pub struct Protected<'a> {
    pub app_id: i64,
    pub source_url: &'a str,
    pub branch: &'a str,
    /// The environment the branch deploys to (none before its first run).
    pub environment_id: Option<i64>,
    pub policy: &'a ApprovalPolicy,
}

/// Everything that covers commits on `target`'s branch today.
pub async fn of(db: &Db, target: Protected<'_>) -> Result<Coverage, crate::db::QueryError> {
    let pool = db.pool();
    let required = i64::from(target.policy.required);
    let mut coverage = Coverage::default();
    if let Some(env) = target.environment_id {
        coverage
            .full
            .extend(db::coverage::deployed_commits(pool, env).await?);
        coverage.full.extend(
            db::coverage::run_decisions(pool, env)
                .await?
                .into_iter()
                // A rejection takes back what approvals gave.
                .filter(|run| {
                    run.rejections == 0 && (run.approvers >= required || run.overrides > 0)
                })
                .map(|run| run.commit_sha),
        );
        coverage.ranges.extend(request_ranges(
            db::coverage::request_decisions(pool, env).await?,
            required,
        ));
    }
    for grant in db::coverage::grants(pool, target.app_id, target.branch).await? {
        let base = match (grant.kind.as_str(), grant.base_sha) {
            ("merge", _) => {
                coverage.full.push(grant.tip_sha);
                continue;
            }
            // A push that made the branch says nothing of what was under
            // it: only its own commit is the pusher's.
            ("forge_merge", _) | ("push", None) => RangeBase::FirstParent,
            // A forge's fast-forward: the commit is the pusher's, parents
            // and all; only it is covered.
            ("forge_ff", _) => RangeBase::Parents,
            ("push", Some(base)) => RangeBase::Commits(vec![base]),
            (kind, _) => {
                tracing::warn!(kind, "a coverage grant of an unknown kind covers nothing");
                continue;
            }
        };
        coverage.ranges.push(CoveredRange {
            tip: grant.tip_sha,
            base,
        });
    }
    Ok(coverage)
}

/// The approved heads of change requests, each covering what it adds to
/// every target head its deciders saw. Approvals recorded before Gantry
/// kept that head (no `base_sha`) cover nothing: they were given under the
/// old rule, and a request they approved is approved again.
fn request_ranges(
    decisions: Vec<db::coverage::RequestDecision>,
    required: i64,
) -> Vec<CoveredRange> {
    let mut heads: Vec<((i64, String), Vec<db::coverage::RequestDecision>)> = Vec::new();
    for decision in decisions {
        let key = (decision.change_request_id, decision.commit_sha.clone());
        match heads.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(decision),
            None => heads.push((key, vec![decision])),
        }
    }
    heads
        .into_iter()
        .filter_map(|((_, tip), decisions)| {
            // Given before bases were kept, or taken back by a rejection.
            if decisions
                .iter()
                .any(|d| d.decision == "rejected" || d.base_sha.is_none())
            {
                return None;
            }
            let mut approvers: Vec<i64> = decisions
                .iter()
                .filter(|d| d.decision == "approved")
                .map(|d| d.user_id)
                .collect();
            approvers.sort_unstable();
            approvers.dedup();
            let overridden = decisions.iter().any(|d| d.decision == "override");
            let met = i64::try_from(approvers.len()).unwrap_or(i64::MAX) >= required || overridden;
            met.then(|| CoveredRange {
                tip,
                base: RangeBase::Commits(
                    decisions.into_iter().filter_map(|d| d.base_sha).collect(),
                ),
            })
        })
        .collect()
}

/// The commits of `candidate` that nothing covers on `target`'s branch.
pub async fn uncovered(
    db: &Db,
    git: &GitStore,
    target: Protected<'_>,
    candidate: &str,
) -> Result<Uncovered, CoverageError> {
    let coverage = of(db, target).await?;
    Ok(git
        .uncovered(target.source_url, candidate, coverage)
        .await?)
}

/// Records Gantry's merge commit (or fast-forward) of an approved request
/// onto a target it checked: it covers everything under it.
pub async fn grant_merge<'e>(
    exec: impl sqlx::Executor<'e, Database = sqlx::Any>,
    app_id: i64,
    branch: &str,
    sha: &str,
    change_request_id: i64,
) -> Result<(), crate::db::QueryError> {
    db::coverage::grant(
        exec,
        &NewGrant {
            app_id,
            branch,
            kind: "merge",
            tip_sha: sha,
            base_sha: None,
            change_request_id: Some(change_request_id),
            user_id: None,
        },
        now_millis(),
    )
    .await
}

/// Records a forge push the policy counts: it covers what `sha` adds to
/// `before` (the branch's head before the push, as the forge said; with
/// none, only `sha` itself is known to be the pusher's).
pub async fn grant_push(
    db: &Db,
    target: Protected<'_>,
    sha: &str,
    before: Option<&str>,
    user_id: i64,
) -> Result<(), crate::db::QueryError> {
    db::coverage::grant(
        db.pool(),
        &NewGrant {
            app_id: target.app_id,
            branch: target.branch,
            kind: "push",
            tip_sha: sha,
            base_sha: before,
            change_request_id: None,
            user_id: Some(user_id),
        },
        now_millis(),
    )
    .await
}

/// `live` (what the environment runs) when `candidate` does not descend
/// from it: deploying it would go back — to an older release, or to a
/// history the branch was force-pushed to. Whatever covers its commits, a
/// rewind waits for an approval (an admin's rollback is the ledger's).
pub async fn rewinds(
    git: &GitStore,
    source_url: &str,
    live: Option<&str>,
    candidate: &str,
) -> Result<Option<String>, GitError> {
    let Some(live) = live.filter(|live| *live != candidate) else {
        return Ok(None);
    };
    let descends = git
        .is_ancestor(source_url, live, candidate)
        .await
        .unwrap_or(false);
    Ok((!descends).then(|| live.to_string()))
}

/// The uncovered commits as the approval screens show them.
pub fn view(uncovered: &Uncovered) -> UncoveredCommits {
    UncoveredCommits {
        rewinds_from: None,
        total: i64::try_from(uncovered.total).unwrap_or(i64::MAX),
        more: uncovered.more,
        commits: uncovered
            .commits
            .iter()
            .map(|commit| ChangelogCommit {
                sha: commit.sha.clone(),
                summary: commit.summary.clone(),
                author: commit.author.clone(),
                author_email: commit.author_email.clone(),
                time: commit.time * 1000,
                url: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use db::coverage::RequestDecision;

    fn decision(cr: i64, sha: &str, user: i64, kind: &str, base: Option<&str>) -> RequestDecision {
        RequestDecision {
            change_request_id: cr,
            commit_sha: sha.into(),
            user_id: user,
            decision: kind.into(),
            base_sha: base.map(str::to_string),
        }
    }

    #[test]
    fn a_request_head_covers_once_its_policy_is_met_with_every_base_its_approvers_saw() {
        let one = request_ranges(vec![decision(1, "h", 7, "approved", Some("t1"))], 2);
        assert!(one.is_empty(), "one of two approvals covers nothing");
        let two = request_ranges(
            vec![
                decision(1, "h", 7, "approved", Some("t1")),
                decision(1, "h", 7, "approved", Some("t1")),
                decision(1, "h", 8, "approved", Some("t2")),
            ],
            2,
        );
        assert_eq!(
            two,
            [CoveredRange {
                tip: "h".into(),
                base: RangeBase::Commits(vec!["t1".into(), "t1".into(), "t2".into()]),
            }]
        );
        let overridden = request_ranges(vec![decision(1, "h", 7, "override", Some("t"))], 2);
        assert_eq!(overridden.len(), 1);
        // Another head of the same request, or another request: apart.
        let apart = request_ranges(
            vec![
                decision(1, "h", 7, "approved", Some("t")),
                decision(1, "g", 8, "approved", Some("t")),
                decision(2, "h", 8, "approved", Some("t")),
            ],
            2,
        );
        assert!(apart.is_empty());
    }

    #[test]
    fn approvals_given_before_bases_were_kept_cover_nothing() {
        assert!(request_ranges(vec![decision(1, "h", 7, "approved", None)], 1).is_empty());
    }

    #[test]
    fn a_rejection_takes_back_what_the_approvals_of_a_head_covered() {
        let approved = vec![
            decision(1, "h", 7, "approved", Some("t")),
            decision(1, "h", 8, "approved", Some("t")),
        ];
        assert_eq!(request_ranges(approved.clone(), 2).len(), 1);
        let mut rejected = approved;
        rejected.push(decision(1, "h", 9, "rejected", None));
        assert!(request_ranges(rejected, 2).is_empty());
    }
}
