//! Delivery: each app's deployment frequency, change lead time, change
//! fail rate, recovery time and rework rate in an environment, from the
//! release ledger, over a range chosen in the address.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::get_delivery_metrics;
use crate::components::charts::delivery_chart;
use crate::components::list::{EmptyState, PageHeader, load_error};
use crate::dto::{DeliveryMetrics, DeliveryQuery};
use crate::format::duration;

/// The ranges offered, in days.
const RANGES: [u32; 4] = [7, 30, 90, 365];

#[component]
pub fn DeliveryPage() -> impl IntoView {
    let query_map = use_query_map();
    let query = move || {
        query_map.with(|q| {
            let present = |key: &str| q.get(key).filter(|v| !v.trim().is_empty());
            DeliveryQuery {
                app: present("app"),
                environment: present("environment"),
                days: present("days").and_then(|d| d.parse().ok()),
            }
        })
    };
    let metrics = Resource::new(query, get_delivery_metrics);
    let value = move |key: &'static str| query_map.with(|q| q.get(key).unwrap_or_default());
    let chosen = move || query().days.unwrap_or(30);
    view! {
        <PageHeader
            title="Delivery"
            lead="How often changes go live, how long they take, how often they fail and how fast it is put right: dora.dev's measures, read from the release ledger."
        />
        <form method="get" class="filters" role="search" aria-label="Choose the app, environment and range">
            <label>"App" <input type="text" name="app" value=value("app") placeholder="every app" /></label>
            <label>
                "Environment"
                <input type="text" name="environment" placeholder="production" value=value("environment") />
            </label>
            <label>
                "Range"
                <select name="days">
                    {move || {
                        RANGES
                            .iter()
                            .map(|days| {
                                view! {
                                    <option value=days.to_string() selected=*days == chosen()>
                                        {format!("last {days} days")}
                                    </option>
                                }
                            })
                            .collect_view()
                    }}
                </select>
            </label>
            <button type="submit">"Show"</button>
        </form>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match metrics.await {
                    Ok(list) if list.is_empty() => view! {
                        <EmptyState title="Nothing went live in this range">
                            "Delivery figures come from the release ledger: once a release goes live in the environment, it is counted here."
                        </EmptyState>
                    }
                    .into_any(),
                    Ok(list) => view! {
                        <div class="delivery">
                            {list.into_iter().map(app_delivery).collect_view()}
                        </div>
                    }
                    .into_any(),
                    Err(error) => load_error(error),
                }
            })}
        </Suspense>
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".into(), |r| format!("{:.0} %", r * 100.0))
}

fn millis(value: Option<i64>) -> String {
    value.map_or_else(|| "—".into(), duration)
}

/// One app's figures and its chart.
fn app_delivery(metrics: DeliveryMetrics) -> impl IntoView {
    let chart = delivery_chart(&metrics);
    let figures = [
        (
            "Deployment frequency",
            format!("{:.2} / day", metrics.per_day),
            format!("{} deployments", metrics.deployments),
        ),
        (
            "Change lead time",
            millis(metrics.lead_time_p50_millis),
            format!(
                "median; 90 % within {}",
                millis(metrics.lead_time_p90_millis)
            ),
        ),
        (
            "Change fail rate",
            percent(metrics.change_fail_rate),
            format!("{} of {} failed", metrics.failed, metrics.deployments),
        ),
        (
            "Recovery time",
            millis(metrics.recovery_p50_millis),
            if metrics.unrecovered > 0 {
                format!("median; {} not recovered yet", metrics.unrecovered)
            } else {
                "median, failed deployment to what replaced it".into()
            },
        ),
        (
            "Rework rate",
            percent(metrics.rework_rate),
            format!("{} rollbacks and fixes", metrics.rework),
        ),
    ];
    view! {
        <section class="delivery-app" data-testid="delivery-app" data-app=metrics.app.clone()>
            <h2>{format!("{} · {}", metrics.app, metrics.environment)}</h2>
            <dl class="figures">
                {figures
                    .into_iter()
                    .map(|(name, value, detail)| {
                        view! {
                            <div class="figure" data-testid="delivery-figure">
                                <dt>{name}</dt>
                                <dd>
                                    <span class="figure-value">{value}</span>
                                    <span class="muted">{detail}</span>
                                </dd>
                            </div>
                        }
                    })
                    .collect_view()}
            </dl>
            {chart}
        </section>
    }
}
