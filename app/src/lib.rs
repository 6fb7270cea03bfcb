//! Gantry's dashboard: the Leptos application rendered on the server, whose
//! interactive islands are hydrated in the browser, the DTOs it shares with
//! the REST API, and the server functions it calls.

#![recursion_limit = "256"]

pub mod ansi;
pub mod api;
mod components;
pub mod dto;
pub mod format;
mod pages;
#[cfg(feature = "ssr")]
pub mod port;

use leptos::nonce::use_nonce;
use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{Route, Router, Routes},
    path,
};

use crate::components::layout::Layout;
use crate::pages::{
    app_page::AppPage,
    approvals::ApprovalsPage,
    audit::AuditPage,
    change_request::ChangeRequestPage,
    change_requests::ChangeRequestsPage,
    channels::ChannelsPage,
    clusters::ClustersPage,
    delivery::DeliveryPage,
    environments::EnvironmentsPage,
    not_found::NotFoundPage,
    releases::{ComparePage, ReleasePage, ReleasesPage},
    resources::{PodLogPage, ResourceObjectPage, ResourcesPage},
    run::RunPage,
    runs::RunsPage,
    secrets::SecretsPage,
    settings::SettingsPage,
    share::SharePage,
    tokens::TokensPage,
};

/// Applies the remembered theme before the first paint, so a dark-theme user
/// never sees a white flash while the WASM loads.
const THEME_BOOT_SCRIPT: &str = "try{var t=localStorage.getItem('gantry-theme');\
if(t==='dark'||t==='light'){document.documentElement.dataset.theme=t}}catch(e){}";

/// Client-side navigation and live refreshes for the server-rendered pages
/// (see the file's header).
const PAGE_UPDATES_SCRIPT: &str = include_str!("page_updates.js");

/// Tells the page-updates script that the WASM runs, so islands in pages it
/// brings in can be hydrated. Called by the frontend's entry point.
#[cfg(feature = "hydrate")]
pub fn islands_ready() {
    if let Some(root) = leptos::prelude::document().document_element() {
        // Without it, swapped-in islands wait for a full load; nothing breaks.
        let _ = root.set_attribute("data-islands", "ready");
    }
}

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
                // Inline scripts carry the nonce of the page's
                // Content-Security-Policy (set by the server).
                <script nonce=use_nonce() inner_html=THEME_BOOT_SCRIPT></script>
                <HydrationScripts options islands=true />
                <script type="module" nonce=use_nonce() inner_html=PAGE_UPDATES_SCRIPT></script>
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The dashboard: one layout, one route per product area. Pages are sent
/// whole (`SsrMode::Async`): page_updates.js morphs fetched pages in, and
/// streamed fragments would need their inline scripts to run.
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
                    <Route path=path!("/") view=EnvironmentsPage ssr=SsrMode::Async />
                    <Route path=path!("/runs") view=RunsPage ssr=SsrMode::Async />
                    <Route path=path!("/runs/:id") view=RunPage ssr=SsrMode::Async />
                    <Route path=path!("/change-requests") view=ChangeRequestsPage ssr=SsrMode::Async />
                    <Route path=path!("/change-requests/:id") view=ChangeRequestPage ssr=SsrMode::Async />
                    <Route path=path!("/releases") view=ReleasesPage ssr=SsrMode::Async />
                    <Route path=path!("/delivery") view=DeliveryPage ssr=SsrMode::Async />
                    <Route path=path!("/releases/compare") view=ComparePage ssr=SsrMode::Async />
                    <Route path=path!("/releases/:id") view=ReleasePage ssr=SsrMode::Async />
                    <Route path=path!("/approvals") view=ApprovalsPage ssr=SsrMode::Async />
                    <Route path=path!("/clusters") view=ClustersPage ssr=SsrMode::Async />
                    <Route path=path!("/notifications") view=ChannelsPage ssr=SsrMode::Async />
                    <Route path=path!("/apps/:name") view=AppPage ssr=SsrMode::Async />
                    <Route path=path!("/apps/:name/environments/:env/resources") view=ResourcesPage ssr=SsrMode::Async />
                    <Route path=path!("/apps/:name/environments/:env/resources/object") view=ResourceObjectPage ssr=SsrMode::Async />
                    <Route path=path!("/apps/:name/environments/:env/pods/:pod") view=PodLogPage ssr=SsrMode::Async />
                    <Route path=path!("/share/:token") view=SharePage ssr=SsrMode::Async />
                    <Route path=path!("/audit") view=AuditPage ssr=SsrMode::Async />
                    <Route path=path!("/settings") view=SettingsPage ssr=SsrMode::Async />
                    <Route path=path!("/secrets") view=SecretsPage ssr=SsrMode::Async />
                    <Route path=path!("/tokens") view=TokensPage ssr=SsrMode::Async />
                </Routes>
            </Layout>
        </Router>
    }
}
