//! The release timeline: per app and environment, every release with its
//! version (= commit), changelog, approvals, targets and state; rollback
//! markers; and, for admins, the rollback, mark-stable and promote actions.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{
    MarkReleaseStable, PromoteEnvironment, RollbackRelease, compare_releases, get_release,
    list_releases,
};
use crate::components::commits::{count, uncovered_panel};
use crate::components::layout::{signed_in, use_me};
use crate::components::list::{Badge, EmptyState, PageHeader, load_error};
use crate::components::outcome::{Outcome, report};
use crate::dto::{
    ChangelogCommit, Me, ReleaseFilter, ReleaseKind, ReleaseState, ReleaseSummary, Role,
};
use crate::format::short_sha;

#[component]
pub fn ReleasesPage() -> impl IntoView {
    // The filter lives in the address, so a timeline can be shared.
    let query = use_query_map();
    let filter = move || {
        query.with(|q| {
            let present = |key: &str| q.get(key).filter(|v| !v.trim().is_empty());
            ReleaseFilter {
                app: present("app"),
                environment: present("environment"),
                before: present("before").and_then(|b| b.parse().ok()),
                limit: None,
            }
        })
    };
    let releases = Resource::new(filter, list_releases);
    let value = move |key: &'static str| query.with(|q| q.get(key).unwrap_or_default());
    let me = use_me();
    view! {
        <PageHeader
            title="Releases"
            lead="Every deployment of staging and production, a lane per environment: version = commit, newest first."
        />
        <form method="get" class="filters" role="search" aria-label="Filter the releases">
            <label>"App" <input type="text" name="app" value=value("app") /></label>
            <label>
                "Environment"
                <input
                    type="text"
                    name="environment"
                    placeholder="production"
                    value=value("environment")
                />
            </label>
            <button type="submit">"Show"</button>
            <a href="/releases">"All"</a>
        </form>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let me = signed_in(me).await;
                match releases.await {
                    Ok(list) => timeline(list, me, filter()).into_any(),
                    Err(error) => load_error(error),
                }
            })}
        </Suspense>
    }
}

/// One environment's releases, each with the release before it there.
type Lane = (String, Vec<(ReleaseSummary, Option<i64>)>);

fn timeline(releases: Vec<ReleaseSummary>, me: Option<Me>, filter: ReleaseFilter) -> impl IntoView {
    if releases.is_empty() {
        return view! {
            <EmptyState title="No releases yet">
                <p>"An entry is recorded each time a commit is deployed to staging or production."</p>
            </EmptyState>
        }
        .into_any();
    }
    let older = (releases.len() >= 50).then(|| {
        let last = releases.last().map(|r| r.id).unwrap_or_default();
        let mut href = format!("/releases?before={last}");
        if let Some(app) = &filter.app {
            href.push_str(&format!("&app={app}"));
        }
        if let Some(env) = &filter.environment {
            href.push_str(&format!("&environment={env}"));
        }
        view! { <a class="button-link" href=href>"Older releases"</a> }
    });
    // The release before each one in its environment, if listed: what a
    // "compare" link compares it with.
    let older_of: Vec<Option<i64>> = releases
        .iter()
        .enumerate()
        .map(|(n, release)| {
            releases[n + 1..]
                .iter()
                .find(|older| older.environment_id == release.environment_id)
                .map(|older| older.id)
        })
        .collect();
    // A lane per environment, upstream on the left: production last.
    let mut lanes: Vec<Lane> = Vec::new();
    for (release, previous) in releases.into_iter().zip(older_of) {
        match lanes
            .iter_mut()
            .find(|(env, _)| *env == release.environment)
        {
            Some((_, entries)) => entries.push((release, previous)),
            None => lanes.push((release.environment.clone(), vec![(release, previous)])),
        }
    }
    lanes.sort_by(|(a, _), (b, _)| (a == "production", a).cmp(&(b == "production", b)));
    view! {
        <div class="ledger-lanes" data-testid="release-timeline">
            {lanes
                .into_iter()
                .map(|(environment, entries)| {
                    let heading = format!("lane-{environment}");
                    let (labelled, marker) = (heading.clone(), environment.clone());
                    view! {
                        <section class="ledger-lane" aria-labelledby=labelled data-lane=marker>
                            <h2 id=heading>{environment}</h2>
                            <ol class="timeline">
                                {entries
                                    .into_iter()
                                    .map(|(release, previous)| {
                                        // Admins get the forms, which carry their CSRF token.
                                        let csrf = me
                                            .as_ref()
                                            .filter(|me| me.can(Role::Admin, Some(&release.app)))
                                            .map(|me| me.csrf.clone());
                                        entry(release, csrf, previous)
                                    })
                                    .collect_view()}
                            </ol>
                        </section>
                    }
                })
                .collect_view()}
        </div>
        {older}
    }
    .into_any()
}

