//! Light and dark themes. The choice lives in `localStorage` and on the
//! `<html data-theme>` attribute; without a choice the OS preference applies
//! (CSS `prefers-color-scheme`). The switch works only once the WASM runs —
//! the browser test relies on that to prove hydration.

use leptos::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Theme {
    Light,
    Dark,
}

impl Theme {
    fn other(self) -> Self {
        match self {
            Theme::Light => Theme::Dark,
            Theme::Dark => Theme::Light,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }
}

/// The theme in effect in the browser: the stored choice, else the OS's.
#[cfg(feature = "hydrate")]
fn current_theme() -> Theme {
    let document_theme = document()
        .document_element()
        .and_then(|root| root.get_attribute("data-theme"));
    match document_theme.as_deref() {
        Some("dark") => Theme::Dark,
        Some("light") => Theme::Light,
        _ => {
            let prefers_dark = window()
                .match_media("(prefers-color-scheme: dark)")
                .ok()
                .flatten()
                .is_some_and(|query| query.matches());
            if prefers_dark {
                Theme::Dark
            } else {
                Theme::Light
            }
        }
    }
}

#[cfg(feature = "hydrate")]
fn mark_hydrated() {
    if let Ok(Some(frame)) = document().query_selector(".frame") {
        let _ = frame.set_attribute("data-hydrated", "true");
    }
}

#[cfg(feature = "hydrate")]
fn apply_theme(theme: Theme) {
    if let Some(root) = document().document_element() {
        // A failure here only loses the visual switch; nothing to recover.
        let _ = root.set_attribute("data-theme", theme.name());
    }
    if let Ok(Some(storage)) = window().local_storage() {
        let _ = storage.set_item("gantry-theme", theme.name());
    }
}

/// An island: it is in every page's top bar, so it also marks the frame
/// `data-hydrated="true"` once the WASM runs (styles and the browser tests
/// rely on that).
#[island]
pub fn ThemeToggle() -> impl IntoView {
    // The server cannot know the browser's theme; it renders the light
    // label and the browser corrects it right after hydration.
    let theme = RwSignal::new(Theme::Light);

    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        theme.set(current_theme());
        mark_hydrated();
    });

    let toggle = move |_| {
        let next = theme.get_untracked().other();
        #[cfg(feature = "hydrate")]
        apply_theme(next);
        theme.set(next);
    };

    view! {
        <button
            type="button"
            class="theme-toggle"
            data-testid="theme-toggle"
            aria-label=move || format!("Switch to {} theme", theme.get().other().name())
            on:click=toggle
        >
            {move || match theme.get() {
                Theme::Light => "☾ Dark",
                Theme::Dark => "☀ Light",
            }}
        </button>
    }
}
