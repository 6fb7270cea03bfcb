//! The release timeline: per app and environment, every release with its
//! version (= commit), changelog, approvals, targets and state; rollback
//! markers; and, for admins, the rollback, mark-stable and promote actions.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{MarkReleaseStable, PromoteEnvironment, RollbackRelease, list_releases};
use crate::components::layout::use_me;
use crate::components::list::{Badge, CsrfField, EmptyState, PageHeader};
use crate::dto::{
    ChangelogCommit, Me, ReleaseFilter, ReleaseKind, ReleaseState, ReleaseSummary, Role,
};
use crate::format::{short_sha, timestamp};

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
    let rollback = ServerAction::<RollbackRelease>::new();
    let stable = ServerAction::<MarkReleaseStable>::new();
    let promote = ServerAction::<PromoteEnvironment>::new();
    let releases = Resource::new(
        move || {
            (
                filter(),
                rollback.version().get(),
                stable.version().get(),
                promote.version().get(),
                crate::components::live::live_version(),
            )
        },
        |(filter, ..)| list_releases(filter),
    );
    let value = move |key: &'static str| query.with(|q| q.get(key).unwrap_or_default());
    let me = use_me();
    let actions = Actions {
        rollback,
        stable,
        promote,
    };
    view! {
        <PageHeader
            title="Releases"
            lead="The ledger: every deployment of staging and production, version = commit, newest first."
        />
        <form method="get" class="filters" role="search" aria-label="Filter the releases">
            <label>"App" <input type="text" name="app" prop:value=move || value("app") /></label>
            <label>
                "Environment"
                <input
                    type="text"
                    name="environment"
                    placeholder="production"
                    prop:value=move || value("environment")
                />
            </label>
            <button type="submit">"Show"</button>
            <a href="/releases">"All"</a>
        </form>
        {move || outcome_notice(&actions)}
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let me = match me {
                    Some(me) => me.await.ok().flatten(),
                    None => None,
                };
                match releases.await {
                    Ok(list) => timeline(list, me, filter(), actions).into_any(),
                    Err(error) => {
                        view! {
                            <div class="notice notice-error" role="alert">
                                {error.to_string()}
                            </div>
                        }
                            .into_any()
                    }
                }
            })}
        </Suspense>
    }
}

#[derive(Clone, Copy)]
struct Actions {
    rollback: ServerAction<RollbackRelease>,
    stable: ServerAction<MarkReleaseStable>,
    promote: ServerAction<PromoteEnvironment>,
}

/// What the last action did, or why it was refused.
fn outcome_notice(actions: &Actions) -> Option<AnyView> {
    let error = |text: String| {
        view! {
            <div class="notice notice-error" role="alert" data-testid="release-error">
                {text}
            </div>
        }
        .into_any()
    };
    let done = |text: String| {
        view! {
            <div class="notice" role="status" data-testid="release-outcome">
                {text}
            </div>
        }
        .into_any()
    };
    if let Some(result) = actions.rollback.value().get() {
        return Some(match result {
            Ok(accepted) => done(format!(
                "Rolling {} back to release {} ({}) in run {}; it stays pinned until promoted.{}",
                accepted.environment,
                accepted.to_release,
                short_sha(&accepted.version),
                accepted.run_id,
                accepted
                    .git_error
                    .map(|e| format!(" The pin is not in the pipeline repo: {e}"))
                    .unwrap_or_default()
            )),
            Err(e) => error(e.to_string()),
        });
    }
    if let Some(result) = actions.promote.value().get() {
        return Some(match result {
            Ok(promotion) => done(promotion.detail),
            Err(e) => error(e.to_string()),
        });
    }
    actions
        .stable
        .value()
        .get()
        .and_then(Result::err)
        .map(|e| error(e.to_string()))
}

