//! Small charts drawn on the server as SVG: no script, no library, colours
//! from the theme's classes (so the dark theme needs nothing more), and a
//! sentence beside each that says what it shows for those who cannot see
//! it. Shapes only carry attributes: the Content-Security-Policy refuses
//! inline styles.

use leptos::prelude::*;

use crate::dto::{AppCharts, RunState};
use crate::format::{duration, iso};

/// The width and height of a chart's drawing, in its own units (it is
/// stretched to the column).
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// An app's charts: run durations, then deploys per day.
pub fn app_charts(charts: AppCharts) -> impl IntoView {
    view! {
        <div class="charts">
            {durations_chart(&charts)}
            {deploys_chart(&charts)}
        </div>
    }
}

/// One bar per run, oldest to newest, as tall as it took; failed ones red.
fn durations_chart(charts: &AppCharts) -> impl IntoView + use<> {
    let runs = &charts.durations;
    if runs.is_empty() {
        return view! {
            <figure class="chart" data-testid="chart-durations">
                <figcaption>"Run durations"</figcaption>
                <p class="muted">"No run has finished yet."</p>
            </figure>
        }
        .into_any();
    }
    let longest = runs.iter().map(|r| r.millis).max().unwrap_or(1).max(1);
    let mut sorted: Vec<i64> = runs.iter().map(|r| r.millis).collect();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let failed = runs.iter().filter(|r| r.state == RunState::Failed).count();
    let slot = WIDTH / runs.len() as f64;
    let bars = runs
        .iter()
        .enumerate()
        .map(|(n, run)| {
            let height = (run.millis as f64 / longest as f64 * (HEIGHT - 2.0)).max(1.5);
            let class = format!("chart-bar state-{}", run.state.as_str());
            view! {
                <rect
                    class=class
                    x=format!("{:.1}", n as f64 * slot + slot * 0.15)
                    y=format!("{:.1}", HEIGHT - height)
                    width=format!("{:.1}", slot * 0.7)
                    height=format!("{height:.1}")
                >
                    <title>{format!("Run #{}: {} ({})", run.id, duration(run.millis), run.state)}</title>
                </rect>
            }
        })
        .collect_view();
    let summary = format!(
        "The last {} runs: median {}, longest {}; {failed} failed.",
        runs.len(),
        duration(median),
        duration(longest)
    );
    view! {
        <figure class="chart" data-testid="chart-durations">
            <figcaption>"Run durations"</figcaption>
            <div class="chart-frame">
                <span class="chart-axis" aria-hidden="true">{duration(longest)}</span>
                <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img" aria-label=summary.clone()>
                    <line class="chart-base" x1="0" y1=HEIGHT.to_string() x2=WIDTH.to_string() y2=HEIGHT.to_string()></line>
                    {bars}
                </svg>
            </div>
            <p class="muted chart-summary">{summary}</p>
        </figure>
    }
    .into_any()
}

