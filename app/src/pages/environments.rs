//! Home: what needs attention, then each application's lane — previews,
//! staging, production — a page at a time.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{get_attention, get_config_status, list_lanes};
use crate::components::list::{Badge, EmptyState, PageHeader, Time, loaded};
use crate::dto::{
    AppLane, Attention, AttentionItem, ConfigStatus, EnvironmentSummary, LaneGap, LaneQuery,
    LaneStop, LanesPage, RunState,
};
use crate::format::short_sha;

#[component]
pub fn EnvironmentsPage() -> impl IntoView {
    // The search and page live in the address, so a view can be shared.
    let query = use_query_map();
    let lane_query = move || {
        query.with(|q| LaneQuery {
            search: q.get("q").filter(|q| !q.trim().is_empty()),
            page: q.get("page").and_then(|page| page.parse().ok()),
        })
    };
    let lanes = Resource::new(lane_query, list_lanes);
    let attention = Resource::new(|| (), |_| get_attention());
    let status = Resource::new(|| (), |_| get_config_status());
    let search = move || query.with(|q| q.get("q").unwrap_or_default());
    view! {
        <PageHeader
            title="Environments"
            lead="Each application's way to production: previews per branch, then staging, then production."
        />
        {loaded(status, config_banner)}
        {loaded(attention, attention_strip)}
        <form method="get" class="filters lane-search" role="search" aria-label="Find an app">
            <label>
                "App" <input type="search" name="q" value=search placeholder="name contains…" />
            </label>
            <button type="submit">"Find"</button>
        </form>
        {loaded(lanes, lanes_view)}
    }
}

/// Problems the banner lists, at most.
const BANNER_ISSUES: usize = 10;

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
    // A page, not a report: thousands of apps whose sources do not fetch
    // would make the banner the page (`GET /api/v1/config` lists them all).
    let more = status.issues.len().saturating_sub(BANNER_ISSUES);
    view! {
        <section class="notice notice-error config-issues" role="alert">
            <h2>{heading}</h2>
            <p>"Whatever was valid before stays active. Fix these and push again:"</p>
            <ul>
                {status
                    .issues
                    .into_iter()
                    .take(BANNER_ISSUES)
                    .map(|issue| view! { <li class="mono">{issue.to_string()}</li> })
                    .collect_view()}
            </ul>
            {(more > 0).then(|| view! { <p data-testid="more-issues">{format!("…and {more} more.")}</p> })}
        </section>
    }
    .into_any()
}

/// Failed runs, decisions waiting for the reader, drift and pins, before
/// anything else; nothing at all when all is well.
fn attention_strip(attention: Attention) -> impl IntoView {
    if attention.is_empty() {
        return ().into_any();
    }
    let waiting = attention.waiting_for_you;
    let group = |title: &'static str, class: &'static str, items: Vec<AttentionItem>| {
        (!items.is_empty()).then(|| {
            view! {
                <div class=format!("attention-group {class}")>
                    <h3>{title}</h3>
                    <ul>{items.into_iter().map(attention_item).collect_view()}</ul>
                </div>
            }
        })
    };
    view! {
        <section class="attention" aria-labelledby="attention-heading" data-testid="attention">
            <h2 id="attention-heading">"Needs attention"</h2>
            <div class="attention-groups">
                {(waiting > 0)
                    .then(|| {
                        let text = if waiting == 1 {
                            "1 decision waits for you".to_string()
                        } else {
                            format!("{waiting} decisions wait for you")
                        };
                        view! {
                            <div class="attention-group attention-waiting">
                                <h3>"Waiting for you"</h3>
                                <p>
                                    <a href="/approvals" data-testid="attention-waiting">
                                        {text}
                                    </a>
                                </p>
                            </div>
                        }
                    })}
                {group("Failed", "attention-failed", attention.failed)}
                {group("Drifted", "attention-drifted", attention.drifted)}
                {group("Pinned", "attention-pinned", attention.pinned)}
            </div>
        </section>
    }
    .into_any()
}

fn attention_item(item: AttentionItem) -> impl IntoView {
    let place = format!("{} · {}", item.app, item.environment);
    let link = match item.run_id {
        Some(id) => format!("/runs/{id}"),
        None => format!("/apps/{}", item.app),
    };
    view! {
        <li>
            <a href=link class="attention-place">{place}</a>
            <span class="attention-detail">{item.detail}</span>
        </li>
    }
}

