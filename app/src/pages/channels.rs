//! Notification channels (admins): what each hears, how its recent
//! deliveries fared — a failure shows its last error — a "send test
//! message" button, and a form to add one. A channel's URL and signing key
//! are registered secrets (the Secrets page), named here, never typed in.

use leptos::prelude::*;

use crate::api::{TestChannel, list_channels, list_secrets};
use crate::components::action::removal;
use crate::components::list::{AdminsOnly, EmptyState, PageHeader, loaded, with_csrf};
use crate::components::outcome::{Outcome, report};
use crate::dto::{ChannelSummary, DeliverySummary};

#[component]
pub fn ChannelsPage() -> impl IntoView {
    let channels = Resource::new(|| (), |_| list_channels());
    let secrets = Resource::new(|| (), |_| list_secrets());
    view! {
        <PageHeader
            title="Notifications"
            lead="Channels that tell people about failed runs, previews, approvals, releases, rollbacks and drift — and how their messages fared."
        />
        <AdminsOnly what="Notification channels" everywhere=true>
            {with_csrf(move |csrf| {
                loaded(channels, move |channels| channel_list(channels, csrf.clone()))
            })}
            <section class="panel" aria-labelledby="add-channel-heading">
                <h2 id="add-channel-heading">"Add a channel"</h2>
                <p class="muted">
                    "The robot's or webhook's URL (for email, the SMTP server's) is a secret: set it on the "
                    <a href="/secrets">"Secrets"</a> " page first, then name it here. To change a channel, remove it and add it again (or use the API, which also sets per-app rules and wording)."
                </p>
                {with_csrf(move |csrf| {
                    loaded(secrets, move |secrets| {
                        let names: Vec<String> = secrets.into_iter().map(|s| s.name).collect();
                        add_form(names, csrf.clone())
                    })
                })}
            </section>
        </AdminsOnly>
    }
}

fn channel_list(channels: Vec<ChannelSummary>, csrf: String) -> impl IntoView {
    if channels.is_empty() {
        return view! {
            <EmptyState title="No channels yet">
                <p>
                    "Add DingTalk, Slack, WeCom, email or a signed webhook below, or with "
                    <code>"PUT /api/v1/channels/<name>"</code> " (see the user guide, docs/src/notifications.md)."
                </p>
            </EmptyState>
        }
        .into_any();
    }
    channels
        .into_iter()
        .map(|channel| channel_panel(channel, csrf.clone()))
        .collect_view()
        .into_any()
}

fn channel_panel(channel: ChannelSummary, csrf: String) -> impl IntoView {
    let heading = format!("channel-{}", channel.name);
    let failures = (channel.failed_deliveries > 0).then(|| {
        view! {
            <p class="notice notice-error" role="alert">
                {format!(
                    "{} deliver{} failed after every retry.",
                    channel.failed_deliveries,
                    if channel.failed_deliveries == 1 { "y" } else { "ies" },
                )}
            </p>
        }
    });
    let templated = (!channel.templated.is_empty())
        .then(|| format!(" · own wording for {}", channel.templated.join(", ")));
    let (labelled_by, marker, title, target) = (
        heading.clone(),
        channel.name.clone(),
        channel.name.clone(),
        channel.name.clone(),
    );
    let about = format!("{} · hears {}", channel.kind, channel.hears);
    view! {
        <section class="panel" aria-labelledby=labelled_by data-channel=marker>
            <h2 id=heading>{title}</h2>
            <p class="muted">
                {about} {templated}
            </p>
            {failures}
            <div class="run-actions">
                <TestForm name=target.clone() csrf=csrf.clone() />
                {removal(
                    "/fn/remove_channel",
                    vec![("name", target.clone())],
                    "Remove",
                    &target,
                    ("channel-outcome", "channel-error"),
                    csrf,
                )}
            </div>
            {delivery_table(channel.deliveries)}
        </section>
    }
}

