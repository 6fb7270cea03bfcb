//! The environment stack: which environment a branch deploys to, and the
//! name a preview gets. Pure functions over the app's configuration.

use sha2::{Digest, Sha256};

use crate::gitops::schema::{AppConfig, StackEntry};

/// The stack entry a branch belongs to: an exact `branch` entry first, else
/// the first `branches` glob that matches.
pub fn entry_for<'c>(config: &'c AppConfig, branch: &str) -> Option<&'c StackEntry> {
    config
        .stack
        .iter()
        .find(|entry| !entry.branches.is_preview() && entry.branches.matches(branch))
        .or_else(|| {
            config
                .stack
                .iter()
                .find(|entry| entry.branches.is_preview() && entry.branches.matches(branch))
        })
}

/// True when environments of `stack_entry` are made per branch by a glob
/// entry (previews).
pub fn is_preview(config: &AppConfig, stack_entry: &str) -> bool {
    config
        .stack
        .iter()
        .any(|entry| entry.env == stack_entry && entry.branches.is_preview())
}

/// The branch whose head decides when a preview is merged: the branch of
/// the `staging` entry (the seed's `latest`).
pub fn staging_branch(config: &AppConfig) -> Option<&str> {
    exact_branch_of(config, "staging")
}

/// The branch that deploys to production (the seed's `master`): where a
/// change request from the staging branch is promoted.
pub fn production_branch(config: &AppConfig) -> Option<&str> {
    exact_branch_of(config, "production")
}

/// The branch of the non-preview entry `env`.
pub fn exact_branch_of<'c>(config: &'c AppConfig, env: &str) -> Option<&'c str> {
    config
        .stack
        .iter()
        .find(|entry| entry.env == env)
        .and_then(|entry| match &entry.branches {
            crate::gitops::schema::BranchMatch::Exact(branch) => Some(branch.as_str()),
            crate::gitops::schema::BranchMatch::Glob(_) => None,
        })
}

/// A branch name made safe for hostnames, namespaces and paths:
/// `feature/Hello_World` → `feature-hello-world`.
pub fn branch_slug(branch: &str) -> String {
    let mut slug = String::with_capacity(branch.len());
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

/// The environment name for a preview of `branch` under `entry_env`,
/// at most 30 characters and always a valid name. Long or lossy slugs get a
/// short hash of the branch so two branches never share a name.
pub fn preview_name(entry_env: &str, branch: &str) -> String {
    let slug = branch_slug(branch);
    let hash: String = Sha256::digest(branch.as_bytes())
        .iter()
        .take(2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let plain = format!("{entry_env}-{slug}");
    let lossless = slug == branch;
    if lossless && plain.len() <= 30 && !slug.is_empty() {
        return plain;
    }
    let room = 30usize.saturating_sub(entry_env.len() + 2 + hash.len());
    let mut short: String = slug.chars().take(room).collect();
    while short.ends_with('-') {
        short.pop();
    }
    if short.is_empty() {
        format!("{entry_env}-{hash}")
    } else {
        format!("{entry_env}-{short}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::load::{load_app, valid_name};

    fn config() -> AppConfig {
        load_app(
            "shop",
            Some("apiVersion: gantry.dev/v1\nsource: /srv/shop.git\n"),
            Some("apiVersion: gantry.dev/v1\nsteps:\n  - { name: build, run: \"true\" }\n"),
            &[],
        )
        .expect("valid")
    }

    #[test]
    fn exact_branches_win_over_the_preview_glob() {
        let config = config();
        assert_eq!(
            entry_for(&config, "master").map(|e| e.env.as_str()),
            Some("production")
        );
        assert_eq!(
            entry_for(&config, "latest").map(|e| e.env.as_str()),
            Some("staging")
        );
        assert_eq!(
            entry_for(&config, "feature/hello").map(|e| e.env.as_str()),
            Some("preview")
        );
        assert_eq!(staging_branch(&config), Some("latest"));
    }

    #[test]
    fn preview_names_are_valid_and_distinct() {
        assert_eq!(preview_name("preview", "hello"), "preview-hello");
        let a = preview_name("preview", "feature/hello");
        let b = preview_name("preview", "feature-hello");
        assert_eq!(b, "preview-feature-hello");
        assert_ne!(a, b, "lossy slugs get a hash");
        assert!(a.starts_with("preview-feature-hello-"), "{a}");
        for branch in [
            "feature/hello",
            "a/very/long/branch/name/that/goes/on/and/on",
            "UPPER_case",
            "$(rm -rf ~)",
            "../../etc",
            "日本語",
            "--x--",
        ] {
            let name = preview_name("preview", branch);
            assert!(valid_name(&name), "{branch:?} → {name:?}");
        }
    }

    #[test]
    fn slugs_keep_only_safe_characters() {
        assert_eq!(branch_slug("feature/Hello_World"), "feature-hello-world");
        assert_eq!(branch_slug("$(rm -rf ~)"), "rm-rf");
        assert_eq!(branch_slug("../../etc"), "etc");
    }
}
