//! Lists of commits on the approval screens: a change request's own
//! commits, and — set apart — the commits no approval covers yet (user
//! guide, docs/src/approvals.md, "What an approval covers"). Messages and author lines are whatever the
//! pusher wrote: shown as text, never trusted for who someone is.

use leptos::prelude::*;

use crate::dto::{ChangelogCommit, UncoveredCommits};
use crate::format::short_sha;

/// A table of commits, newest first.
pub fn commit_table(commits: Vec<ChangelogCommit>, testid: &'static str) -> impl IntoView {
    view! {
        <table class="data cards commits" data-testid=testid>
            <thead>
                <tr>
                    <th scope="col">"Commit"</th>
                    <th scope="col">"Message"</th>
                    <th scope="col">"Author line"</th>
                </tr>
            </thead>
            <tbody>
                {commits
                    .into_iter()
                    .map(|commit| {
                        view! {
                            <tr>
                                <td data-label="Commit" class="mono" title=commit.sha.clone()>
                                    {short_sha(&commit.sha).to_string()}
                                </td>
                                <td data-label="Message" class="commit-message">{commit.summary}</td>
                                <td data-label="Author line">{commit.author}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// "3 commits" / "at least 20000 commits".
pub fn count(uncovered: &UncoveredCommits) -> String {
    let noun = if uncovered.total == 1 {
        "commit"
    } else {
        "commits"
    };
    if uncovered.more {
        format!("at least {} {noun}", uncovered.total)
    } else {
        format!("{} {noun}", uncovered.total)
    }
}

/// The commits nothing covers, in a warning panel headed `title`, with
/// `lead` saying what the decision does about them.
pub fn uncovered_panel(
    uncovered: UncoveredCommits,
    title: String,
    lead: &'static str,
    testid: &'static str,
) -> impl IntoView {
    let listed = uncovered.commits.len() as i64;
    let rest = uncovered.total - listed;
    let label = title.clone();
    view! {
        <section class="panel panel-warn" aria-label=label data-testid=testid>
            <h2>{title}</h2>
            <p class="hint">{lead}</p>
            {commit_table(uncovered.commits, "uncovered-commits")}
            {(rest > 0).then(|| view! { <p class="hint">{format!("…and {rest} more.")}</p> })}
        </section>
    }
}
