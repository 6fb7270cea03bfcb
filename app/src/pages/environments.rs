//! Home: the pipeline repo's state and every application's environment
//! stack.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::api::{get_config_status, list_environments};
use crate::components::list::{Badge, EmptyState, PageHeader, loaded};
use crate::dto::{ConfigStatus, EnvironmentSummary};
use crate::format::{short_sha, timestamp};

#[component]
pub fn EnvironmentsPage() -> impl IntoView {
    let environments = Resource::new(|| (), |_| list_environments());
    let status = Resource::new(|| (), |_| get_config_status());
    view! {
        <PageHeader
            title="Environments"
            lead="Each application's stack: previews per branch, staging from latest, production from master."
        />
        {loaded(status, config_banner)}
        {loaded(environments, stacks)}
    }
}

/// Problems in the pipeline repo, where everyone sees them.
fn config_banner(status: ConfigStatus) -> impl IntoView {
    if status.issues.is_empty() {
        return ().into_any();
    }
    let sha = status
        .pipeline_sha
        .as_deref()
        .map(short_sha)
        .unwrap_or_default()
        .to_string();
    let heading = match status.state.as_deref() {
        Some("partial") => format!("Pipeline repo commit {sha}: some apps were not updated"),
        Some("rejected") => format!("Pipeline repo commit {sha} was not applied"),
        _ => "Some apps have problems".to_string(),
    };
    view! {
        <section class="notice notice-error config-issues" role="alert">
            <h2>{heading}</h2>
            <p>"Whatever was valid before stays active. Fix these and push again:"</p>
            <ul>
                {status
                    .issues
                    .into_iter()
                    .map(|issue| view! { <li class="mono">{issue.to_string()}</li> })
                    .collect_view()}
            </ul>
        </section>
    }
    .into_any()
}

