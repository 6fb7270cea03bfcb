//! A change request's share links, for the developers who make them: each
//! link's address with a copy button and a QR code (for a tester's phone),
//! when it expires, and Extend and Revoke while it is live.

use leptos::prelude::*;

use crate::api::{ExtendShareLink, RevokeShareLink};
use crate::components::list::Time;
use crate::components::outcome::{Outcome, report};
use crate::dto::ShareLink;
use crate::format::timestamp;

/// The list of links (server-rendered; the buttons are islands).
pub fn share_links_panel(links: Vec<ShareLink>, csrf: String) -> impl IntoView {
    if links.is_empty() {
        return ().into_any();
    }
    let now = crate::format::now_millis();
    view! {
        <div class="share-links" data-testid="share-links">
            <h3>"Links given to testers"</h3>
            <ul>
                {links
                    .into_iter()
                    .map(|link| {
                        let live = link.revoked_at.is_none() && link.expires_at > now;
                        let state = match link.revoked_at {
                            Some(at) => view! { "revoked " <Time at /> }.into_any(),
                            None if !live => {
                                view! { {format!("expired {}", timestamp(link.expires_at))} }.into_any()
                            }
                            None => {
                                view! { {format!("expires {}", timestamp(link.expires_at))} }.into_any()
                            }
                        };
                        let id = link.id;
                        view! {
                            <li class="share-link-item" class:share-link-dead=!live data-link=id>
                                <div class="share-link-head">
                                    <strong>{format!("Link {id}")}</strong>
                                    <span class="muted">
                                        {format!(" by {} · ", link.created_by)}
                                        {state}
                                    </span>
                                </div>
                                {live
                                    .then(|| {
                                        view! {
                                            <CopyLink url=link.url.clone() />
                                            <details class="share-qr">
                                                <summary>"QR code"</summary>
                                                {qr_code(&link.qr, &format!("QR code of link {id}"))}
                                            </details>
                                            <LinkActions id csrf=csrf.clone() />
                                        }
                                    })}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </div>
    }
    .into_any()
}

/// A QR code drawn as SVG squares, with the quiet zone around it the
/// scanners need.
pub fn qr_code(rows: &[String], label: &str) -> impl IntoView + use<> {
    let size = rows.len() + 8;
    let squares = rows
        .iter()
        .enumerate()
        .flat_map(|(y, row)| {
            row.chars()
                .enumerate()
                .filter(|(_, c)| *c == '1')
                .map(move |(x, _)| (x + 4, y + 4))
        })
        .map(|(x, y)| view! { <rect x=x.to_string() y=y.to_string() width="1" height="1"></rect> })
        .collect_view();
    view! {
        <svg
            class="qr"
            viewBox=format!("0 0 {size} {size}")
            role="img"
            aria-label=label.to_string()
            shape-rendering="crispEdges"
        >
            <rect class="qr-background" x="0" y="0" width=size.to_string() height=size.to_string()></rect>
            {squares}
        </svg>
    }
}

/// A read-only address and a Copy button (an island). Where the browser
/// may not write to the clipboard (a plain-HTTP address other than
/// localhost), the address is selected for the person to copy.
#[island]
pub fn CopyLink(url: String) -> impl IntoView {
    let said = RwSignal::new(String::new());
    let input = NodeRef::<leptos::html::Input>::new();
    let text = url.clone();
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            if let Some(input) = input.get() {
                input.select();
            }
            match web_sys::window() {
                Some(window) if window.is_secure_context() => {
                    let _ = window.navigator().clipboard().write_text(&text);
                    said.set("Copied.".into());
                }
                _ => said.set("Selected: press Ctrl+C (⌘C on a Mac) to copy.".into()),
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &text;
    };
    view! {
        <div class="copy-link">
            <input type="text" readonly value=url node_ref=input aria-label="Share link address" data-testid="share-link-url" />
            <button type="button" on:click=copy>"Copy"</button>
            <span class="muted" role="status">{move || said.get()}</span>
        </div>
    }
}

/// Extend and Revoke for one live link (an island).
#[island]
fn LinkActions(id: i64, csrf: String) -> impl IntoView {
    let extend = ServerAction::<ExtendShareLink>::new();
    let revoke = ServerAction::<RevokeShareLink>::new();
    report(extend, |result| match result {
        Ok(text) => Outcome::done("share-link-outcome", text),
        Err(error) => Outcome::failed("share-link-error", error),
    });
    report(revoke, |result| match result {
        Ok(text) => Outcome::done("share-link-outcome", text),
        Err(error) => Outcome::failed("share-link-error", error),
    });
    let revoke_csrf = csrf.clone();
    view! {
        <div class="share-link-actions">
            <ActionForm action=extend attr:class="inline">
                <input type="hidden" name="csrf" value=csrf />
                <input type="hidden" name="id" value=id />
                <button type="submit">"Extend"</button>
            </ActionForm>
            <ActionForm action=revoke attr:class="inline">
                <input type="hidden" name="csrf" value=revoke_csrf />
                <input type="hidden" name="id" value=id />
                <button type="submit" class="danger">"Revoke"</button>
            </ActionForm>
        </div>
    }
}
