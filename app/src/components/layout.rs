//! The frame around every page: the navigation of the product's areas and a
//! header with the theme switch.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::theme::ThemeToggle;

/// The product's areas, in the order people work through them.
const NAV: &[(&str, &str)] = &[
    ("/", "Environments"),
    ("/runs", "Runs"),
    ("/change-requests", "Change requests"),
    ("/releases", "Releases"),
    ("/approvals", "Approvals"),
    ("/clusters", "Clusters"),
    ("/audit", "Audit"),
    ("/settings", "Settings"),
];

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    // Effects run only in the browser, so this flips once the WASM has
    // hydrated the page; styles and the browser tests can rely on it.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <div class="frame" data-hydrated=move || hydrated.get().to_string()>
            <header class="topbar">
                <a class="brand" href="/">
                    <span class="brand-mark" aria-hidden="true">"▲"</span>
                    <span>"Gantry"</span>
                </a>
                <ThemeToggle />
            </header>
            <nav class="sidebar" aria-label="Main">
                <ul>
                    {NAV
                        .iter()
                        .map(|(href, label)| {
                            view! {
                                <li>
                                    <A href=*href exact=*href == "/">
                                        {*label}
                                    </A>
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
            </nav>
            <main class="content" id="main" tabindex="-1">
                {children()}
            </main>
        </div>
    }
}