fn lanes_view(page: LanesPage) -> impl IntoView {
    if page.lanes.is_empty() {
        return if page.search.is_empty() {
            view! {
                <EmptyState title="No environments yet">
                    <p>
                        "Environments appear when Gantry reconciles a pipeline repo and a branch of an app is pushed."
                    </p>
                    <p>"The user guide's Configuration page (docs/src/configuration.md) shows how to point Gantry at one."</p>
                </EmptyState>
            }
            .into_any()
        } else {
            view! {
                <EmptyState title="No app matches">
                    <p>{format!("No app you may see has \u{201c}{}\u{201d} in its name.", page.search)}</p>
                    <p><a href="/">"Show every app"</a></p>
                </EmptyState>
            }
            .into_any()
        };
    }
    let pager = pager(&page);
    view! {
        <p class="muted lane-count" data-testid="lane-count">
            {if page.matching == 1 { "1 app".to_string() } else { format!("{} apps", page.matching) }}
        </p>
        <div class="lanes">{page.lanes.into_iter().map(|lane| lane_view(lane, false)).collect_view()}</div>
        {pager}
    }
    .into_any()
}

/// Previous and next pages, keeping the search.
fn pager(page: &LanesPage) -> impl IntoView + use<> {
    if page.pages <= 1 {
        return ().into_any();
    }
    let search = if page.search.is_empty() {
        String::new()
    } else {
        format!("&q={}", crate::format::percent_encode(&page.search))
    };
    let previous = (page.page > 1).then(|| {
        let href = format!("/?page={}{search}", page.page - 1);
        view! { <a href=href rel="prev">"← Previous"</a> }
    });
    let next = (page.page < page.pages).then(|| {
        let href = format!("/?page={}{search}", page.page + 1);
        view! { <a href=href rel="next">"Next →"</a> }
    });
    view! {
        <nav class="pager" aria-label="Pages of apps">
            {previous}
            <span>{format!("Page {} of {}", page.page, page.pages)}</span>
            {next}
        </nav>
    }
    .into_any()
}

/// One app's way to production, left to right: previews, then each stage
/// with what lies between it and the next. On an app's own page (`full`)
/// every preview is listed.
pub(crate) fn lane_view(lane: AppLane, full: bool) -> impl IntoView {
    let app = lane.app.clone();
    let heading = format!("lane-{app}");
    let page = format!("/apps/{app}");
    let releases = format!("/releases?app={app}");
    let more = (lane.more_previews > 0).then(|| {
        let text = format!("{} more on the app's page", lane.more_previews);
        view! { <a class="lane-more" href=page.clone()>{text}</a> }
    });
    let previews = view! {
        <div class="lane-previews" data-testid="lane-previews">
            <h3 class="lane-label">"Previews"</h3>
            {if lane.previews.is_empty() {
                view! { <p class="muted">"No preview: a pushed branch gets one."</p> }.into_any()
            } else {
                view! {
                    <ul class="lane-preview-list">
                        {lane.previews.into_iter().map(preview_item).collect_view()}
                    </ul>
                }
                    .into_any()
            }}
            {more}
        </div>
    };
    let mut gaps = lane.gaps.into_iter();
    let stages = lane
        .stages
        .into_iter()
        .enumerate()
        .map(|(index, stop)| {
            let arrow = if index == 0 {
                view! { <div class="lane-arrow" aria-hidden="true">"→"</div> }.into_any()
            } else {
                gaps.next()
                    .map(|gap| gap_view(&app, gap).into_any())
                    .unwrap_or_else(|| {
                        view! { <div class="lane-arrow" aria-hidden="true">"→"</div> }.into_any()
                    })
            };
            view! {
                {arrow}
                {stage_view(stop)}
            }
        })
        .collect_view();
    let title = (!full).then(|| {
        view! {
            <header class="lane-head">
                <h2 id=heading.clone()>
                    <a href=page.clone()>{app.clone()}</a>
                </h2>
                <a class="muted" href=releases.clone()>"Releases"</a>
            </header>
        }
    });
    view! {
        <section class="lane" class:lane-full=full data-app=app.clone() aria-labelledby=(!full).then(|| heading.clone())>
            {title}
            <div class="lane-track">
                {previews}
                {stages}
            </div>
        </section>
    }
}

/// The difference between two stages, and the change request that would
/// close it.
fn gap_view(app: &str, gap: LaneGap) -> impl IntoView + use<> {
    let text = gap.describe();
    let promote = match (gap.ahead, &gap.from_branch, &gap.to_branch) {
        (Some(ahead), Some(from), Some(to)) if ahead > 0 && gap.promotable && !gap.same_code => {
            let href = format!(
                "/change-requests?app={}&source={}&target={}",
                crate::format::percent_encode(app),
                crate::format::percent_encode(from),
                crate::format::percent_encode(to)
            );
            let label = format!("Open a change request from {from} into {to}");
            Some(view! {
                <a class="button-link lane-promote" href=href aria-label=label>
                    "Open change request"
                </a>
            })
        }
        _ => None,
    };
    view! {
        <div class="lane-gap" data-testid="lane-gap">
            <span class="lane-arrow" aria-hidden="true">"→"</span>
            <span class="lane-gap-text">{text}</span>
            {promote}
        </div>
    }
}

