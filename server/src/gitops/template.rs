//! The small templates of the pipeline repo (URLs, namespaces, image names):
//! minijinja with strict undefined variables, so a typo is an error rather
//! than an empty string.

use crate::error::Rejected;
use std::collections::BTreeMap;

/// The variables every template sees (plus the stack entry's `variables`).
pub fn context(
    app: &str,
    env: &str,
    branch: &str,
    commit: &str,
    variables: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut context = variables.clone();
    context.insert("app".into(), app.into());
    context.insert("env".into(), env.into());
    context.insert("branch".into(), branch.into());
    context.insert(
        "branch_slug".into(),
        crate::gitops::stack::branch_slug(branch),
    );
    context.insert("commit".into(), commit.into());
    context.insert("short_sha".into(), commit.chars().take(7).collect());
    context
}

pub fn render(template: &str, context: &BTreeMap<String, String>) -> Result<String, Rejected> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(template, context)
        .map_err(|error| Rejected(error.to_string()))
}

/// The proxy URL of an environment on the local target, on a host of its
/// own: `http://<env>--<app>.<preview domain>:<public port>/`.
pub fn local_url(public: &url::Url, preview_domain: &str, app: &str, env: &str) -> String {
    let port = public.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{env}--{app}.{preview_domain}{port}/", public.scheme())
}

/// The same environment under a path prefix, for clients that cannot
/// resolve `*.localhost`: `http://<public>/env/<app>/<env>/`.
pub fn local_prefix_url(public: &url::Url, app: &str, env: &str) -> String {
    let base = public.as_str().trim_end_matches('/');
    format!("{base}/env/{app}/{env}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_variables_and_refuses_unknown_ones() {
        let context = context(
            "shop",
            "staging",
            "feature/x",
            "0123456789",
            &BTreeMap::new(),
        );
        assert_eq!(
            render("reg/{{ app }}:{{ short_sha }}", &context),
            Ok("reg/shop:0123456".into())
        );
        assert_eq!(
            render("{{ branch_slug }}.example", &context),
            Ok("feature-x.example".into())
        );
        assert!(render("{{ nope }}", &context).is_err());
    }

    #[test]
    fn local_urls_follow_the_public_url() {
        let public = url::Url::parse("http://localhost:3000/").expect("url");
        assert_eq!(
            local_url(&public, "localhost", "shop", "staging"),
            "http://staging--shop.localhost:3000/"
        );
        assert_eq!(
            local_prefix_url(&public, "shop", "staging"),
            "http://localhost:3000/env/shop/staging/"
        );
        let public = url::Url::parse("https://gantry.example.com").expect("url");
        assert_eq!(
            local_url(
                &public,
                "previews.example-usercontent.com",
                "shop",
                "preview-x"
            ),
            "https://preview-x--shop.previews.example-usercontent.com/"
        );
    }
}