/// The matrix: one row per app, one column per stack entry (previews
/// first, then the fixed environments in the order apps list them).
fn stacks(environments: Vec<EnvironmentSummary>) -> impl IntoView {
    if environments.is_empty() {
        return view! {
            <EmptyState title="No environments yet">
                <p>
                    "Environments appear when Gantry reconciles a pipeline repo and a branch of an app is pushed."
                </p>
                <p>"The user guide's Configuration page (docs/src/configuration.md) shows how to point Gantry at one."</p>
            </EmptyState>
        }
        .into_any();
    }
    let columns = columns(&environments);
    let mut by_app: BTreeMap<String, Vec<EnvironmentSummary>> = BTreeMap::new();
    for env in environments {
        by_app.entry(env.app.clone()).or_default().push(env);
    }
    let headers = columns.clone();
    view! {
        <div class="matrix-wrap">
            <table class="data matrix">
                <caption class="visually-hidden">"Apps and their environments"</caption>
                <thead>
                    <tr>
                        <th scope="col">"App"</th>
                        {headers
                            .into_iter()
                            .map(|column| view! { <th scope="col">{column}</th> })
                            .collect_view()}
                    </tr>
                </thead>
                <tbody>
                    {by_app
                        .into_iter()
                        .map(|(app, envs)| app_row(app, envs, &columns))
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

/// Stack entries, previews first (an entry whose environments are named
/// otherwise is a preview entry), then in order of appearance.
fn columns(environments: &[EnvironmentSummary]) -> Vec<String> {
    let mut previews = Vec::new();
    let mut fixed = Vec::new();
    for env in environments {
        let entry = if env.stack_entry.is_empty() {
            env.name.clone()
        } else {
            env.stack_entry.clone()
        };
        let list = if env.name != entry {
            &mut previews
        } else {
            &mut fixed
        };
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
    fixed.retain(|entry| !previews.contains(entry));
    previews.into_iter().chain(fixed).collect()
}

fn app_row(app: String, envs: Vec<EnvironmentSummary>, columns: &[String]) -> impl IntoView {
    let mut cells: Vec<Vec<EnvironmentSummary>> = vec![Vec::new(); columns.len()];
    for env in envs {
        let entry = if env.stack_entry.is_empty() {
            env.name.clone()
        } else {
            env.stack_entry.clone()
        };
        if let Some(index) = columns.iter().position(|c| *c == entry) {
            cells[index].push(env);
        }
    }
    let timeline = format!("/releases?app={app}");
    let page = format!("/apps/{app}");
    view! {
        <tr data-app=app.clone()>
            <th scope="row" class="app-name">
                <a href=page>{app.clone()}</a>
                <div>
                    <a class="muted" href=timeline>"Releases"</a>
                </div>
            </th>
            {cells
                .into_iter()
                .map(|envs| {
                    if envs.is_empty() {
                        view! {
                            <td class="matrix-empty">
                                <span class="muted">"—"</span>
                            </td>
                        }
                            .into_any()
                    } else {
                        view! { <td>{envs.into_iter().map(environment_cell).collect_view()}</td> }
                            .into_any()
                    }
                })
                .collect_view()}
        </tr>
    }
}

/// One environment in its matrix cell: state, commit, when, link; a pin or
/// drift stands out.
pub(crate) fn environment_cell(env: EnvironmentSummary) -> impl IntoView {
    let live = env.state == crate::dto::EnvironmentState::Live;
    let link = env.url.clone().filter(|_| live).map(|url| {
        let label = format!("Open {}", env.name);
        view! {
            <a class="button-link" href=url aria-label=label data-testid="open-environment">
                "Open ↗"
            </a>
        }
    });
    let name = env.name.clone();
    let pinned = env.pin.is_some();
    let pin = env.pin.map(|pin| {
        let timeline = format!("/releases?app={}&environment={}", env.app, env.name);
        let text = format!(
            "Pinned to {} by {}: {}. New commits are built but not deployed until an admin promotes.",
            short_sha(&pin.version),
            pin.pinned_by,
            pin.reason
        );
        let git = match (pin.pin_commit, pin.git_error) {
            (Some(commit), _) => format!("Pipeline repo commit {}.", short_sha(&commit)),
            (None, Some(error)) => format!("Not in the pipeline repo: {error}"),
            (None, None) => "Being written to the pipeline repo…".to_string(),
        };
        view! {
            <div class="pin-banner" role="note" data-testid="pin-banner">
                {text}
                " "
                <span class="muted">{git}</span>
                " "
                <a href=timeline>"Release timeline"</a>
            </div>
        }
    });
    let drifted = env.drift.is_some();
    let branch = env.branch.clone().unwrap_or_default();
    let label = env.name.clone();
    view! {
        <div
            class="env-cell"
            data-environment=name
            class:pinned=pinned
            class:drifted=drifted
        >
            <div class="env-cell-head">
                <span class="env-name">{label}</span>
                " "
                <Badge state=env.state.as_str() />
                {pinned.then(|| view! { <span class="badge state-pinned">"pinned"</span> })}
                {drifted.then(|| view! { <span class="badge state-drifted">"drifted"</span> })}
            </div>
            {(branch != env.name).then(|| view! { <div class="mono muted">{branch.clone()}</div> })}
            {match env.commit_sha {
                Some(sha) => {
                    view! {
                        <div class="commit">
                            <span class="mono" title=sha.clone()>{short_sha(&sha).to_string()}</span>
                            " "
                            <span class="commit-message">{env.commit_message.unwrap_or_default()}</span>
                            <div class="commit-author">{env.commit_author.unwrap_or_default()}</div>
                        </div>
                    }
                        .into_any()
                }
                None => view! { <div class="muted">"not deployed yet"</div> }.into_any(),
            }}
            <div class="muted">{timestamp(env.updated_at)}</div>
            {pin}
            {env.state_detail.map(|detail| view! { <div class="state-detail">{detail}</div> })}
            {env.drift.map(|drift| view! { <div class="state-detail drift-detail">{drift}</div> })}
            {link}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::EnvironmentState;

    fn env(app: &str, name: &str, entry: &str) -> EnvironmentSummary {
        EnvironmentSummary {
            app: app.into(),
            name: name.into(),
            stack_entry: entry.into(),
            branch: None,
            state: EnvironmentState::Live,
            commit_sha: None,
            pipeline_sha: None,
            url: None,
            updated_at: 0,
            commit_message: None,
            commit_author: None,
            state_detail: None,
            drift: None,
            pin: None,
        }
    }

    #[test]
    fn the_matrix_puts_previews_first_then_fixed_environments_in_order() {
        let envs = vec![
            env("billing", "staging", "staging"),
            env("billing", "production", "production"),
            env("shop", "staging", "staging"),
            env("shop", "preview-feature-x", "preview"),
            env("shop", "production", "production"),
            env("shop", "qa", "qa"),
        ];
        assert_eq!(
            columns(&envs),
            vec!["preview", "staging", "production", "qa"]
        );
    }
}