/// One release: what went live, where and when, its approvals and the
/// commits it brought, its soak towards stable, and the actions on it.
#[component]
pub fn ReleasePage() -> impl IntoView {
    let params = leptos_router::hooks::use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|id| id.parse::<i64>().ok())
    };
    let release = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_release(id).await,
            None => Ok(None),
        }
    });
    let me = use_me();
    view! {
        <PageHeader
            title="Release"
            lead="What went live, who approved it, what it brought, and whether it is stable yet."
            tab=false
        />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let me = signed_in(me).await;
                match release.await {
                    Ok(Some(release)) => release_view(release, me).into_any(),
                    Ok(None) => {
                        #[cfg(feature = "ssr")]
                        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                            response.set_status(http::StatusCode::NOT_FOUND);
                        }
                        view! {
                            <leptos_meta::Title text="Release not found" />
                            <p class="notice">"There is no such release."</p>
                        }
                            .into_any()
                    }
                    Err(error) => load_error(error),
                }
            })}
        </Suspense>
    }
}

fn release_view(release: ReleaseSummary, me: Option<Me>) -> impl IntoView {
    let title = format!(
        "Release #{} · {} / {}",
        release.id, release.app, release.environment
    );
    let all = format!(
        "/releases?app={}&environment={}",
        crate::format::percent_encode(&release.app),
        crate::format::percent_encode(&release.environment)
    );
    let run = release.run_id.map(|run| {
        view! { <a href=format!("/runs/{run}")>{format!("Run #{run}, which deployed it")}</a> }
    });
    let soak = release.soak.clone().map(soak_view);
    let uncovered = release.uncovered.clone().map(|uncovered| {
        let title = format!("{} went live with no approval covering them", count(&uncovered));
        uncovered_panel(
            uncovered,
            title,
            "Its run was held for these and an admin's override released it: the override's reason is among the approvals below.",
            "release-uncovered",
        )
    });
    let (app_name, id) = (release.app.clone(), release.id);
    let csrf = me
        .as_ref()
        .filter(|me| me.can(Role::Admin, Some(&release.app)))
        .map(|me| me.csrf.clone());
    view! {
        <leptos_meta::Title text=title />
        <p class="release-links">
            <a href=all>"All releases of this environment"</a>
            {run.map(|run| view! { " · " {run} })}
        </p>
        {soak}
        {uncovered}
        <ol class="timeline" data-testid="release">{entry(release, csrf, None)}</ol>
        <form method="get" action="/releases/compare" class="filters" aria-label="Compare with another release">
            <input type="hidden" name="app" value=app_name />
            <input type="hidden" name="to" value=id.to_string() />
            <label>"Compare with release #" <input type="number" name="from" min="1" required /></label>
            <button type="submit">"Compare"</button>
        </form>
    }
}

