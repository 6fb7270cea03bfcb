//! What testers said about a change request's preview, shown on its page
//! and on the tester page behind a share link.

use leptos::prelude::*;

use crate::dto::TesterFeedback;
use crate::format::{short_sha, timestamp};

pub fn feedback_list(feedback: Vec<TesterFeedback>) -> impl IntoView {
    if feedback.is_empty() {
        return view! { <p class="muted">"No feedback yet."</p> }.into_any();
    }
    view! {
        <ul class="feedback" data-testid="feedback">
            {feedback
                .into_iter()
                .map(|entry| {
                    let via = entry.via_share_link.then_some(" (via a share link)");
                    let commit = entry
                        .commit_sha
                        .as_deref()
                        .map(|sha| format!(" on {}", short_sha(sha)))
                        .unwrap_or_default();
                    view! {
                        <li class=format!("feedback-entry verdict-{}", entry.verdict)>
                            <span class=format!(
                                "badge verdict verdict-{}",
                                entry.verdict,
                            )>{entry.verdict.clone()}</span>
                            " "
                            <strong>{entry.author}</strong>
                            {via}
                            <span class="muted">{format!("{commit} · {}", timestamp(entry.created_at))}</span>
                            {(!entry.comment.is_empty())
                                .then(|| view! { <p class="feedback-comment">{entry.comment}</p> })}
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}
