//! A change's files with their unified diff, each file folded in a
//! `<details>` (open while the change is small). Lines are the author's
//! text: shown as text, never as markup.

use leptos::prelude::*;

use crate::dto::{ChangeRequestFiles, FileDiff};

/// Files at or under this many changed lines in all start unfolded.
const OPEN_UP_TO: u32 = 200;

/// The "Changed files" panel.
pub fn files_panel(changed: ChangeRequestFiles) -> impl IntoView {
    if changed.unavailable {
        return view! {
            <section class="panel" aria-label="Changed files" data-testid="cr-files">
                <h2>"Changed files"</h2>
                <p class="notice" role="status">
                    "The changed files cannot be shown right now: Gantry's copy of the repository lacks a commit, or the branch shares no history with its target. The commits above are what an approval covers."
                </p>
            </section>
        }
        .into_any();
    }
    if changed.files.is_empty() {
        return ().into_any();
    }
    let total: u32 = changed
        .files
        .iter()
        .map(|f| {
            f.additions
                .unwrap_or(0)
                .saturating_add(f.deletions.unwrap_or(0))
        })
        .fold(0, u32::saturating_add);
    let open = total <= OPEN_UP_TO;
    let count = changed.files.len();
    let title = format!(
        "Changed files ({count}{})",
        if changed.more_files { "+" } else { "" }
    );
    view! {
        <section class="panel" aria-label="Changed files" data-testid="cr-files">
            <h2>{title}</h2>
            <p class="hint">
                "From where the branch left its target to its head."
                {changed
                    .lines_withheld
                    .then_some(" The lines themselves are for developers of the app.")}
            </p>
            {changed
                .files
                .into_iter()
                .map(|file| file_view(file, open))
                .collect_view()}
            {changed
                .more_files
                .then(|| view! { <p class="hint">"More files changed than are listed here."</p> })}
        </section>
    }
    .into_any()
}

fn file_view(file: FileDiff, open: bool) -> impl IntoView {
    let summary_counts = match (file.binary, file.additions, file.deletions) {
        (true, _, _) => "binary or too large to show".to_string(),
        (false, Some(added), Some(removed)) => format!("+{added} −{removed}"),
        _ => String::new(),
    };
    let has_lines = !file.lines.is_empty();
    view! {
        <details class="file-diff" open=open && has_lines data-file=file.path.clone()>
            <summary>
                <span class="mono file-path">{file.path.clone()}</span>
                " "
                <span class="muted">{file.status.clone()}</span>
                " "
                <span class="diff-counts">{summary_counts}</span>
            </summary>
            {has_lines
                .then(|| {
                    view! {
                        <pre class="diff" tabindex="0" aria-label=format!("Diff of {}", file.path)>
                            {file.lines.into_iter().map(line_view).collect_view()}
                        </pre>
                    }
                })}
            {file
                .truncated
                .then(|| view! { <p class="hint">"The rest of this file's diff is left out (size limit)."</p> })}
        </details>
    }
}

fn line_view(line: String) -> impl IntoView {
    let class = match line.chars().next() {
        Some('+') => "diff-line diff-add",
        Some('-') => "diff-line diff-del",
        Some('@') => "diff-line diff-hunk",
        _ => "diff-line",
    };
    view! { <span class=class>{line}"\n"</span> }
}