/// What lies between two releases of an app: its commits (newest first),
/// their authors and the files they changed. The address holds the pair
/// (`?app=&from=&to=`), so a comparison can be shared.
#[component]
pub fn ComparePage() -> impl IntoView {
    let query = use_query_map();
    let pair = move || {
        query.with(|q| {
            let number = |key: &str| q.get(key).and_then(|v| v.trim().parse::<i64>().ok());
            (
                q.get("app").unwrap_or_default(),
                number("from"),
                number("to"),
            )
        })
    };
    let comparison = Resource::new(pair, |(app, from, to)| async move {
        match (app.trim().is_empty(), from, to) {
            (false, Some(from), Some(to)) => compare_releases(app, from, to).await.map(Some),
            _ => Ok(None),
        }
    });
    let value = move |key: &'static str| query.with(|q| q.get(key).unwrap_or_default());
    view! {
        <PageHeader
            title="Compare releases"
            lead="What lies between two releases of an app: the commits, who wrote them, the files they changed."
        />
        <form method="get" class="filters" role="search" aria-label="Releases to compare">
            <label>"App" <input type="text" name="app" required value=value("app") /></label>
            <label>"From release #" <input type="number" name="from" min="1" required value=value("from") /></label>
            <label>"To release #" <input type="number" name="to" min="1" required value=value("to") /></label>
            <button type="submit">"Compare"</button>
        </form>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match comparison.await {
                    Ok(Some(comparison)) => comparison_view(comparison).into_any(),
                    Ok(None) => {
                        view! { <p class="muted">"Pick an app and two of its releases (their numbers are on the release timeline)."</p> }
                            .into_any()
                    }
                    Err(error) => load_error(error),
                }
            })}
        </Suspense>
    }
}

