//! The effective configuration and where each value came from.

use leptos::prelude::*;

use crate::api::get_settings;
use crate::components::list::{PageHeader, loaded};
use crate::dto::Settings;

#[component]
pub fn SettingsPage() -> impl IntoView {
    let settings = Resource::new(|| (), |_| get_settings());
    view! {
        <PageHeader
            title="Settings"
            lead="The configuration this server runs with: defaults, then the file, then environment, then flags."
        />
        {loaded(settings, settings_view)}
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
