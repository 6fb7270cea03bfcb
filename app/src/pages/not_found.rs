//! The page for an address the dashboard does not know.

use leptos::prelude::*;

use crate::components::list::PageHeader;

#[component]
pub fn NotFoundPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <PageHeader title="Not found" lead="There is no page at this address." />
        <p>
            <a href="/">"Back to the environments"</a>
        </p>
    }
}
