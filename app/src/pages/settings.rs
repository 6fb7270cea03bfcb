//! The effective configuration and where each value came from.

use leptos::prelude::*;

use crate::api::{get_config_status, get_settings};
use crate::components::list::{AdminsOnly, PageHeader, Time, loaded};
use crate::dto::{ConfigStatus, Settings};
use crate::format::short_sha;

#[component]
pub fn SettingsPage() -> impl IntoView {
    let settings = Resource::new(|| (), |_| get_settings());
    let pipeline = Resource::new(|| (), |_| get_config_status());
    view! {
        <PageHeader
            title="Settings"
            lead="The configuration this server runs with: defaults, then the file, then environment, then flags."
        />
        <AdminsOnly what="Settings" everywhere=true>
            <nav class="panel more-settings" aria-label="More settings">
                <a href="/secrets">"Secrets"</a>
                <a href="/tokens">"API tokens"</a>
                <a href="/notifications">"Notifications"</a>
                <a href="/clusters">"Clusters"</a>
            </nav>
            {loaded(pipeline, pipeline_health)}
            {loaded(settings, settings_view)}
        </AdminsOnly>
    }
}

/// The pipeline repo: which commit is in effect, when it was read, and
/// what it refused.
fn pipeline_health(status: ConfigStatus) -> impl IntoView {
    let (class, verdict) = match status.state.as_deref() {
        Some("applied") => ("badge state-succeeded", "applied"),
        Some("partial") => ("badge state-partially_failed", "partly applied"),
        Some("rejected") => ("badge state-failed", "rejected"),
        _ => ("badge", "not read yet"),
    };
    view! {
        <section class="panel" aria-labelledby="pipeline-heading" data-testid="pipeline-health">
            <h2 id="pipeline-heading">"Pipeline repo"</h2>
            <dl class="facts">
                <dt>"Repository"</dt>
                <dd class="mono">
                    {status.pipeline_repo.clone().unwrap_or_else(|| "none configured".into())}
                    {format!(" ({})", status.pipeline_branch)}
                </dd>
                <dt>"Commit in effect"</dt>
                <dd>
                    <span class="mono">{status.pipeline_sha.as_deref().map(short_sha).unwrap_or("–").to_string()}</span>
                    " "
                    <span class=class>{verdict}</span>
                </dd>
                <dt>"Last read"</dt>
                <dd>{status.checked_at.map(|at| view! { <Time at /> })}</dd>
            </dl>
            {if status.issues.is_empty() {
                view! { <p class="muted">"No problem found in the last commit read."</p> }.into_any()
            } else {
                view! {
                    <p>{format!("{} problem(s) in the last commit read:", status.issues.len())}</p>
                    <ul>
                        {status.issues.iter().take(20).map(|issue| view! { <li class="mono">{issue.to_string()}</li> }).collect_view()}
                    </ul>
                }
                    .into_any()
            }}
        </section>
    }
}

fn settings_view(settings: Settings) -> impl IntoView {
    view! {
        {settings.sandbox_warning.clone().map(|warning| {
            view! { <p class="notice notice-error" role="alert" data-testid="sandbox-warning">{warning}</p> }
        })}
        {settings.limits_warning.clone().map(|warning| {
            view! { <p class="notice notice-warn" role="status" data-testid="limits-warning">{warning}</p> }
        })}
        <dl class="facts">
            <dt>"Version"</dt>
            <dd class="mono">{settings.version}</dd>
            <dt>"Database"</dt>
            <dd>{settings.database_backend}</dd>
            <dt>"Data directory"</dt>
            <dd class="mono">{settings.data_dir}</dd>
            <dt>"Listening on"</dt>
            <dd class="mono">{settings.bind}</dd>
            <dt>"Sandbox"</dt>
            <dd data-testid="sandbox">{settings.sandbox}</dd>
            <dt>"Unreachable from sandboxes"</dt>
            <dd class="mono" data-testid="blocked-networks">{settings.blocked_networks.join(", ")}</dd>
        </dl>
        <h2>"Replicas"</h2>
        <p>
            "This is replica " <span class="mono" data-testid="replica">{settings.replica}</span>
            ". These loops run on one replica at a time; another takes one over within a lease when its replica stops."
        </p>
        <table class="data cards" data-testid="singletons">
            <thead>
                <tr>
                    <th scope="col">"Loop"</th>
                    <th scope="col">"Run by"</th>
                </tr>
            </thead>
            <tbody>
                {settings
                    .singletons
                    .into_iter()
                    .map(|singleton| {
                        let here = if singleton.here { " (this replica)" } else { "" };
                        let row = singleton.name.clone();
                        view! {
                            <tr data-singleton=row>
                                <td data-label="Loop" class="mono">{singleton.name}</td>
                                <td data-label="Run by" class="mono">{singleton.holder}{here}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
        <h2>"Sources"</h2>
        <table class="data cards">
            <thead>
                <tr>
                    <th scope="col">"Setting"</th>
                    <th scope="col">"Value"</th>
                    <th scope="col">"Set by"</th>
                </tr>
            </thead>
            <tbody>
                {settings
                    .sources
                    .into_iter()
                    .map(|source| {
                        view! {
                            <tr>
                                <td data-label="Setting" class="mono">{source.key}</td>
                                <td data-label="Value" class="mono">{source.value}</td>
                                <td data-label="Set by">{source.source}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}
