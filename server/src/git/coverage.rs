//! Which commits of a candidate no approval covers: `git rev-list
//! candidate --not <covered tips>`, less the ranges approvals granted.
//! The rule itself (what counts as covered) is the domain's (`coverage`);
//! this answers the history question, in the mirror.

use std::collections::HashSet;

use git2::{Oid, Repository, Sort};

use super::{CommitInfo, GitError, GitStore, parse_oid};

/// More commits than this between what is covered and a candidate are not
/// walked further: the candidate is held, and the list says "at least".
const WALK_LIMIT: usize = 20_000;
/// How many uncovered commits are listed (the total is counted).
const LIST_LIMIT: usize = 100;

/// What is covered, as history: tips whose whole history is covered, and
/// ranges that cover only what their tip adds to their base.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub full: Vec<String>,
    pub ranges: Vec<CoveredRange>,
}

/// `git rev-list tip --not base…`: the commits `tip` adds to its base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoveredRange {
    pub tip: String,
    pub base: RangeBase,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeBase {
    /// What the tip adds to every one of these (an approval of a change
    /// request: each approver saw the request against the target's head).
    Commits(Vec<String>),
    /// What the tip adds to its first parent (a forge's merge commit).
    FirstParent,
    /// The tip alone (a commit a forge fast-forwarded: its parents are its
    /// pusher's to choose).
    Parents,
}

/// The commits of a candidate nothing covers, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uncovered {
    /// At most a hundred of them.
    pub commits: Vec<CommitInfo>,
    /// How many there are (at least this many when `more`).
    pub total: usize,
    /// The walk stopped at its limit: there are at least `total`.
    pub more: bool,
}

impl Uncovered {
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// "abc123def456 fix typo (Mallory), …" for messages, at most `n` named.
    pub fn describe(&self, n: usize) -> String {
        let mut named: Vec<String> = self
            .commits
            .iter()
            .take(n)
            .map(|c| {
                format!(
                    "{} {:?} by {}",
                    &c.sha[..c.sha.len().min(12)],
                    c.summary,
                    c.author
                )
            })
            .collect();
        let listed = named.len();
        if self.total > listed {
            let more = if self.more { "at least " } else { "" };
            named.push(format!("and {more}{} more", self.total - listed));
        }
        named.join(", ")
    }
}

impl GitStore {
    /// The commits of `candidate` (in the mirror of `url`) that `coverage`
    /// does not cover.
    pub async fn uncovered(
        &self,
        url: &str,
        candidate: &str,
        coverage: Coverage,
    ) -> Result<Uncovered, GitError> {
        let candidate = candidate.to_string();
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            uncovered_in(&repo, parse_oid(&candidate)?, &coverage)
        })
        .await
    }
}

impl GitStore {
    /// The commits of any of `candidates` that `coverage` does not cover.
    pub async fn uncovered_any(
        &self,
        url: &str,
        candidates: &[&str],
        coverage: Coverage,
    ) -> Result<Uncovered, GitError> {
        let candidates: Vec<String> = candidates.iter().map(|c| c.to_string()).collect();
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            let oids = candidates
                .iter()
                .map(|sha| parse_oid(sha))
                .collect::<Result<Vec<_>, _>>()?;
            uncovered_in_any(&repo, &oids, &coverage)
        })
        .await
    }
}

/// A commit the mirror has, or `None` (a covered tip the remote dropped is
/// no tip of anything the remote serves).
fn known(repo: &Repository, sha: &str) -> Option<Oid> {
    let oid = Oid::from_str(sha).ok()?;
    repo.find_commit(oid).ok().map(|_| oid)
}

/// The commits of any of `candidates` nothing covers, each once.
pub(super) fn uncovered_in_any(
    repo: &Repository,
    candidates: &[Oid],
    coverage: &Coverage,
) -> Result<Uncovered, GitError> {
    let mut order: Vec<Oid> = Vec::new();
    let mut seen = HashSet::new();
    let mut more = false;
    for candidate in candidates {
        let (found, cut) = uncovered_oids(repo, *candidate, coverage)?;
        more |= cut;
        order.extend(found.into_iter().filter(|oid| seen.insert(*oid)));
    }
    listed(repo, order, more)
}

