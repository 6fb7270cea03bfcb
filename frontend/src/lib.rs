//! The browser entry point: hydrates the HTML the server rendered, so the
//! dashboard becomes interactive without a second render.

use wasm_bindgen::prelude::wasm_bindgen;

/// Called by the module script that Leptos' `HydrationScripts` emits.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
