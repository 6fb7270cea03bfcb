//! What a form's action did. Forms are islands of their own, so they cannot
//! share page state; each reports into the page's outcome region (`#outcome`,
//! in the layout), which live refreshes keep, and asks for a refresh so the
//! server-rendered page shows the change at once.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;

/// One message in the outcome region (shown only in the browser).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct Outcome {
    pub text: String,
    pub error: bool,
    /// The `data-testid` of the message (the browser tests look for it).
    pub testid: &'static str,
}

impl Outcome {
    pub fn done(testid: &'static str, text: impl Into<String>) -> Option<Outcome> {
        Some(Outcome {
            text: text.into(),
            error: false,
            testid,
        })
    }

    pub fn failed(testid: &'static str, error: impl ToString) -> Option<Outcome> {
        Some(Outcome {
            text: crate::format::plain(error.to_string()),
            error: true,
            testid,
        })
    }
}

/// Reports each result of an action (`describe` returns `None` when there
/// is nothing to say) and refreshes the page.
pub fn report<S>(
    action: ServerAction<S>,
    describe: impl Fn(Result<S::Output, S::Error>) -> Option<Outcome> + 'static,
) where
    S: ServerFn + Clone + Send + Sync + 'static,
    S::Output: Clone + Send + Sync + 'static,
    S::Error: Clone + Send + Sync + 'static,
{
    let value = action.value();
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        if let Some(result) = value.get() {
            if let Some(outcome) = describe(result) {
                show(&outcome);
            }
            refresh();
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (value, describe);
}

#[cfg(feature = "hydrate")]
fn show(outcome: &Outcome) {
    let document = document();
    let (Some(region), Ok(message)) = (
        document.get_element_by_id("outcome"),
        document.create_element("div"),
    ) else {
        return;
    };
    let (class, role) = if outcome.error {
        ("notice notice-error", "alert")
    } else {
        ("notice", "status")
    };
    // Attribute failures only lose styling; the text is what matters.
    let _ = message.set_attribute("class", class);
    let _ = message.set_attribute("role", role);
    let _ = message.set_attribute("data-testid", outcome.testid);
    message.set_text_content(Some(&outcome.text));
    region.set_text_content(None);
    let _ = region.append_child(&message);
}

/// Asks page_updates.js to fetch the page again and swap in what changed.
#[cfg(feature = "hydrate")]
pub fn refresh() {
    if let Ok(event) = web_sys::Event::new("gantry:refresh") {
        let _ = window().dispatch_event(&event);
    }
}
