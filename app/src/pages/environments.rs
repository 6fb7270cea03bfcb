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
    let environments = Resource::new(crate::components::live::live_version, |_| {
        list_environments()
    });
    let status = Resource::new(crate::components::live::live_version, |_| {
        get_config_status()
    });
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

fn stacks(environments: Vec<EnvironmentSummary>) -> impl IntoView {
    if environments.is_empty() {
        return view! {
            <EmptyState title="No environments yet">
                <p>
                    "Environments appear when Gantry reconciles a pipeline repo and a branch of an app is pushed."
                </p>
                <p>"The README's Configuration section shows how to point Gantry at one."</p>
            </EmptyState>
        }
        .into_any();
    }
    let mut by_app: BTreeMap<String, Vec<EnvironmentSummary>> = BTreeMap::new();
    for env in environments {
        by_app.entry(env.app.clone()).or_default().push(env);
    }
    by_app
        .into_iter()
        .map(|(app, envs)| {
            let label = format!("{app} environments");
            view! {
                <section class="stack" aria-label=label>
                    <h2>{app}</h2>
                    <table class="data">
                        <thead>
                            <tr>
                                <th scope="col">"Environment"</th>
                                <th scope="col">"Branch"</th>
                                <th scope="col">"State"</th>
                                <th scope="col">"Commit"</th>
                                <th scope="col">"Updated"</th>
                                <th scope="col">"Open"</th>
                            </tr>
                        </thead>
                        <tbody>{envs.into_iter().map(environment_row).collect_view()}</tbody>
                    </table>
                </section>
            }
        })
        .collect_view()
        .into_any()
}

fn environment_row(env: EnvironmentSummary) -> impl IntoView {
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
    view! {
        <tr data-environment=name class:pinned=pinned>
            <td class="env-name">{env.name}</td>
            <td class="mono">{env.branch.unwrap_or_default()}</td>
            <td>
                <Badge state=env.state.as_str() />
                {pinned.then(|| view! { <span class="badge state-pinned">"pinned"</span> })}
                {pin}
                {env.drift.is_some().then(|| view! { <span class="badge state-drifted">"drifted"</span> })}
                {env.state_detail.map(|detail| view! { <div class="state-detail">{detail}</div> })}
                {env.drift.map(|drift| view! { <div class="state-detail drift-detail">{drift}</div> })}
            </td>
            <td>
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
                    None => view! { <span class="muted">"not deployed yet"</span> }.into_any(),
                }}
            </td>
            <td>{timestamp(env.updated_at)}</td>
            <td>{link}</td>
        </tr>
    }
}
