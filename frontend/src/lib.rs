//! The browser entry point. The dashboard is server-rendered; only its
//! islands (the theme switch, live logs, the forms that act) are compiled
//! to WASM and hydrated, which keeps the download small.

use wasm_bindgen::prelude::wasm_bindgen;

/// Called by the module script that Leptos' `HydrationScripts` emits, before
/// it hydrates each `<leptos-island>`.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
    app::islands_ready();
}
