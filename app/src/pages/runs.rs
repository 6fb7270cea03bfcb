//! Pipeline runs, newest first: filters and paging live in the address,
//! so a filtered list can be shared.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::list_runs;
use crate::components::list::{Badge, EmptyState, PageHeader, Time, loaded};
use crate::dto::{RunQuery, RunState, RunSummary, RunsPage};
use crate::format::{duration, short_sha};

#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let run_query = move || {
        query.with(|q| {
            RunQuery {
                app: q.get("app"),
                environment: q.get("environment"),
                state: q.get("state"),
                branch: q.get("branch"),
                actor: q.get("actor"),
                before: q.get("before").and_then(|b| b.parse().ok()),
            }
            .cleaned()
        })
    };
    let runs = Resource::new(run_query, list_runs);
    view! {
        <PageHeader
            title="Runs"
            lead="Every pipeline run, newest first: what it built, who or what started it, how long it took and why it failed."
        />
        {move || filters(run_query())}
        {loaded(runs, move |page| runs_view(page, run_query()))}
    }
}

/// The filter bar: every field exact, blank for any.
fn filters(query: RunQuery) -> impl IntoView {
    let text = |label: &'static str, name: &'static str, value: Option<String>| {
        view! {
            <label>
                {label}
                <input type="text" name=name value=value.unwrap_or_default() />
            </label>
        }
    };
    let chosen = query.state.clone().unwrap_or_default();
    view! {
        <form method="get" class="filters" role="search" aria-label="Filter the runs">
            {text("App", "app", query.app)}
            {text("Environment", "environment", query.environment)}
            <label>
                "State"
                <select name="state">
                    <option value="" selected=chosen.is_empty()>"any"</option>
                    {RunState::ALL
                        .iter()
                        .map(|state| {
                            let name = state.as_str();
                            view! {
                                <option value=name selected=chosen == name>
                                    {name.replace('_', " ")}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            </label>
            {text("Branch", "branch", query.branch)}
            {text("Started by", "actor", query.actor)}
            <button type="submit">"Show"</button>
            <a href="/runs">"All runs"</a>
        </form>
    }
}

fn runs_view(page: RunsPage, query: RunQuery) -> impl IntoView {
    if page.runs.is_empty() {
        return if query.is_filtered() || query.before.is_some() {
            view! {
                <EmptyState title="No run matches these filters">
                    <p>
                        "Filters match names exactly. "
                        <a href="/runs">"Show all runs"</a>
                        "."
                    </p>
                </EmptyState>
            }
            .into_any()
        } else {
            view! {
                <EmptyState title="No runs yet">
                    <p>"A run starts when a new commit lands on a branch of an app Gantry watches."</p>
                </EmptyState>
            }
            .into_any()
        };
    }
    let older = page.older.map(|before| {
        let href = page_href(&query, Some(before));
        view! { <a href=href rel="next" data-testid="runs-older">"Older runs →"</a> }
    });
    let newest = query.before.map(|_| {
        let href = page_href(&query, None);
        view! { <a href=href rel="prev">"← Newest runs"</a> }
    });
    view! {
        {run_table(page.runs)}
        {(older.is_some() || newest.is_some())
            .then(|| view! { <nav class="pager" aria-label="Pages of runs">{newest}{older}</nav> })}
    }
    .into_any()
}

/// The runs list's address for `query`, from `before` (or the newest).
fn page_href(query: &RunQuery, before: Option<i64>) -> String {
    let query = RunQuery {
        before,
        ..query.clone()
    }
    .query_string();
    if query.is_empty() {
        "/runs".to_string()
    } else {
        format!("/runs?{query}")
    }
}

/// The runs table (also on an app's page).
pub(crate) fn run_table(runs: Vec<RunSummary>) -> impl IntoView {
    if runs.is_empty() {
        return view! {
            <EmptyState title="No runs yet">
                <p>"A run starts when a new commit lands on a branch of an app Gantry watches."</p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data cards runs-table">
            <thead>
                <tr>
                    <th scope="col">"Run"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"App"</th>
                    <th scope="col">"Commit"</th>
                    <th scope="col">"Started by"</th>
                    <th scope="col">"Started"</th>
                    <th scope="col">"Duration"</th>
                </tr>
            </thead>
            <tbody>{runs.into_iter().map(run_row).collect_view()}</tbody>
        </table>
    }
    .into_any()
}

fn run_row(run: RunSummary) -> impl IntoView {
    let took = run
        .finished_at
        .map(|end| duration(end - run.started_at.unwrap_or(run.created_at)));
    let superseded = run
        .superseded_by
        .filter(|_| run.state == RunState::Superseded);
    let reason = run
        .reason
        .clone()
        .filter(|_| matches!(run.state, RunState::Failed | RunState::Cancelled));
    let started_by = match &run.actor {
        Some(actor) => format!("{} · {actor}", trigger_name(&run.trigger)),
        None => trigger_name(&run.trigger).to_string(),
    };
    view! {
        <tr data-testid="run-row">
            <td data-label="Run" class="mono">
                <a href=format!("/runs/{}", run.id)>{format!("#{}", run.id)}</a>
            </td>
            <td data-label="State" class="card-state">
                <Badge state=run.state.as_str() />
                {superseded.map(|by| view! {
                    <span class="muted">" by " <a href=format!("/runs/{by}")>{format!("#{by}")}</a></span>
                })}
                {reason.map(|reason| view! { <span class="run-reason" data-testid="run-reason">{reason}</span> })}
            </td>
            <td data-label="App">
                <a href=format!("/apps/{}", run.app)>{run.app.clone()}</a>
                <span class="muted">{format!(" · {}", run.environment)}</span>
            </td>
            <td data-label="Commit" class="run-commit">
                <span class="mono" title=run.commit_sha.clone()>{short_sha(&run.commit_sha).to_string()}</span>
                " "
                <span class="mono muted run-branch" title=run.branch.clone()>{run.branch.clone()}</span>
                {run.commit_message.clone().map(|m| view! { <span class="run-message">{m}</span> })}
            </td>
            <td data-label="Started by">{started_by}</td>
            <td data-label="Started"><Time at=run.started_at.unwrap_or(run.created_at) /></td>
            <td data-label="Duration">{took.unwrap_or_else(|| "—".to_string())}</td>
        </tr>
    }
}

/// What started a run, in words.
pub(crate) fn trigger_name(trigger: &str) -> &str {
    match trigger {
        "change_request" => "merged change request",
        "promote" => "promotion",
        other => other,
    }
}