fn comparison_view(comparison: crate::dto::ReleaseComparison) -> impl IntoView {
    let heading = format!(
        "Release #{} ({}) → #{} ({})",
        comparison.from,
        short_sha(&comparison.from_version),
        comparison.to,
        short_sha(&comparison.to_version)
    );
    let summary = format!(
        "{} commit(s) by {}; {} file(s) changed.",
        comparison.commits.len(),
        if comparison.authors.is_empty() {
            "nobody".to_string()
        } else {
            comparison.authors.join(", ")
        },
        comparison.files.len()
    );
    view! {
        <leptos_meta::Title text=format!("Compare #{} → #{} · {}", comparison.from, comparison.to, comparison.app) />
        <section class="panel" aria-labelledby="compare-heading" data-testid="comparison">
            <h2 id="compare-heading">{heading}</h2>
            <p>{summary}</p>
            {crate::components::commits::commit_table(comparison.commits, "compare-commits")}
            <h3>"Files"</h3>
            <ul class="changed-files" data-testid="compare-files">
                {comparison
                    .files
                    .into_iter()
                    .map(|file| {
                        view! {
                            <li>
                                <span class=format!("badge file-{}", file.status)>{file.status.clone()}</span>
                                " "
                                <span class="mono">{file.path}</span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </section>
    }
}

/// A live release's way to stable: healthy since when, out of how long.
fn soak_view(soak: crate::dto::SoakProgress) -> impl IntoView {
    let now = crate::format::now_millis();
    let text = match soak.healthy_since {
        None => format!(
            "Not stable yet: the soak of {} starts once every target is healthy.",
            crate::format::duration(soak.soak_millis)
        ),
        Some(since) => {
            let left = (since + soak.soak_millis - now).max(0);
            format!(
                "Soaking: healthy for {} of {}; stable in about {} if it stays so (and its run's checks passed).",
                crate::format::duration(now - since),
                crate::format::duration(soak.soak_millis),
                crate::format::duration(left)
            )
        }
    };
    let done = soak.healthy_since.map_or(0, |since| {
        ((now - since) * 100 / soak.soak_millis.max(1)).clamp(0, 100)
    });
    view! {
        <section class="panel soak" aria-label="Soak" data-testid="release-soak">
            <p>{text}</p>
            <progress max="100" value=done.to_string() aria-label="Soak progress">
                {format!("{done}%")}
            </progress>
        </section>
    }
}

fn entry(release: ReleaseSummary, csrf: Option<String>, previous: Option<i64>) -> impl IntoView {
    let compare = previous.map(|from| {
        let href = format!(
            "/releases/compare?app={}&from={from}&to={}",
            crate::format::percent_encode(&release.app),
            release.id
        );
        view! { <a class="release-compare" href=href>{format!("Compare with #{from}")}</a> }
    });
    let admin = csrf.is_some();
    let csrf = csrf.unwrap_or_default();
    let rollback = release.kind == ReleaseKind::Rollback;
    let class = if rollback {
        "release release-rollback"
    } else {
        "release"
    };
    let title = match &release.label {
        Some(label) => label.clone(),
        None => format!("{} {}", release.environment, short_sha(&release.version)),
    };
    let who = release
        .created_by
        .clone()
        .unwrap_or_else(|| "gantry".into());
    let live = release.state == ReleaseState::Live;
    // A release that was rolled back is not offered as a target (the API
    // still takes it with `to`, for those who mean it).
    let went_live = matches!(
        release.state,
        ReleaseState::Live | ReleaseState::Stable | ReleaseState::Superseded
    );
    let current = matches!(release.state, ReleaseState::Live | ReleaseState::Stable);
    let id = release.id;
    let facts = (
        targets_view(&release),
        approvals_view(&release),
        artifact_view(&release),
    );
    let changelog = changelog_view(release.changelog.clone(), release.previous_version.clone());
    let (app, environment, version) = (
        release.app.clone(),
        release.environment.clone(),
        release.version.clone(),
    );
    let forms = (
        (admin && live).then(|| view! { <StableForm id csrf=csrf.clone() /> }),
        (admin && went_live && !current).then(|| {
            view! {
                <RollbackForm
                    app=app.clone()
                    environment=environment.clone()
                    to=id
                    version
                    csrf=csrf.clone()
                />
            }
        }),
        (admin && rollback && current).then(|| view! { <PromoteForm app environment csrf /> }),
    );
    view! {
        <li class=class data-release=id data-state=release.state.as_str()>
            <header>
                <h2>
                    {rollback.then(|| view! { <span class="marker" aria-hidden="true">"↩ "</span> })}
                    <a class="mono" href=format!("/releases/{id}") title=release.version.clone()>{title}</a>
                </h2>
                <Badge state=release.state.as_str() />
                <span class="muted">
                    {format!(
                        " {} / {} · #{} · by {who} · ",
                        release.app,
                        release.environment,
                        release.id,
                    )}
                    <crate::components::list::Time at=release.created_at />
                </span>
            </header>
            {release.reason.clone().map(|reason| view! { <p class="reason">"Reason: " {reason}</p> })}
            {release
                .stable_at
                .map(|at| {
                    view! {
                        <p class="muted">
                            "Stable since "
                            <crate::components::list::Time at />
                            {format!(" ({})", release.stable_by.clone().unwrap_or_default())}
                        </p>
                    }
                })}
            <div class="release-facts">{facts}</div>
            {changelog}
            {compare}
            {forms}
        </li>
    }
}

fn targets_view(release: &ReleaseSummary) -> impl IntoView + use<> {
    let items = release
        .targets
        .iter()
        .map(|t| {
            let text = format!("{}: {}", t.target, t.state);
            view! { <li title=t.detail.clone().unwrap_or_default()>{text}</li> }
        })
        .collect_view();
    view! { <ul class="targets" aria-label="Targets">{items}</ul> }
}

/// What it deployed: the artifact, where it was verified and for how long,
/// whether it was rejected, and the run that built it when promoted.
fn artifact_view(release: &ReleaseSummary) -> impl IntoView + use<> {
    release.artifact.clone().map(|status| {
        let built = status
            .promoted_from_run
            .map(|run| format!(" · built once by run #{run}"))
            .unwrap_or_default();
        let rejected = status
            .rejected
            .clone()
            .map(|r| format!(" · rejected by {}: {}", r.by, r.reason));
        view! {
            <p class="artifact-line" data-testid="release-artifact">
                <span class="mono" title=status.source_tree.clone()>
                    {format!("Artifact #{} (tree {})", status.id, short_sha(&status.source_tree))}
                </span>
                {format!(" · {}{built}", crate::components::artifact::verified_line(&status))}
                {rejected.map(|text| view! { <span class="step-error">{text}</span> })}
            </p>
        }
    })
}

fn approvals_view(release: &ReleaseSummary) -> impl IntoView + use<> {
    let approvals: Vec<String> = release
        .approvals
        .iter()
        .filter(|a| a.decision != "feedback")
        .map(|a| format!("{} {}", a.decision, a.who))
        .collect();
    (!approvals.is_empty()).then(|| {
        view! { <p class="approvals">"Approvals: " {approvals.join(", ")}</p> }
    })
}

fn changelog_view(commits: Vec<ChangelogCommit>, previous: Option<String>) -> impl IntoView {
    if commits.is_empty() {
        return ().into_any();
    }
    let summary = format!(
        "{} commit{} since {}",
        commits.len(),
        if commits.len() == 1 { "" } else { "s" },
        previous
            .as_deref()
            .map(short_sha)
            .unwrap_or("the beginning")
    );
    view! {
        <details class="changelog">
            <summary>{summary}</summary>
            <ul>
                {commits
                    .into_iter()
                    .map(|c| {
                        let sha = short_sha(&c.sha).to_string();
                        let sha_view = match c.url {
                            Some(url) => view! { <a class="mono" href=url>{sha}</a> }.into_any(),
                            None => view! { <span class="mono">{sha}</span> }.into_any(),
                        };
                        view! {
                            <li>
                                {sha_view} " " {c.summary} <span class="muted">" — " {c.author}</span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </details>
    }
    .into_any()
}

/// Rolls an environment back to this release (an island: the form acts
/// and reports in the browser).
#[island]
fn RollbackForm(
    app: String,
    environment: String,
    to: i64,
    version: String,
    csrf: String,
) -> impl IntoView {
    let action = ServerAction::<RollbackRelease>::new();
    report(action, |result| match result {
        Ok(accepted) => Outcome::done(
            "release-outcome",
            format!(
                "Rolling {} back to release {} ({}) in run {}; it stays pinned until promoted.{}",
                accepted.environment,
                accepted.to_release,
                short_sha(&accepted.version),
                accepted.run_id,
                accepted
                    .git_error
                    .map(|e| format!(" The pin is not in the pipeline repo: {e}"))
                    .unwrap_or_default()
            ),
        ),
        Err(e) => Outcome::failed("release-error", e),
    });
    let button = format!("Roll {environment} back to this release");
    let confirm = format!(
        " I understand {environment} will run {} and stay pinned until an admin promotes again",
        short_sha(&version)
    );
    view! {
        <ActionForm action=action attr:class="form rollback">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="app" value=app />
            <input type="hidden" name="environment" value=environment />
            <input type="hidden" name="to" value=to.to_string() />
            <label>
                <span>"Reason (required, kept with the release)"</span>
                <input type="text" name="reason" required minlength="5" />
            </label>
            <label class="confirm">
                <input type="checkbox" name="confirm" value="yes" required />
                {confirm}
            </label>
            <label class="confirm">
                <input type="checkbox" name="faulty" value="yes" />
                " What it replaces is faulty: reject its artifact, so it is never promoted again without an override"
            </label>
            <button type="submit" class="danger">{button}</button>
        </ActionForm>
    }
}

#[island]
fn StableForm(id: i64, csrf: String) -> impl IntoView {
    let action = ServerAction::<MarkReleaseStable>::new();
    report(action, |result| {
        result
            .err()
            .and_then(|e| Outcome::failed("release-error", e))
    });
    view! {
        <ActionForm action=action attr:class="form inline">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="reason" value="" />
            <button type="submit">"Mark stable now"</button>
        </ActionForm>
    }
}

#[island]
fn PromoteForm(app: String, environment: String, csrf: String) -> impl IntoView {
    let action = ServerAction::<PromoteEnvironment>::new();
    report(action, |result| match result {
        Ok(promotion) => Outcome::done("release-outcome", promotion.detail),
        Err(e) => Outcome::failed("release-error", e),
    });
    let button = format!("Promote {environment}: unpin and deploy the branch head");
    view! {
        <ActionForm action=action attr:class="form inline">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="app" value=app />
            <input type="hidden" name="environment" value=environment />
            <label>
                <span>"Note"</span>
                <input type="text" name="reason" />
            </label>
            <button type="submit" class="primary">{button}</button>
        </ActionForm>
    }
}
