//! An environment's live resource tree on one of its clusters: what Gantry
//! applied, each object's health and sync state, its ReplicaSets and Pods,
//! its recent events; for admins the live object and its difference from
//! what was applied; for the app's developers its pods' logs. Filtered and
//! paged on the server; the page refreshes itself while it is open.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{get_pod_log, get_resource, get_resources};
use crate::components::list::{EmptyState, PageHeader, loaded};
use crate::dto::{
    PodLog, PodLogQuery, ResourceDetail, ResourceEvent, ResourceHealth, ResourceNode, ResourcePage,
    ResourceQuery, ResourceRef, SyncState,
};
use crate::format::percent_encode;

/// Seconds between the page's refreshes while it is open.
const REFRESH_SECONDS: u32 = 5;

fn place() -> (Memo<String>, Memo<String>) {
    let params = use_params_map();
    (
        Memo::new(move |_| params.read().get("name").unwrap_or_default()),
        Memo::new(move |_| params.read().get("env").unwrap_or_default()),
    )
}

fn tree_href(app: &str, env: &str) -> String {
    format!(
        "/apps/{}/environments/{}/resources",
        percent_encode(app),
        percent_encode(env)
    )
}

#[component]
pub fn ResourcesPage() -> impl IntoView {
    let (app, env) = place();
    let query = use_query_map();
    let wanted = move || {
        let q = query.read();
        let text = |key: &str| q.get(key).filter(|v| !v.trim().is_empty());
        (
            app.get(),
            env.get(),
            ResourceQuery {
                cluster: text("cluster"),
                kind: text("kind"),
                q: text("q"),
                health: text("health"),
                page: q.get("page").and_then(|p| p.parse().ok()),
            },
        )
    };
    let page = Resource::new(wanted, |(app, env, query)| get_resources(app, env, query));
    view! {
        <PageHeader
            title="Resources"
            lead="What Gantry applied to this environment, live: health, whether it is still what was applied, and what its controllers made of it."
            tab=false
        />
        {loaded(page, tree_view)}
    }
}

fn health_badge(health: ResourceHealth) -> impl IntoView {
    view! { <span class=format!("badge health-{}", health.as_str())>{health.as_str()}</span> }
}

fn sync_badge(sync: SyncState) -> impl IntoView {
    let text = match sync {
        SyncState::InSync => "in sync",
        SyncState::Drifted => "drifted",
        SyncState::Missing => "missing",
        SyncState::Owned => return ().into_any(),
    };
    view! { <span class=format!("badge sync-{}", sync.as_str())>{text}</span> }.into_any()
}

fn tree_view(page: ResourcePage) -> impl IntoView {
    let base = tree_href(&page.app, &page.environment);
    let title = format!("{} · {} · resources", page.app, page.environment);
    let cluster_links = page
        .clusters
        .iter()
        .map(|cluster| {
            let current = (*cluster == page.cluster).then_some("page");
            let href = format!("{base}?cluster={}", percent_encode(cluster));
            view! { <a href=href aria-current=current class="chip">{cluster.clone()}</a> }
        })
        .collect_view();
    let counts = page
        .counts
        .iter()
        .map(|c| {
            let href = format!(
                "{base}?cluster={}&health={}",
                percent_encode(&page.cluster),
                c.health.as_str()
            );
            view! {
                <a href=href class=format!("count health-{}", c.health.as_str()) data-testid=format!("count-{}", c.health.as_str())>
                    <strong>{c.count}</strong>
                    " "
                    {c.health.as_str()}
                </a>
            }
        })
        .collect_view();
    let drifted = (page.drifted > 0).then(|| {
        view! {
            <span class="count sync-drifted" data-testid="count-drifted">
                <strong>{page.drifted}</strong>
                " drifted"
            </span>
        }
    });
    let kinds = page
        .kinds
        .iter()
        .map(|kind| view! { <option value=kind.clone()>{kind.clone()}</option> })
        .collect_view();
    let healths = ResourceHealth::ALL
        .iter()
        .map(|h| view! { <option value=h.as_str()>{h.as_str()}</option> })
        .collect_view();
    let context = Context {
        app: page.app.clone(),
        env: page.environment.clone(),
        cluster: page.cluster.clone(),
        inspect: page.can_inspect,
        logs: page.can_read_logs,
    };
    let rows = if page.objects.is_empty() {
        let why = if page.deployment_id.is_none() {
            "Nothing was deployed to this environment yet."
        } else {
            "No object matches these filters."
        };
        view! {
            <EmptyState title="No objects">
                <p>{why}</p>
            </EmptyState>
        }
        .into_any()
    } else {
        view! {
            <ul class="resource-tree" data-testid="resource-tree">
                {page.objects.into_iter().map(|node| object_row(node, &context)).collect_view()}
            </ul>
        }
        .into_any()
    };
    let pager = (page.pages > 1).then(|| {
        let link = |n: u32| {
            format!(
                "{base}?cluster={}&page={n}",
                percent_encode(&page.cluster)
            )
        };
        view! {
            <nav class="pager" aria-label="Pages">
                {(page.page > 1).then(|| view! { <a href=link(page.page - 1) rel="prev">"Newer"</a> })}
                <span>{format!("Page {} of {} ({} objects)", page.page, page.pages, page.total)}</span>
                {(page.page < page.pages).then(|| view! { <a href=link(page.page + 1) rel="next">"More"</a> })}
            </nav>
        }
    });
    view! {
        <leptos_meta::Title text=title />
        <section class="panel" aria-labelledby="tree-heading" data-refresh=REFRESH_SECONDS>
            <h2 id="tree-heading">
                <a href=format!("/apps/{}", percent_encode(&page.app))>{page.app.clone()}</a>
                " · "
                {page.environment.clone()}
            </h2>
            <p class="muted">
                "Namespace " <span class="mono">{page.namespace.clone()}</span>
                {page.deployment_id.map(|id| format!(" · deployment #{id}"))}
            </p>
            <nav class="chips" aria-label="Cluster">{cluster_links}</nav>
            {page
                .unreachable
                .clone()
                .map(|why| {
                    view! {
                        <p class="notice notice-error" role="alert" data-testid="tree-unreachable">
                            {format!("{} could not be read: {why}", page.cluster)}
                        </p>
                    }
                })}
            <p class="counts" data-testid="tree-counts">{counts}{drifted}</p>
            <form method="get" class="filters" role="search" aria-label="Filter objects">
                <input type="hidden" name="cluster" value=page.cluster.clone() />
                <label>"Name" <input type="search" name="q" placeholder="contains…" /></label>
                <label>
                    "Kind"
                    <select name="kind">
                        <option value="">"any"</option>
                        {kinds}
                    </select>
                </label>
                <label>
                    "Health"
                    <select name="health">
                        <option value="">"any"</option>
                        {healths}
                    </select>
                </label>
                <button type="submit">"Filter"</button>
            </form>
            {rows}
            {pager}
        </section>
    }
}

