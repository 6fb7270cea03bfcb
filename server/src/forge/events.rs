//! What a forge delivery means for Gantry, whichever forge sent it: a branch
//! moved or was deleted, or a merge/pull request changed. Everything else is
//! acknowledged and ignored.

use serde_json::Value;

use super::Forge;

/// A merge/pull request's life, as the three forges report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestAction {
    Opened,
    Updated,
    Merged,
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForgeEvent {
    /// A branch moved (`deleted`: it is gone). Gantry fetches the repo.
    Branch {
        repos: Vec<String>,
        branch: String,
        deleted: bool,
        /// The push: the head before and after, and the forge account that
        /// pushed (authenticated by the forge; the commits' author lines
        /// are the pusher's to write and mean nothing).
        push: Option<Push>,
    },
    /// A merge/pull request was opened, updated, merged or closed.
    Request {
        repos: Vec<String>,
        number: i64,
        action: RequestAction,
        source_branch: String,
        target_branch: String,
        head_sha: Option<String>,
        title: String,
        description: String,
        author: String,
        /// The fork it comes from, when its head is in another repository:
        /// untrusted (see `forge::on_request`).
        fork: Option<String>,
        /// For a merged request: the forge account that merged it and the
        /// commit the merge made on the target.
        merged: Option<ForgeMerge>,
    },
    /// Nothing for Gantry (a ping, a label, a star…): why.
    Ignored(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub before: Option<String>,
    pub after: String,
    pub pusher: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgeMerge {
    pub by: String,
    pub commit: Option<String>,
}

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The URLs a repository is known by in the payload (clone, SSH, web).
fn repos(payload: &Value, forge: Forge) -> Vec<String> {
    let pointers: &[&str] = match forge {
        Forge::GitLab => &[
            "/project/git_http_url",
            "/project/git_ssh_url",
            "/project/web_url",
            "/repository/git_http_url",
        ],
        Forge::GitHub | Forge::Gitea => &[
            "/repository/clone_url",
            "/repository/ssh_url",
            "/repository/html_url",
            "/repository/git_url",
        ],
    };
    pointers
        .iter()
        .map(|p| text(payload, p))
        .filter(|url| !url.is_empty())
        .collect()
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Reads one delivery.
pub fn normalize(forge: Forge, event: &str, payload: &Value) -> ForgeEvent {
    match (forge, event) {
        (Forge::GitHub | Forge::Gitea, "push") | (Forge::GitLab, "Push Hook") => {
            let Some(branch) = text(payload, "/ref")
                .strip_prefix("refs/heads/")
                .map(str::to_string)
            else {
                return ForgeEvent::Ignored("a push to a tag".into());
            };
            let deleted = payload["deleted"].as_bool().unwrap_or(false)
                || text(payload, "/after") == ZERO_SHA;
            // GitHub and Gitea name the account in `sender`, GitLab in
            // `user_username`.
            let pusher = match forge {
                Forge::GitLab => text(payload, "/user_username"),
                Forge::GitHub | Forge::Gitea => text(payload, "/sender/login"),
            };
            let after = text(payload, "/after");
            let push = (!deleted && !after.is_empty() && !pusher.is_empty()).then(|| Push {
                before: Some(text(payload, "/before")).filter(|b| !b.is_empty() && b != ZERO_SHA),
                after,
                pusher,
            });
            ForgeEvent::Branch {
                repos: repos(payload, forge),
                branch,
                deleted,
                push,
            }
        }
        (Forge::GitHub | Forge::Gitea, "delete") => {
            if text(payload, "/ref_type") != "branch" {
                return ForgeEvent::Ignored("a deleted tag".into());
            }
            ForgeEvent::Branch {
                repos: repos(payload, forge),
                branch: text(payload, "/ref"),
                deleted: true,
                push: None,
            }
        }
        (Forge::GitHub | Forge::Gitea, "pull_request") => {
            let merged = payload["pull_request"]["merged"].as_bool().unwrap_or(false);
            let action = match (text(payload, "/action").as_str(), merged) {
                ("opened" | "reopened", _) => RequestAction::Opened,
                ("synchronize" | "synchronized" | "edited", _) => RequestAction::Updated,
                ("closed", true) => RequestAction::Merged,
                ("closed", false) => RequestAction::Closed,
                (other, _) => return ForgeEvent::Ignored(format!("pull request {other}")),
            };
            let pr = &payload["pull_request"];
            // A head repository that is not the base one (or is gone while
            // the base is named: a deleted fork) is a fork.
            let (head_repo, base_repo) = (&pr["head"]["repo"], &pr["base"]["repo"]);
            let same = match (head_repo.is_null(), base_repo.is_null()) {
                (true, true) => true,
                (true, false) | (false, true) => false,
                (false, false) => match (head_repo["id"].as_i64(), base_repo["id"].as_i64()) {
                    (Some(head), Some(base)) => head == base,
                    _ => head_repo["full_name"] == base_repo["full_name"],
                },
            };
            let fork = (!same).then(|| {
                Some(text(head_repo, "/full_name"))
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| "a deleted fork".into())
            });
            ForgeEvent::Request {
                repos: repos(payload, forge),
                number: pr["number"]
                    .as_i64()
                    .or_else(|| payload["number"].as_i64())
                    .unwrap_or_default(),
                action,
                source_branch: text(pr, "/head/ref"),
                target_branch: text(pr, "/base/ref"),
                head_sha: Some(text(pr, "/head/sha")).filter(|s| !s.is_empty()),
                title: text(pr, "/title"),
                description: text(pr, "/body"),
                author: text(pr, "/user/login"),
                fork,
                merged: (action == RequestAction::Merged).then(|| ForgeMerge {
                    by: text(pr, "/merged_by/login"),
                    commit: Some(text(pr, "/merge_commit_sha")).filter(|s| !s.is_empty()),
                }),
            }
        }
        (Forge::GitLab, "Merge Request Hook") => {
            let mr = &payload["object_attributes"];
            let action = match text(mr, "/action").as_str() {
                "open" | "reopen" => RequestAction::Opened,
                "update" => RequestAction::Updated,
                "merge" => RequestAction::Merged,
                "close" => RequestAction::Closed,
                other => return ForgeEvent::Ignored(format!("merge request {other}")),
            };
            let fork = (mr["source_project_id"] != mr["target_project_id"]).then(|| {
                Some(text(mr, "/source/path_with_namespace"))
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| format!("project {}", mr["source_project_id"]))
            });
            ForgeEvent::Request {
                repos: repos(payload, forge),
                number: mr["iid"].as_i64().unwrap_or_default(),
                action,
                source_branch: text(mr, "/source_branch"),
                target_branch: text(mr, "/target_branch"),
                head_sha: Some(text(mr, "/last_commit/id")).filter(|s| !s.is_empty()),
                title: text(mr, "/title"),
                description: text(mr, "/description"),
                author: text(payload, "/user/username"),
                fork,
                // GitLab's hook names who acted in `user`: for a merge, the
                // merger (the request's author is `author_id`, a number).
                merged: (action == RequestAction::Merged).then(|| ForgeMerge {
                    by: text(payload, "/user/username"),
                    commit: Some(text(mr, "/merge_commit_sha")).filter(|s| !s.is_empty()),
                }),
            }
        }
        (_, other) => ForgeEvent::Ignored(format!("{} event {other}", forge.as_str())),
    }
}

/// The same repository, however it is written (`.git`, trailing slash,
/// case of the host and path).
pub fn same_repo(a: &str, b: &str) -> bool {
    let key = |url: &str| {
        url.trim()
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .to_ascii_lowercase()
    };
    !a.trim().is_empty() && key(a) == key(b)
}
