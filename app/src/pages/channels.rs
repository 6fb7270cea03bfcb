//! Notification channels (admins): what each hears, how its recent
//! deliveries fared — a failure shows its last error — and a "send test
//! message" button. Registering a channel is the API's and CLI's job: its
//! URL and secrets are registered secrets, named there.

use leptos::prelude::*;

use crate::api::{TestChannel, list_channels};
use crate::components::list::{AdminsOnly, EmptyState, PageHeader, loaded, with_csrf};
use crate::components::outcome::{Outcome, report};
use crate::dto::{ChannelSummary, DeliverySummary};

#[component]
pub fn ChannelsPage() -> impl IntoView {
    let channels = Resource::new(|| (), |_| list_channels());
    view! {
        <PageHeader
            title="Notifications"
            lead="Channels that tell people about failed runs, previews, approvals, releases, rollbacks and drift — and how their messages fared."
        />
        <AdminsOnly what="Notification channels">
            {with_csrf(move |csrf| {
                loaded(channels, move |channels| channel_list(channels, csrf.clone()))
            })}
        </AdminsOnly>
    }
}

fn channel_list(channels: Vec<ChannelSummary>, csrf: String) -> impl IntoView {
    if channels.is_empty() {
        return view! {
            <EmptyState title="No channels yet">
                <p>
                    "Register DingTalk, Slack, WeCom, email or a signed webhook with "
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
            <TestForm name=target csrf />
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
