//! Gantry's dashboard: the Leptos application rendered on the server and
//! hydrated in the browser, the DTOs it shares with the REST API, and the
//! server functions it calls.

#![recursion_limit = "256"]

pub mod ansi;
pub mod api;
mod components;
pub mod dto;
pub mod format;
mod pages;
#[cfg(feature = "ssr")]
pub mod port;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};

use crate::components::layout::Layout;
use crate::pages::{
    app_page::AppPage, approvals::ApprovalsPage, audit::AuditPage,
    change_request::ChangeRequestPage, change_requests::ChangeRequestsPage, channels::ChannelsPage,
    clusters::ClustersPage, environments::EnvironmentsPage, not_found::NotFoundPage,
    releases::ReleasesPage, run::RunPage, runs::RunsPage, settings::SettingsPage, share::SharePage,
};

/// Applies the remembered theme before the first paint, so a dark-theme user
/// never sees a white flash while the WASM loads.
const THEME_BOOT_SCRIPT: &str = "try{var t=localStorage.getItem('gantry-theme');\
if(t==='dark'||t==='light'){document.documentElement.dataset.theme=t}}catch(e){}";

/// The HTML document around the application, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="data:," />
                <script inner_html=THEME_BOOT_SCRIPT></script>
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The dashboard: one layout, one route per product area.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Stylesheet id="gantry-css" href="/pkg/gantry.css" />
        <Title formatter=|page: String| {
            if page.is_empty() { "Gantry".to_string() } else { format!("{page} · Gantry") }
        } />
        <Router>
            <Layout>
                <Routes fallback=NotFoundPage>
                    <Route path=path!("/") view=EnvironmentsPage />
                    <Route path=path!("/runs") view=RunsPage />
                    <Route path=path!("/runs/:id") view=RunPage />
                    <Route path=path!("/change-requests") view=ChangeRequestsPage />
                    <Route path=path!("/change-requests/:id") view=ChangeRequestPage />
                    <Route path=path!("/releases") view=ReleasesPage />
                    <Route path=path!("/approvals") view=ApprovalsPage />
                    <Route path=path!("/clusters") view=ClustersPage />
                    <Route path=path!("/channels") view=ChannelsPage />
                    <Route path=path!("/apps/:name") view=AppPage />
                    <Route path=path!("/share/:token") view=SharePage />
                    <Route path=path!("/audit") view=AuditPage />
                    <Route path=path!("/settings") view=SettingsPage />
                </Routes>
            </Layout>
        </Router>
    }
}
