//! What a deployment would change on its clusters, object by object: shown
//! to admins on a held run and on a change request.

use leptos::prelude::*;

use crate::dto::ObjectDiff;

type Diff = Resource<Result<Option<Vec<ObjectDiff>>, ServerFnError>>;

pub fn diff_section(title: &'static str, diff: Diff) -> impl IntoView {
    view! {
        <section class="diff" id="diff" aria-label="Changes on the clusters">
            <h2>{title}</h2>
            <Suspense fallback=|| view! { <p class="loading">"Asking the clusters…"</p> }>
                {move || Suspend::new(async move {
                    match diff.await {
                        Ok(Some(objects)) if objects.is_empty() => {
                            view! { <p class="muted">"This environment has no cluster targets."</p> }
                                .into_any()
                        }
                        Ok(Some(objects)) => object_list(objects).into_any(),
                        Ok(None) => {
                            view! { <p class="muted">"Nothing deployed there yet to compare with."</p> }
                                .into_any()
                        }
                        Err(error) => {
                            view! { <p class="notice notice-error">{crate::format::plain(&error)}</p> }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

fn object_list(objects: Vec<ObjectDiff>) -> impl IntoView {
    view! {
        <ul class="object-diffs">
            {objects
                .into_iter()
                .map(|object| {
                    let changed = object.change != "unchanged";
                    view! {
                        <li>
                            <span class=format!("badge change-{}", object.change)>
                                {object.change.clone()}
                            </span>
                            " "
                            <span class="mono">{format!("{} · {}", object.target, object.object)}</span>
                            {(changed && !object.diff.is_empty())
                                .then(|| view! { <pre class="log">{object.diff}</pre> })}
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}
