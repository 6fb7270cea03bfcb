//! API tokens: everyone signed in makes tokens for scripts and CI, acting
//! as themselves with at most their own power; the secret is shown once,
//! when it is made. People see and revoke their own; a global admin sees
//! and revokes anyone's.

use leptos::prelude::*;

use crate::api::list_api_tokens;
use crate::components::action::removal;
use crate::components::layout::{signed_in, use_me};
use crate::components::list::{EmptyState, PageHeader, Time, loaded};
use crate::dto::{ApiToken, Me, Role};

#[component]
pub fn TokensPage() -> impl IntoView {
    let tokens = Resource::new(|| (), |_| list_api_tokens());
    let me = use_me();
    view! {
        <PageHeader
            title="API tokens"
            lead="Tokens let scripts and CI call the API as you: a token never has more power than you, and can be limited to one app and a lifetime."
        />
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let Some(me) = signed_in(me).await else {
                    return view! {
                        <p class="notice" role="status">"Sign in to make and manage API tokens."</p>
                    }
                    .into_any();
                };
                let roles = roles_of(&me);
                let csrf = me.csrf.clone();
                let table_csrf = me.csrf.clone();
                view! {
                    {loaded(tokens, move |tokens| token_table(tokens, table_csrf.clone()))}
                    <section class="panel" aria-labelledby="new-token-heading">
                        <h2 id="new-token-heading">"Make a token"</h2>
                        <p class="muted">
                            "Send it as " <code>"Authorization: Bearer <token>"</code> ". It is shown once, right after it is made: keep it in your CI's secret store."
                        </p>
                        {create_form(roles, csrf)}
                    </section>
                }
                .into_any()
            })}
        </Suspense>
    }
}

/// The roles a token of `me` may have: theirs and those below.
fn roles_of(me: &Me) -> Vec<String> {
    [Role::Viewer, Role::Tester, Role::Developer, Role::Admin]
        .into_iter()
        .filter(|role| me.can_anywhere(*role))
        .map(|role| role.as_str().to_string())
        .collect()
}

fn token_table(tokens: Vec<ApiToken>, csrf: String) -> impl IntoView {
    if tokens.is_empty() {
        return view! {
            <EmptyState title="No tokens yet">
                <p>"Make one below, or with " <code>"gantry token create"</code> "."</p>
            </EmptyState>
        }
        .into_any();
    }
    let now = crate::format::now_millis();
    view! {
        <table class="data cards" data-testid="api-tokens">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Owner"</th>
                    <th scope="col">"Role"</th>
                    <th scope="col">"Expires"</th>
                    <th scope="col">"Last used"</th>
                    <th scope="col">
                        <span class="visually-hidden">"Actions"</span>
                    </th>
                </tr>
            </thead>
            <tbody>
                {tokens
                    .into_iter()
                    .map(|token| {
                        let state = if token.revoked_at.is_some() {
                            "revoked"
                        } else if token.expires_at <= now {
                            "expired"
                        } else {
                            "active"
                        };
                        let role = match &token.app {
                            Some(app) => format!("{} on {app}", token.role),
                            None => token.role.clone(),
                        };
                        let (marker, shown, label) =
                            (token.name.clone(), token.name.clone(), token.name.clone());
                        view! {
                            <tr data-token=marker data-state=state>
                                <td data-label="Name">{shown}</td>
                                <td data-label="State" class="card-state">
                                    <span class=format!("badge state-{state}")>{state}</span>
                                </td>
                                <td data-label="Owner">{token.user.clone()}</td>
                                <td data-label="Role">{role}</td>
                                <td data-label="Expires"><Time at=token.expires_at /></td>
                                <td data-label="Last used">
                                    {match token.last_used_at {
                                        Some(at) => view! { <Time at /> }.into_any(),
                                        None => view! { <span class="muted">"never"</span> }.into_any(),
                                    }}
                                </td>
                                <td data-label="Actions">
                                    {(state == "active").then(|| view! {
                                        {removal(
                                            "/fn/revoke_api_token",
                                            vec![("id", token.id.to_string())],
                                            "Revoke",
                                            &label,
                                            ("token-outcome", "token-error"),
                                            csrf.clone(),
                                        )}
                                    })}
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

/// Makes a token (an action form) and shows its secret, this once, in the
/// outcome region (which a refresh keeps).
fn create_form(roles: Vec<String>, csrf: String) -> impl IntoView {
    let top = roles.last().cloned().unwrap_or_default();
    view! {
        <form
            method="post"
            action="/fn/create_api_token"
            class="form"
            autocomplete="off"
            data-action=""
            data-reset=""
            data-done="token-secret"
            data-error="token-error"
        >
            <input type="hidden" name="csrf" value=csrf />
            <label>
                <span>"What it is for"</span>
                <input name="name" required maxlength="60" placeholder="ci" autocomplete="off" />
            </label>
            <label>
                <span>"Role (at most yours)"</span>
                <select name="role">
                    {roles
                        .into_iter()
                        .map(|role| {
                            let selected = role == top;
                            view! { <option value=role.clone() selected=selected>{role.clone()}</option> }
                        })
                        .collect_view()}
                </select>
            </label>
            <label>
                <span>"Only for app (optional)"</span>
                <input name="app" placeholder="shop" autocomplete="off" />
            </label>
            <label>
                <span>"Lifetime (e.g. 30d or 12h; default 90d, at most 400d)"</span>
                <input name="expires" placeholder="90d" autocomplete="off" />
            </label>
            <button type="submit" class="primary">"Make token"</button>
        </form>
    }
}