fn timeline(
    releases: Vec<ReleaseSummary>,
    me: Option<Me>,
    filter: ReleaseFilter,
    actions: Actions,
) -> impl IntoView {
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
    view! {
        <ol class="timeline" data-testid="release-timeline">
            {releases
                .into_iter()
                .map(|release| {
                    let admin = me.as_ref().is_some_and(|me| me.can(Role::Admin, Some(&release.app)));
                    entry(release, admin, actions)
                })
                .collect_view()}
        </ol>
        {older}
    }
    .into_any()
}

fn entry(release: ReleaseSummary, admin: bool, actions: Actions) -> impl IntoView {
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
    let facts = (targets_view(&release), approvals_view(&release));
    let changelog = changelog_view(release.changelog.clone(), release.previous_version.clone());
    let place = Place {
        app: release.app.clone(),
        environment: release.environment.clone(),
        id,
        version: release.version.clone(),
    };
    let target = place.clone();
    view! {
        <li class=class data-release=id data-state=release.state.as_str()>
            <header>
                <h2>
                    {rollback.then(|| view! { <span class="marker" aria-hidden="true">"↩ "</span> })}
                    <span class="mono" title=release.version.clone()>{title}</span>
                </h2>
                <Badge state=release.state.as_str() />
                <span class="muted">
                    {format!(
                        " {} / {} · #{} · by {who} · {}",
                        release.app,
                        release.environment,
                        release.id,
                        timestamp(release.created_at)
                    )}
                </span>
            </header>
            {release.reason.clone().map(|reason| view! { <p class="reason">"Reason: " {reason}</p> })}
            {release
                .stable_at
                .map(|at| {
                    view! {
                        <p class="muted">
                            {format!(
                                "Stable since {} ({})",
                                timestamp(at),
                                release.stable_by.clone().unwrap_or_default()
                            )}
                        </p>
                    }
                })}
            <div class="release-facts">{facts}</div>
            {changelog}
            {(admin && live).then(|| stable_form(id, actions.stable))}
            {(admin && went_live && !current).then(|| rollback_form(target, actions.rollback))}
            {(admin && rollback && current).then(|| promote_form(place, actions.promote))}
        </li>
    }
}

/// Where a release is: app, environment, id and version.
#[derive(Clone)]
struct Place {
    app: String,
    environment: String,
    id: i64,
    version: String,
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

fn rollback_form(release: Place, action: ServerAction<RollbackRelease>) -> impl IntoView {
    let button = format!("Roll {} back to this release", release.environment);
    let confirm = format!(
        " I understand {} will run {} and stay pinned until an admin promotes again",
        release.environment,
        short_sha(&release.version)
    );
    view! {
        <ActionForm action=action attr:class="form rollback">
            <CsrfField />
            <input type="hidden" name="app" value=release.app />
            <input type="hidden" name="environment" value=release.environment />
            <input type="hidden" name="to" value=release.id.to_string() />
            <label>
                <span>"Reason (required, recorded in the ledger)"</span>
                <input type="text" name="reason" required minlength="5" />
            </label>
            <label class="confirm">
                <input type="checkbox" name="confirm" value="yes" required />
                {confirm}
            </label>
            <button type="submit" class="danger">{button}</button>
        </ActionForm>
    }
}

fn stable_form(id: i64, action: ServerAction<MarkReleaseStable>) -> impl IntoView {
    view! {
        <ActionForm action=action attr:class="form inline">
            <CsrfField />
            <input type="hidden" name="id" value=id />
            <input type="hidden" name="reason" value="" />
            <button type="submit">"Mark stable now"</button>
        </ActionForm>
    }
}

fn promote_form(release: Place, action: ServerAction<PromoteEnvironment>) -> impl IntoView {
    let button = format!(
        "Promote {}: unpin and deploy the branch head",
        release.environment
    );
    view! {
        <ActionForm action=action attr:class="form inline">
            <CsrfField />
            <input type="hidden" name="app" value=release.app />
            <input type="hidden" name="environment" value=release.environment />
            <label>
                <span>"Note"</span>
                <input type="text" name="reason" />
            </label>
            <button type="submit" class="primary">{button}</button>
        </ActionForm>
    }
}