/// What every row needs to link on.
struct Context {
    app: String,
    env: String,
    cluster: String,
    inspect: bool,
    logs: bool,
}

fn events_view(events: Vec<ResourceEvent>) -> impl IntoView {
    (!events.is_empty()).then(|| {
        view! {
            <ul class="events">
                {events
                    .into_iter()
                    .map(|e| {
                        let class = if e.kind == "Warning" { "event event-warning" } else { "event" };
                        let times = (e.count > 1).then(|| format!(" (×{})", e.count));
                        view! {
                            <li class=class>
                                <strong>{e.reason}</strong>
                                " "
                                {e.message}
                                {times}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        }
    })
}

fn object_row(node: ResourceNode, context: &Context) -> impl IntoView {
    let label = format!("{}/{}", node.kind, node.name);
    let inspect = context.inspect.then(|| {
        let href = format!(
            "{}/object?cluster={}&apiVersion={}&kind={}&name={}",
            tree_href(&context.app, &context.env),
            percent_encode(&context.cluster),
            percent_encode(&node.api_version),
            percent_encode(&node.kind),
            percent_encode(&node.name)
        );
        view! { <a href=href class="inspect">"Live object and diff"</a> }
    });
    let has_more = !node.children.is_empty() || !node.events.is_empty();
    let children = node
        .children
        .into_iter()
        .map(|child| child_row(child, context))
        .collect_view();
    let summary = view! {
        <span class="object-kind">{node.kind.clone()}</span>
        " "
        <span class="object-name mono">{node.name.clone()}</span>
        " "
        {health_badge(node.health)}
        " "
        {sync_badge(node.sync)}
        {node.message.clone().map(|m| view! { <span class="object-message">{m}</span> })}
    };
    view! {
        <li class="resource" data-object=label.clone() data-health=node.health.as_str()>
            <details>
                <summary>{summary}</summary>
                <div class="resource-body">
                    {inspect}
                    {events_view(node.events)}
                    {has_more.then(|| view! { <ul class="children">{children}</ul> })}
                    {(!has_more).then(|| view! { <p class="muted">"No children, no recent events."</p> })}
                </div>
            </details>
        </li>
    }
}

fn child_row(node: ResourceNode, context: &Context) -> AnyView {
    let label = format!("{}/{}", node.kind, node.name);
    let logs = (context.logs && node.kind == "Pod").then(|| {
        node.containers
            .iter()
            .map(|container| {
                let href = format!(
                    "/apps/{}/environments/{}/pods/{}?cluster={}&container={}",
                    percent_encode(&context.app),
                    percent_encode(&context.env),
                    percent_encode(&node.name),
                    percent_encode(&context.cluster),
                    percent_encode(container)
                );
                let text = if node.containers.len() == 1 {
                    "Log".to_string()
                } else {
                    format!("Log of {container}")
                };
                view! { <a href=href class="pod-log">{text}</a> }
            })
            .collect_view()
    });
    let grandchildren = node
        .children
        .into_iter()
        .map(|child| child_row(child, context))
        .collect_view();
    view! {
        <li class="child" data-object=label data-health=node.health.as_str()>
            <span class="object-kind">{node.kind.clone()}</span>
            " "
            <span class="object-name mono">{node.name.clone()}</span>
            " "
            {health_badge(node.health)}
            {node.message.map(|m| view! { <span class="object-message">{m}</span> })}
            " "
            {logs}
            {events_view(node.events)}
            <ul class="children">{grandchildren}</ul>
        </li>
    }
    .into_any()
}

#[component]
pub fn ResourceObjectPage() -> impl IntoView {
    let (app, env) = place();
    let query = use_query_map();
    let wanted = move || {
        let q = query.read();
        (
            app.get(),
            env.get(),
            ResourceRef {
                cluster: q.get("cluster"),
                api_version: q.get("apiVersion").unwrap_or_default(),
                kind: q.get("kind").unwrap_or_default(),
                name: q.get("name").unwrap_or_default(),
            },
        )
    };
    let detail = Resource::new(wanted, |(app, env, reference)| {
        get_resource(app, env, reference)
    });
    let back = move || tree_href(&app.get(), &env.get());
    let heading = move || {
        query.with(|q| {
            format!(
                "{}/{}",
                q.get("kind").unwrap_or_default(),
                q.get("name").unwrap_or_default()
            )
        })
    };
    view! {
        <PageHeader
            title="Live object"
            lead="The object as the cluster has it now, as Gantry applied it, and how they differ in the fields Gantry applied."
        />
        <p><a href=back>"← Resources"</a></p>
        <h2 class="mono" data-testid="object-heading">{heading}</h2>
        {loaded(detail, detail_view)}
    }
}

fn detail_view(detail: ResourceDetail) -> impl IntoView {
    let diff = match detail.diff {
        Some(diff) => view! { <pre class="diff" data-testid="object-diff" tabindex="0">{diff}</pre> }.into_any(),
        None if detail.live.is_some() => {
            view! { <p data-testid="object-in-sync">"In sync: every field Gantry applied has that value live."</p> }.into_any()
        }
        None => view! { <p class="notice notice-error">"Missing: the object is not on the cluster."</p> }.into_any(),
    };
    view! {
        <p class="muted">
            {format!("On {} in namespace {}", detail.cluster, detail.namespace)}
        </p>
        <section class="panel" aria-labelledby="object-diff-heading">
            <h2 id="object-diff-heading">"Applied → live"</h2>
            {diff}
        </section>
        {events_view(detail.events)}
        <section class="panel" aria-labelledby="object-live-heading">
            <h2 id="object-live-heading">"Live"</h2>
            <pre class="yaml" data-testid="object-live" tabindex="0">{detail.live.unwrap_or_else(|| "(missing)".into())}</pre>
        </section>
        <section class="panel" aria-labelledby="object-applied-heading">
            <h2 id="object-applied-heading">"As applied"</h2>
            <pre class="yaml" tabindex="0">{detail.applied.unwrap_or_default()}</pre>
        </section>
    }
}

#[component]
pub fn PodLogPage() -> impl IntoView {
    let (app, env) = place();
    let params = use_params_map();
    let pod = Memo::new(move |_| params.read().get("pod").unwrap_or_default());
    let query = use_query_map();
    let wanted = move || {
        let q = query.read();
        (
            app.get(),
            env.get(),
            pod.get(),
            PodLogQuery {
                cluster: q.get("cluster"),
                container: q.get("container"),
            },
        )
    };
    let log = Resource::new(wanted, |(app, env, pod, query)| {
        get_pod_log(app, env, pod, query)
    });
    let back = move || tree_href(&app.get(), &env.get());
    view! {
        <PageHeader title="Pod log" lead="The last lines a pod's container printed." />
        <p><a href=back>"← Resources"</a></p>
        {loaded(log, log_view)}
    }
}

fn log_view(log: PodLog) -> impl IntoView {
    let empty = log.text.trim().is_empty();
    view! {
        <h2 class="mono" data-testid="pod-heading">{format!("{} · {}", log.pod, log.container)}</h2>
        <p class="muted">{format!("On {} in namespace {}", log.cluster, log.namespace)}</p>
        <section class="panel" data-refresh=REFRESH_SECONDS>
            {if empty {
                view! { <p>"The container has printed nothing yet."</p> }.into_any()
            } else {
                view! { <pre class="log" data-testid="pod-log" tabindex="0">{log.text}</pre> }.into_any()
            }}
        </section>
    }
}
