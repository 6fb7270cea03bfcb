//! Loading a page's data from a server function, with honest loading, error
//! and empty states.

use leptos::prelude::*;
use serde::{Serialize, de::DeserializeOwned};

/// Renders `resource` once loaded: `render` for data, a notice for errors.
pub fn loaded<T, V, F>(resource: Resource<Result<T, ServerFnError>>, render: F) -> impl IntoView
where
    T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    V: IntoView + 'static,
    F: Fn(T) -> V + Clone + Send + Sync + 'static,
{
    view! {
        // Rendered on the server only, and pages are sent whole, so the
        // fallback shows only if a page is ever streamed.
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || {
                let render = render.clone();
                Suspend::new(async move {
                    match resource.await {
                        Ok(data) => render(data).into_any(),
                        Err(error) => load_error(error),
                    }
                })
            }}
        </Suspense>
    }
}

/// What a page shows in place of data it could not load.
pub fn load_error(error: impl std::fmt::Display) -> AnyView {
    view! { <div class="notice notice-error" role="alert">{crate::format::plain(error)}</div> }
        .into_any()
}

/// What a list shows when there is nothing yet: say why, and what to do.
#[component]
pub fn EmptyState(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <section class="empty-state" aria-label=title>
            <h2>{title}</h2>
            <div class="empty-hint">{children()}</div>
        </section>
    }
}

/// A state badge; the CSS colours it by its stable name.
#[component]
pub fn Badge(state: &'static str) -> impl IntoView {
    let label = state.replace('_', " ");
    view! { <span class=format!("badge state-{state}")>{label}</span> }
}

/// A page heading with a one-line explanation of what the page is for.
/// The tab shows the heading too, unless the page names its tab after
/// what it shows (`tab=false`: "Run #10 · shop").
#[component]
pub fn PageHeader(
    title: &'static str,
    lead: &'static str,
    #[prop(default = true)] tab: bool,
) -> impl IntoView {
    view! {
        {tab.then(|| view! { <leptos_meta::Title text=title /> })}
        <header class="page-header">
            <h1>{title}</h1>
            <p class="lead">{lead}</p>
        </header>
    }
}

/// Renders `render` with the signed-in person's CSRF token (empty for a
/// visitor), which every form that changes something sends back. Forms are
/// islands and cannot read the page's context in the browser, so the token
/// is handed to them as a prop.
pub fn with_csrf<V, F>(render: F) -> impl IntoView
where
    V: IntoView + 'static,
    F: Fn(String) -> V + Clone + Send + Sync + 'static,
{
    let me = crate::components::layout::use_me();
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let render = render.clone();
                Suspend::new(async move {
                    let token = crate::components::layout::signed_in(me)
                        .await
                        .map(|me| me.csrf)
                        .unwrap_or_default();
                    render(token)
                })
            }}
        </Suspense>
    }
}

/// A moment: relative ("5 min ago") with the exact time on hover, and
/// machine-readable for assistive technology.
#[component]
pub fn Time(at: crate::dto::UnixMillis) -> impl IntoView {
    let now = crate::format::now_millis();
    view! {
        <time datetime=crate::format::iso(at) title=crate::format::timestamp(at)>
            {crate::format::ago(at, now)}
        </time>
    }
}

/// An admins' area: its content for admins only (`everywhere`: admins of
/// every app); anyone else reads one sentence saying whose area it is, and
/// sees no form they could not use.
#[component]
pub fn AdminsOnly(
    /// What the area holds, as a sentence's subject ("Clusters").
    what: &'static str,
    #[prop(optional)] everywhere: bool,
    children: ChildrenFn,
) -> impl IntoView {
    let me = crate::components::layout::use_me();
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let children = children.clone();
                Suspend::new(async move {
                    let allowed = crate::components::layout::signed_in(me)
                        .await
                        .is_some_and(|me| {
                            if everywhere {
                                me.can(crate::dto::Role::Admin, None)
                            } else {
                                me.can_anywhere(crate::dto::Role::Admin)
                            }
                        });
                    if allowed {
                        children().into_any()
                    } else {
                        view! {
                            <p class="notice" role="status" data-testid="admins-only">
                                {format!("{what} are for admins: ask an admin if something here needs changing.")}
                            </p>
                        }
                            .into_any()
                    }
                })
            }}
        </Suspense>
    }
}
