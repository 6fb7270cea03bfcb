//! Live updates without polling storms: the server's change feed
//! (`/api/v1/changes`, server-sent events) says when anything people see
//! moved, and the page's resources — which read [`live_version`] — refetch.
//! One connection per open page; the browser reconnects a dropped one by
//! itself, and a version that moved meanwhile triggers the refetch then.

use leptos::prelude::*;

use crate::dto::Me;

/// Moves each time the server reports a change.
#[derive(Clone, Copy)]
struct Live(RwSignal<u64>);

/// Called once by the layout: opens the feed once someone is signed in
/// (people without an account, on a share link, get no feed).
pub fn provide_live(me: Resource<Result<Option<Me>, ServerFnError>>) {
    let live = Live(RwSignal::new(0));
    provide_context(live);
    #[cfg(feature = "hydrate")]
    Effect::new(move |opened: Option<bool>| {
        if opened == Some(true) {
            return true;
        }
        let signed_in = matches!(me.get(), Some(Ok(Some(_))));
        if signed_in {
            connect(live);
        }
        signed_in
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = me;
}

/// The version a resource's source reads, so it refetches on a change
/// (always 0 while rendering on the server).
pub fn live_version() -> u64 {
    use_context::<Live>().map_or(0, |live| live.0.get())
}

#[cfg(feature = "hydrate")]
fn connect(live: Live) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;

    let Ok(source) = web_sys::EventSource::new("/api/v1/changes") else {
        return;
    };
    // The first version only says where we are; later ones that differ
    // (including the first after a reconnect) mean "refetch".
    let mut seen: Option<String> = None;
    let on_version =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let Some(version) = event.data().as_string() else {
                return;
            };
            if seen.as_ref().is_some_and(|seen| *seen != version) {
                live.0.update(|v| *v += 1);
            }
            seen = Some(version);
        });
    let _ = source.add_event_listener_with_callback("version", on_version.as_ref().unchecked_ref());
    on_version.forget();
    let source = send_wrapper::SendWrapper::new(source);
    on_cleanup(move || source.close());
}
