//! Registered secrets (global admins): names and scopes, never values — a
//! value goes in through the form, sealed, and no screen or API gives it
//! back. Steps list the secrets they need in `pipeline.yaml`; channels
//! name theirs.

use leptos::prelude::*;

use crate::api::list_secrets;
use crate::components::action::removal;
use crate::components::list::{AdminsOnly, EmptyState, PageHeader, loaded, with_csrf};
use crate::dto::SecretEntry;

#[component]
pub fn SecretsPage() -> impl IntoView {
    let secrets = Resource::new(|| (), |_| list_secrets());
    view! {
        <PageHeader
            title="Secrets"
            lead="Values steps and notification channels use by name. A value is encrypted when it is set and never shown again, here or anywhere."
        />
        <AdminsOnly what="Secrets" everywhere=true>
            {with_csrf(move |csrf| loaded(secrets, move |secrets| secret_table(secrets, csrf.clone())))}
            <section class="panel" aria-labelledby="set-secret-heading">
                <h2 id="set-secret-heading">"Set a secret"</h2>
                <p class="muted">
                    "Setting a name that exists replaces its value. Runs started after this use the new value."
                </p>
                {with_csrf(set_form)}
            </section>
        </AdminsOnly>
    }
}

fn secret_table(secrets: Vec<SecretEntry>, csrf: String) -> impl IntoView {
    if secrets.is_empty() {
        return view! {
            <EmptyState title="No secrets yet">
                <p>"Set one below; a step gets it when its pipeline lists it under " <code>"secrets:"</code> "."</p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data cards" data-testid="secrets">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"For"</th>
                    <th scope="col">"Value"</th>
                    <th scope="col">
                        <span class="visually-hidden">"Actions"</span>
                    </th>
                </tr>
            </thead>
            <tbody>
                {secrets
                    .into_iter()
                    .map(|secret| {
                        let scope = secret
                            .app
                            .clone()
                            .map(|app| format!("app {app}"))
                            .unwrap_or_else(|| "every app".into());
                        let (marker, shown) = (secret.name.clone(), secret.name.clone());
                        view! {
                            <tr data-secret=marker>
                                <td data-label="Name" class="mono">{shown}</td>
                                <td data-label="For">{scope}</td>
                                <td data-label="Value" class="muted">"hidden"</td>
                                <td data-label="Actions">
                                    {removal(
                                        "/fn/delete_secret",
                                        vec![("name", secret.name.clone()), ("app", secret.app.unwrap_or_default())],
                                        "Delete",
                                        &secret.name,
                                        ("secret-outcome", "secret-error"),
                                        csrf.clone(),
                                    )}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// Sets a secret (an action form: page_updates.js posts it, no WASM); the
/// form forgets the value once sent.
fn set_form(csrf: String) -> impl IntoView {
    view! {
        <form
            method="post"
            action="/fn/set_secret"
            class="form"
            autocomplete="off"
            data-action=""
            data-reset=""
            data-done="secret-outcome"
            data-error="secret-error"
        >
            <input type="hidden" name="csrf" value=csrf />
            <label>
                <span>"Name (uppercase letters, digits and _)"</span>
                <input name="name" required pattern="[A-Z_][A-Z0-9_]*" placeholder="DB_PASSWORD" autocomplete="off" spellcheck="false" />
            </label>
            <label>
                <span>"Value (at least 4 characters)"</span>
                <input name="value" type="password" required minlength="4" autocomplete="new-password" />
            </label>
            <label>
                <span>"Only for app (optional; default: every app)"</span>
                <input name="app" placeholder="shop" autocomplete="off" />
            </label>
            <button type="submit" class="primary">"Set secret"</button>
        </form>
    }
}
