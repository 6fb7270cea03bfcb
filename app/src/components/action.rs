//! Action forms: a POST to a server function that `page_updates.js` sends
//! (no WASM; without the script the form posts as plain HTML). The answer
//! shows in the outcome region under `data-done` (or `data-error`).

use leptos::prelude::*;

/// A one-button form that removes something: posts `fields` to the server
/// function at `endpoint`, the button reading `verb` ("Delete") and
/// labelled "`verb` `subject`" for assistive technology. `testids` are
/// the outcome's and the failure's.
pub fn removal(
    endpoint: &'static str,
    fields: Vec<(&'static str, String)>,
    verb: &'static str,
    subject: &str,
    testids: (&'static str, &'static str),
    csrf: String,
) -> impl IntoView + use<> {
    let label = format!("{verb} {subject}");
    let (done, error) = testids;
    view! {
        <form method="post" action=endpoint class="inline" data-action="" data-done=done data-error=error>
            <input type="hidden" name="csrf" value=csrf />
            {fields
                .into_iter()
                .map(|(name, value)| view! { <input type="hidden" name=name value=value /> })
                .collect_view()}
            <button type="submit" class="danger" aria-label=label>{verb}</button>
        </form>
    }
}