/// Deploys per day, one stacked bar per day, a colour per stack entry.
fn deploys_chart(charts: &AppCharts) -> impl IntoView + use<> {
    let days = charts.days.len();
    let totals: Vec<u32> = (0..days)
        .map(|d| {
            charts
                .deploys
                .iter()
                .map(|s| s.counts.get(d).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let most = totals.iter().copied().max().unwrap_or(0);
    let all: u32 = totals.iter().sum();
    if days == 0 || all == 0 {
        return view! {
            <figure class="chart" data-testid="chart-deploys">
                <figcaption>"Deploys per day"</figcaption>
                <p class="muted">"No deploy in the last two weeks."</p>
            </figure>
        }
        .into_any();
    }
    let slot = WIDTH / days as f64;
    let unit = (HEIGHT - 2.0) / f64::from(most);
    let mut bars = Vec::new();
    for (d, day) in charts.days.iter().enumerate() {
        let mut top = HEIGHT;
        for (n, series) in charts.deploys.iter().enumerate() {
            let count = series.counts.get(d).copied().unwrap_or(0);
            if count == 0 {
                continue;
            }
            let height = f64::from(count) * unit;
            top -= height;
            bars.push(view! {
                <rect
                    class=format!("chart-bar series-{}", n % 4)
                    x=format!("{:.1}", d as f64 * slot + slot * 0.15)
                    y=format!("{top:.1}")
                    width=format!("{:.1}", slot * 0.7)
                    height=format!("{height:.1}")
                >
                    <title>{format!("{}: {count} to {}", &iso(*day)[..10], series.entry)}</title>
                </rect>
            });
        }
    }
    let per_entry = charts
        .deploys
        .iter()
        .map(|s| format!("{} {}", s.entry, s.counts.iter().sum::<u32>()))
        .collect::<Vec<_>>()
        .join(", ");
    let summary = format!("{all} deploys in the last {days} days: {per_entry}.");
    let legend = charts
        .deploys
        .iter()
        .enumerate()
        .map(|(n, s)| {
            view! {
                <li>
                    <span class=format!("chart-swatch series-{}", n % 4) aria-hidden="true"></span>
                    {s.entry.clone()}
                </li>
            }
        })
        .collect_view();
    let first = charts
        .days
        .first()
        .map(|d| iso(*d)[..10].to_string())
        .unwrap_or_default();
    view! {
        <figure class="chart" data-testid="chart-deploys">
            <figcaption>"Deploys per day"</figcaption>
            <div class="chart-frame">
                <span class="chart-axis" aria-hidden="true">{most.to_string()}</span>
                <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img" aria-label=summary.clone()>
                    <line class="chart-base" x1="0" y1=HEIGHT.to_string() x2=WIDTH.to_string() y2=HEIGHT.to_string()></line>
                    {bars}
                </svg>
            </div>
            <p class="muted chart-days" aria-hidden="true">
                <span>{first}</span>
                <span>"today"</span>
            </p>
            <ul class="chart-legend">{legend}</ul>
            <p class="muted chart-summary">{summary}</p>
        </figure>
    }
    .into_any()
}

/// An environment's deployments per day from its delivery metrics: a bar
/// per day, the failed part red, rework marked beneath.
pub fn delivery_chart(metrics: &crate::dto::DeliveryMetrics) -> impl IntoView + use<> {
    let days = metrics.days.len();
    let most = metrics
        .days
        .iter()
        .map(|d| d.deployments.max(d.rework))
        .max()
        .unwrap_or(0);
    let testid = format!("chart-delivery-{}", metrics.app);
    if days == 0 || most == 0 {
        return view! {
            <figure class="chart" data-testid=testid>
                <figcaption>"Deployments per day"</figcaption>
                <p class="muted">"Nothing went live in this range."</p>
            </figure>
        }
        .into_any();
    }
    let slot = WIDTH / days as f64;
    let unit = (HEIGHT - 2.0) / most as f64;
    let mut bars = Vec::new();
    for (n, day) in metrics.days.iter().enumerate() {
        let x = format!("{:.1}", n as f64 * slot + slot * 0.15);
        let width = format!("{:.1}", slot * 0.7);
        let date = iso(day.start)[..10].to_string();
        let fine = day.deployments - day.failed;
        let mut top = HEIGHT;
        for (count, class, what) in [
            (fine, "chart-bar state-succeeded", "went well"),
            (day.failed, "chart-bar state-failed", "failed"),
        ] {
            if count == 0 {
                continue;
            }
            let height = count as f64 * unit;
            top -= height;
            bars.push(view! {
                <rect class=class x=x.clone() y=format!("{top:.1}") width=width.clone() height=format!("{height:.1}")>
                    <title>{format!("{date}: {count} {what}")}</title>
                </rect>
            });
        }
    }
    let summary = format!(
        "{} deployments in {days} days, {} failed, {} rework.",
        metrics.deployments, metrics.failed, metrics.rework
    );
    let first = metrics
        .days
        .first()
        .map(|d| iso(d.start)[..10].to_string())
        .unwrap_or_default();
    view! {
        <figure class="chart" data-testid=testid>
            <figcaption>"Deployments per day"</figcaption>
            <div class="chart-frame">
                <span class="chart-axis" aria-hidden="true">{most.to_string()}</span>
                <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img" aria-label=summary.clone()>
                    <line class="chart-base" x1="0" y1=HEIGHT.to_string() x2=WIDTH.to_string() y2=HEIGHT.to_string()></line>
                    {bars}
                </svg>
            </div>
            <p class="muted chart-days" aria-hidden="true">
                <span>{first}</span>
                <span>"today"</span>
            </p>
            <ul class="chart-legend">
                <li><span class="chart-swatch state-succeeded" aria-hidden="true"></span>"went well"</li>
                <li><span class="chart-swatch state-failed" aria-hidden="true"></span>"failed"</li>
            </ul>
            <p class="muted chart-summary">{summary}</p>
        </figure>
    }
    .into_any()
}
