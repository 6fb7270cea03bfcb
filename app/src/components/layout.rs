//! The frame around every page: the navigation of the product's areas, who
//! is signed in (or a way to sign in), and the theme switch. Areas a role
//! cannot use are not shown; the server refuses them anyway.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::api::{waiting_for_me, whoami};
use crate::components::theme::ThemeToggle;
use crate::dto::{Me, Role};

/// The product's areas, in the order people work through them, and the
/// role each needs.
const NAV: &[(&str, &str, Role)] = &[
    ("/", "Environments", Role::Viewer),
    ("/runs", "Runs", Role::Viewer),
    ("/change-requests", "Change requests", Role::Viewer),
    ("/releases", "Releases", Role::Viewer),
    ("/delivery", "Delivery", Role::Viewer),
    ("/approvals", "Approvals", Role::Viewer),
    ("/clusters", "Clusters", Role::Admin),
    ("/notifications", "Notifications", Role::Admin),
    ("/audit", "Audit", Role::Viewer),
    ("/settings", "Settings", Role::Admin),
];

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let me = Resource::new(|| (), |_| whoami());
    provide_context(me);
    let waiting = Resource::new(|| (), |_| waiting_for_me());
    // A tester behind a share link sees that page alone: the product's
    // areas are not theirs to browse.
    let bare = use_location()
        .pathname
        .get_untracked()
        .starts_with("/share/");

    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        // `data-hydrated` turns "true" once the WASM runs (see ThemeToggle).
        <div class="frame" class:frame-bare=bare data-hydrated="false">
            <header class="topbar">
                <a class="brand" href="/">
                    <span class="brand-mark" aria-hidden="true">"▲"</span>
                    <span>"Gantry"</span>
                </a>
                <div class="topbar-end">
                    <Suspense fallback=|| ()>
                        {move || Suspend::new(async move { account(me.await.ok().flatten()) })}
                    </Suspense>
                    <ThemeToggle />
                </div>
            </header>
            {(!bare)
                .then(|| {
                    view! {
                        <nav class="sidebar" aria-label="Main">
                            <Suspense fallback=|| nav(None, 0)>
                                {move || Suspend::new(async move {
                                    nav(me.await.ok().flatten(), waiting.await.unwrap_or(0))
                                })}
                            </Suspense>
                        </nav>
                    }
                })}
            <main class="content" id="main" tabindex="-1">
                // What the last form did; live refreshes keep it (data-keep).
                <div id="outcome" class="outcome" data-keep="" aria-live="polite"></div>
                {children()}
            </main>
        </div>
    }
}

/// The areas this person may use (only the viewer ones before sign-in),
/// with how many decisions wait for them beside Approvals. A desk shows
/// the list; a phone shows a menu button naming the current page (and the
/// count), which opens the same list.
fn nav(me: Option<Me>, waiting: u32) -> impl IntoView {
    let items: Vec<(&'static str, &'static str)> = NAV
        .iter()
        .filter(|(_, _, role)| {
            *role == Role::Viewer || me.as_ref().is_some_and(|me| me.can_anywhere(*role))
        })
        .map(|(href, label, _)| (*href, *label))
        .collect();
    let path = use_location().pathname.get_untracked();
    let here = items
        .iter()
        .filter(|(href, _)| {
            if *href == "/" {
                path == "/" || path.starts_with("/apps/")
            } else if *href == "/settings" {
                // Secrets live with the settings.
                path.starts_with(href) || path.starts_with("/secrets")
            } else {
                path.starts_with(href)
            }
        })
        .map(|(_, label)| *label)
        .next_back()
        .unwrap_or("Pages");
    view! {
        <div class="nav-wide">{nav_list(&items, waiting, true)}</div>
        <details class="nav-phone">
            <summary>
                <span class="nav-phone-label">"Menu"</span>
                <span class="nav-here">{here}</span>
                {(waiting > 0).then(|| view! { <span class="nav-count" aria-hidden="true">{waiting}</span> })}
            </summary>
            {nav_list(&items, waiting, false)}
        </details>
    }
}

/// The list of areas; `counted` marks the Approvals count for the tests
/// (one of the two lists on a page).
fn nav_list(
    items: &[(&'static str, &'static str)],
    waiting: u32,
    counted: bool,
) -> impl IntoView + use<> {
    let items = items.to_vec();
    view! {
        <ul>
            {items
                .into_iter()
                .map(|(href, label)| {
                    if href == "/approvals" && waiting > 0 {
                        let text = if waiting == 1 {
                            "1 waits for you".to_string()
                        } else {
                            format!("{waiting} wait for you")
                        };
                        return view! {
                            <li>
                                <A href=href>
                                    {label}
                                    " "
                                    <span class="nav-count" data-testid=counted.then_some("approvals-count")>
                                        <span aria-hidden="true">{waiting}</span>
                                        <span class="visually-hidden">{text}</span>
                                    </span>
                                </A>
                            </li>
                        }
                        .into_any();
                    }
                    view! {
                        <li>
                            <A href=href exact=href == "/">
                                {label}
                            </A>
                        </li>
                    }
                    .into_any()
                })
                .collect_view()}
        </ul>
    }
}

/// Who is signed in and a sign-out button, or a sign-in link.
fn account(me: Option<Me>) -> impl IntoView {
    let path = use_location().pathname.get_untracked();
    match me {
        Some(me) => {
            let roles = me
                .grants
                .iter()
                .map(|g| match &g.app {
                    Some(app) => format!("{} on {app}", g.role),
                    None => g.role.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            view! {
                // data-live: signed-in people get live updates (page_updates.js),
                // starting from the version the page was rendered at.
                <span
                    class="account"
                    data-testid="account"
                    data-live="on"
                    data-page-version=page_version()
                >
                    <span class="account-name">{me.name.clone()}</span>
                    <span class="muted">{format!(" · {roles}")}</span>
                </span>
                <a href="/tokens" class="account-tokens">"API tokens"</a>
                <form method="post" action="/auth/logout" class="inline">
                    <input type="hidden" name="csrf" value=me.csrf.clone() />
                    <button type="submit">"Sign out"</button>
                </form>
            }
            .into_any()
        }
        None => view! {
            <a class="button-link" href=format!("/auth/login?return_to={path}") data-testid="sign-in">
                "Sign in"
            </a>
        }
        .into_any(),
    }
}

/// The change feed's version this page was rendered at, if the server
/// stamped the request with one (`port::PageVersion`).
fn page_version() -> Option<String> {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<crate::port::PageVersion>().cloned())
            .map(|version| version.0)
    }
    #[cfg(not(feature = "ssr"))]
    {
        None
    }
}

/// The signed-in person, for pages that adapt to the role.
pub fn use_me() -> Option<Resource<Result<Option<Me>, ServerFnError>>> {
    use_context::<Resource<Result<Option<Me>, ServerFnError>>>()
}

/// Waits for [`use_me`]'s answer: the signed-in person, or `None` for a
/// visitor (or when the lookup failed, which the layout reports).
pub async fn signed_in(me: Option<Resource<Result<Option<Me>, ServerFnError>>>) -> Option<Me> {
    match me {
        Some(me) => me.await.ok().flatten(),
        None => None,
    }
}