fn delivery_table(deliveries: Vec<DeliverySummary>) -> impl IntoView {
    if deliveries.is_empty() {
        return view! { <p class="muted">"Nothing sent yet."</p> }.into_any();
    }
    view! {
        <table class="data cards">
            <caption class="visually-hidden">"Recent deliveries, newest first"</caption>
            <thead>
                <tr>
                    <th scope="col">"Event"</th>
                    <th scope="col">"About"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Attempts"</th>
                    <th scope="col">"Queued"</th>
                    <th scope="col">"Last error"</th>
                </tr>
            </thead>
            <tbody>
                {deliveries
                    .into_iter()
                    .map(|delivery| {
                        view! {
                            <tr data-delivery=delivery.id.to_string() data-state=delivery.state.clone()>
                                <td data-label="Event">{delivery.event.replace('_', " ")}</td>
                                <td data-label="About" class="mono">{delivery.subject}</td>
                                <td data-label="State" class="card-state">
                                    <span class=format!(
                                        "badge state-{}",
                                        delivery.state,
                                    )>{delivery.state.clone()}</span>
                                </td>
                                <td data-label="Attempts">{delivery.attempts}</td>
                                <td data-label="Queued"><crate::components::list::Time at=delivery.created_at /></td>
                                <td data-label="Last error">{delivery.last_error.unwrap_or_default()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// "Send test message" (an island).
#[island]
fn TestForm(name: String, csrf: String) -> impl IntoView {
    let test = ServerAction::<TestChannel>::new();
    report(test, |result| match result {
        Ok(name) => Outcome::done(
            "channel-outcome",
            format!("Test message queued for {name}; its delivery shows below."),
        ),
        Err(error) => Outcome::failed("channel-error", error),
    });
    view! {
        <ActionForm action=test>
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="name" value=name />
            <button type="submit">"Send test message"</button>
        </ActionForm>
    }
}

/// The events a channel can be limited to, with their words.
const EVENTS: &[(&str, &str)] = &[
    ("run_failed", "a run failed"),
    ("preview_ready", "a preview is ready"),
    ("approval_requested", "an approval is asked for"),
    ("approved", "approved"),
    ("released", "released"),
    ("rolled_back", "rolled back"),
    ("drift", "drift found"),
];

/// Adds a channel (an action form: page_updates.js posts it, no WASM).
fn add_form(secrets: Vec<String>, csrf: String) -> impl IntoView {
    view! {
        <form
            method="post"
            action="/fn/register_channel"
            class="form"
            autocomplete="off"
            data-action=""
            data-done="channel-outcome"
            data-error="channel-error"
        >
            <input type="hidden" name="csrf" value=csrf />
            <datalist id="secret-names">
                {secrets.into_iter().map(|name| view! { <option value=name></option> }).collect_view()}
            </datalist>
            <label>
                <span>"Name (lowercase letters, digits and -)"</span>
                <input name="name" required pattern="[a-z0-9][a-z0-9\\-]*" maxlength="40" placeholder="team-chat" />
            </label>
            <label>
                <span>"Kind"</span>
                <select name="kind">
                    <option value="dingtalk">"DingTalk"</option>
                    <option value="slack">"Slack"</option>
                    <option value="wecom">"WeCom"</option>
                    <option value="email">"Email"</option>
                    <option value="webhook">"Webhook (signed)"</option>
                </select>
            </label>
            <label>
                <span>"Secret holding the URL (email: the SMTP server)"</span>
                <input name="url_secret" required list="secret-names" placeholder="DINGTALK_URL" spellcheck="false" />
            </label>
            <label>
                <span>"Secret it signs with (optional: DingTalk sign, webhook signature)"</span>
                <input name="signing_secret" list="secret-names" spellcheck="false" />
            </label>
            <label>
                <span>"Whom it tells, separated by commas: email addresses (email), mobile numbers to @mention (DingTalk), user ids (WeCom)"</span>
                <input name="recipients" placeholder="team@example.com" />
            </label>
            <fieldset>
                <legend>"Only these events (none ticked: every event)"</legend>
                {EVENTS
                    .iter()
                    .map(|(value, words)| {
                        view! {
                            <label class="inline">
                                <input type="checkbox" name="events[]" value=*value />
                                {format!(" {words}")}
                            </label>
                        }
                    })
                    .collect_view()}
            </fieldset>
            <button type="submit" class="primary">"Save channel"</button>
        </form>
    }
}