/// A fixed environment (staging, production): what runs there, since
/// when, and how its last run went.
fn stage_view(stop: LaneStop) -> impl IntoView {
    let failed = stop.failed();
    let env = stop.environment;
    let live = env.state == crate::dto::EnvironmentState::Live;
    let open = env.url.clone().filter(|_| live).map(|url| {
        let label = format!("Open {}", env.name);
        view! {
            <a class="button-link" href=url aria-label=label data-testid="open-environment">
                "Open ↗"
            </a>
        }
    });
    let pinned = env.pin.is_some();
    let pin = env.pin.clone().map(|pin| {
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
    let frozen = stop.frozen.map(|freeze| {
        view! { <div class="state-detail lane-frozen">{format!("Frozen: {freeze}")}</div> }
    });
    view! {
        <div
            class="lane-stage env-cell"
            class:failed=failed
            class:pinned=pinned
            class:drifted=drifted
            data-environment=env.name.clone()
        >
            <div class="env-cell-head">
                <span class="env-name">{env.name.clone()}</span>
                " "
                <Badge state=env.state.as_str() />
                {pinned.then(|| view! { <span class="badge state-pinned">"pinned"</span> })}
                {drifted.then(|| view! { <span class="badge state-drifted">"drifted"</span> })}
            </div>
            {env
                .branch
                .clone()
                .filter(|branch| *branch != env.name)
                .map(|branch| view! { <div class="mono muted">{branch}</div> })}
            {commit_view(&env)}
            {last_run_view(stop.last_run)}
            {frozen}
            {pin}
            {env.state_detail.map(|detail| view! { <div class="state-detail">{detail}</div> })}
            {env.drift.map(|drift| view! { <div class="state-detail drift-detail">{drift}</div> })}
            {open}
        </div>
    }
}

/// What runs there: commit, message, author, since when.
fn commit_view(env: &EnvironmentSummary) -> impl IntoView + use<> {
    match env.commit_sha.clone() {
        Some(sha) => view! {
            <div class="commit">
                <span class="mono" title=sha.clone()>{short_sha(&sha).to_string()}</span>
                " "
                <span class="commit-message">{env.commit_message.clone().unwrap_or_default()}</span>
                <div class="commit-author">
                    {env.commit_author.clone().unwrap_or_default()}
                    " · "
                    <Time at=env.updated_at />
                </div>
            </div>
        }
        .into_any(),
        None => view! { <div class="muted">"Nothing deployed yet"</div> }.into_any(),
    }
}

/// The newest run: its state with a link, and why it failed.
fn last_run_view(run: Option<crate::dto::LastRun>) -> impl IntoView {
    run.map(|run| {
        let href = format!("/runs/{}", run.id);
        let label = format!("Run #{}", run.id);
        let failed = run.state == RunState::Failed;
        view! {
            <div class="lane-run" class:failed=failed>
                <a href=href>{label}</a>
                " "
                <Badge state=run.state.as_str() />
                " "
                <span class="mono" title=run.commit_sha.clone()>{short_sha(&run.commit_sha).to_string()}</span>
                " · "
                <Time at=run.finished_at.unwrap_or(run.created_at) />
                {run.error.map(|error| view! { <div class="state-detail lane-failure">{error}</div> })}
            </div>
        }
    })
}

/// A preview in its lane: compact, its branch cut to the lane's width.
fn preview_item(stop: LaneStop) -> impl IntoView {
    let failed = stop.failed();
    let env = stop.environment;
    let branch = env.branch.clone().unwrap_or_else(|| env.name.clone());
    let link = env
        .url
        .clone()
        .filter(|_| env.state == crate::dto::EnvironmentState::Live)
        .map(|url| {
            let label = format!("Open the preview of {branch}");
            view! {
                <a class="lane-open" href=url aria-label=label data-testid="open-environment">
                    "Open ↗"
                </a>
            }
        });
    let commit = env.commit_sha.clone().map(|sha| {
        let message = env.commit_message.clone().unwrap_or_default();
        view! {
            <div class="lane-commit">
                <span class="mono" title=sha.clone()>{short_sha(&sha).to_string()}</span>
                " "
                <span class="lane-message" title=message.clone()>{message.clone()}</span>
            </div>
        }
    });
    view! {
        <li class="lane-preview" class:failed=failed data-environment=env.name.clone()>
            <div class="lane-preview-head">
                <span class="lane-branch mono" title=branch.clone()>{branch.clone()}</span>
                <Badge state=env.state.as_str() />
            </div>
            {commit}
            {last_run_view(stop.last_run)}
            {link}
        </li>
    }
}