pub(super) fn uncovered_in(
    repo: &Repository,
    candidate: Oid,
    coverage: &Coverage,
) -> Result<Uncovered, GitError> {
    let (order, more) = uncovered_oids(repo, candidate, coverage)?;
    listed(repo, order, more)
}

fn listed(repo: &Repository, order: Vec<Oid>, more: bool) -> Result<Uncovered, GitError> {
    let commits = order
        .iter()
        .take(LIST_LIMIT)
        .map(|oid| Ok(CommitInfo::of(&repo.find_commit(*oid)?)))
        .collect::<Result<Vec<_>, GitError>>()?;
    Ok(Uncovered {
        commits,
        total: order.len(),
        more,
    })
}

/// The uncovered commits of `candidate`, newest first, and whether the
/// walk stopped at its limit.
fn uncovered_oids(
    repo: &Repository,
    candidate: Oid,
    coverage: &Coverage,
) -> Result<(Vec<Oid>, bool), GitError> {
    let full: Vec<Oid> = coverage
        .full
        .iter()
        .filter_map(|sha| known(repo, sha))
        .collect();
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
    walk.push(candidate)?;
    for oid in &full {
        walk.hide(*oid)?;
    }
    let mut order = Vec::new();
    let mut more = false;
    for oid in walk {
        if order.len() == WALK_LIMIT {
            more = true;
            break;
        }
        order.push(oid?);
    }
    let mut left: HashSet<Oid> = order.iter().copied().collect();
    if !more {
        // Only ranges whose tip is itself uncovered can cover anything
        // here that a full tip does not (a range under a covered tip is
        // covered already; one off this history is not consulted: stricter).
        for range in &coverage.ranges {
            let Some(tip) = known(repo, &range.tip).filter(|tip| left.contains(tip)) else {
                continue;
            };
            let mut granted = repo.revwalk()?;
            granted.push(tip)?;
            match &range.base {
                RangeBase::Commits(bases) => {
                    // A base this mirror lacks (force-pushed away before it
                    // fetched) would leave the tip's whole history granted:
                    // such a range grants nothing here.
                    let known_bases: Option<Vec<Oid>> =
                        bases.iter().map(|sha| known(repo, sha)).collect();
                    let Some(known_bases) = known_bases else {
                        continue;
                    };
                    for base in known_bases {
                        granted.hide(base)?;
                    }
                }
                RangeBase::FirstParent => {
                    if let Ok(parent) = repo.find_commit(tip)?.parent_id(0) {
                        granted.hide(parent)?;
                    }
                }
                RangeBase::Parents => {
                    for parent in repo.find_commit(tip)?.parent_ids() {
                        granted.hide(parent)?;
                    }
                }
            }
            for oid in &full {
                granted.hide(*oid)?;
            }
            for oid in granted {
                left.remove(&oid?);
            }
        }
    }
    let remaining: Vec<Oid> = order.into_iter().filter(|oid| left.contains(oid)).collect();
    Ok((remaining, more))
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Signature;

    /// A bare repository with commits made by hand: `commit(parents)`.
    struct History {
        _dir: tempfile::TempDir,
        repo: Repository,
    }

    impl History {
        fn new() -> History {
            let dir = tempfile::tempdir().expect("tempdir");
            let repo = Repository::init_bare(dir.path()).expect("repo");
            History { _dir: dir, repo }
        }

        fn commit(&self, message: &str, parents: &[Oid]) -> Oid {
            let blob = self.repo.blob(message.as_bytes()).expect("blob");
            let mut builder = self.repo.treebuilder(None).expect("builder");
            builder.insert(message, blob, 0o100644).expect("insert");
            let tree = self
                .repo
                .find_tree(builder.write().expect("tree"))
                .expect("tree");
            let who = Signature::now("Dev", "dev@example.com").expect("sig");
            let parents: Vec<git2::Commit<'_>> = parents
                .iter()
                .map(|p| self.repo.find_commit(*p).expect("parent"))
                .collect();
            let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
            self.repo
                .commit(None, &who, &who, message, &tree, &refs)
                .expect("commit")
        }

        fn uncovered(&self, candidate: Oid, coverage: &Coverage) -> Vec<String> {
            uncovered_in(&self.repo, candidate, coverage)
                .expect("walk")
                .commits
                .into_iter()
                .map(|c| c.summary)
                .collect()
        }
    }

    fn full(tips: &[Oid]) -> Coverage {
        Coverage {
            full: tips.iter().map(Oid::to_string).collect(),
            ranges: Vec::new(),
        }
    }

    #[test]
    fn what_lies_between_the_covered_tips_and_the_candidate_is_uncovered() {
        let h = History::new();
        let live = h.commit("live", &[]);
        let x = h.commit("x", &[live]);
        let y = h.commit("y", &[x]);
        assert_eq!(h.uncovered(y, &full(&[live])), ["y", "x"]);
        assert!(h.uncovered(live, &full(&[live])).is_empty());
        assert_eq!(h.uncovered(y, &full(&[])), ["y", "x", "live"]);
    }

    #[test]
    fn a_request_covers_only_what_it_adds_to_the_target_its_approvers_saw() {
        let h = History::new();
        let live = h.commit("live", &[]);
        // X was pushed straight onto the target; the request branched
        // before it and was approved against it.
        let x = h.commit("x", &[live]);
        let typo = h.commit("typo", &[live]);
        let merge = h.commit("merge", &[x, typo]);
        let approved = Coverage {
            full: vec![live.to_string()],
            ranges: vec![CoveredRange {
                tip: typo.to_string(),
                base: RangeBase::Commits(vec![x.to_string()]),
            }],
        };
        assert_eq!(h.uncovered(merge, &approved), ["merge", "x"]);
        // A request whose branch contains X shows X as its own commit, and
        // its approval covers it.
        let on_x = h.commit("on x", &[x]);
        let reviewed = Coverage {
            full: vec![live.to_string()],
            ranges: vec![CoveredRange {
                tip: on_x.to_string(),
                base: RangeBase::Commits(vec![live.to_string()]),
            }],
        };
        assert!(h.uncovered(on_x, &reviewed).is_empty());
        // Several approvers: only what every one of them saw as the
        // request's own.
        let both = Coverage {
            full: vec![live.to_string()],
            ranges: vec![CoveredRange {
                tip: on_x.to_string(),
                base: RangeBase::Commits(vec![live.to_string(), x.to_string()]),
            }],
        };
        assert_eq!(h.uncovered(on_x, &both), ["x"]);
    }

    #[test]
    fn a_forge_merge_covers_what_it_adds_to_its_first_parent() {
        let h = History::new();
        let live = h.commit("live", &[]);
        let x = h.commit("x", &[live]);
        let feature = h.commit("feature", &[live]);
        let merge = h.commit("merge", &[x, feature]);
        let coverage = Coverage {
            full: vec![live.to_string()],
            ranges: vec![CoveredRange {
                tip: merge.to_string(),
                base: RangeBase::FirstParent,
            }],
        };
        assert_eq!(h.uncovered(merge, &coverage), ["x"]);
    }

    #[test]
    fn a_base_the_mirror_lacks_grants_nothing_and_a_fast_forward_grants_its_commit_alone() {
        let h = History::new();
        let live = h.commit("live", &[]);
        let x = h.commit("x", &[live]);
        let head = h.commit("head", &[x]);
        let unknown = Coverage {
            full: vec![live.to_string()],
            ranges: vec![CoveredRange {
                tip: head.to_string(),
                base: RangeBase::Commits(vec!["0123456789012345678901234567890123456789".into()]),
            }],
        };
        assert_eq!(h.uncovered(head, &unknown), ["head", "x"]);
        // A crafted merge fast-forwarded by a forge: parents [covered, x].
        let crafted = h.commit("crafted", &[live, x]);
        let fast_forwarded = Coverage {
            full: vec![live.to_string()],
            ranges: vec![CoveredRange {
                tip: crafted.to_string(),
                base: RangeBase::Parents,
            }],
        };
        assert_eq!(h.uncovered(crafted, &fast_forwarded), ["x"]);
    }

    #[test]
    fn the_description_names_commits_and_counts_the_rest() {
        let commit = |n: u8| CommitInfo {
            sha: format!("{n:040}"),
            summary: format!("change {n}"),
            author: "Mallory".into(),
            author_email: String::new(),
            time: 0,
        };
        let uncovered = Uncovered {
            commits: vec![commit(1), commit(2), commit(3)],
            total: 3,
            more: false,
        };
        assert_eq!(
            uncovered.describe(2),
            "000000000000 \"change 1\" by Mallory, 000000000000 \"change 2\" by Mallory, and 1 more"
        );
    }
}
