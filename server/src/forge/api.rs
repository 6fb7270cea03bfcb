//! The forge REST calls Gantry makes, per forge: commit statuses, the one
//! comment per change request (created once, then edited in place), and
//! merging an approved request. Building a call is pure (tested per forge);
//! sending it is one function.

use serde_json::{Value, json};

use super::Forge;
use crate::gitops::schema::ForgeConfig;
use crate::outbound::CallError;

/// A commit status's state, in Gantry's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
}

/// One HTTP request to a forge.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiCall {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

fn forge(config: &ForgeConfig) -> Forge {
    Forge::parse(&config.kind).unwrap_or(Forge::GitHub)
}

/// The repository's part of every path.
fn repo_path(config: &ForgeConfig) -> String {
    match forge(config) {
        // GitLab takes the project's id or its URL-encoded path.
        Forge::GitLab => format!(
            "projects/{}",
            url::form_urlencoded::byte_serialize(config.repo.as_bytes()).collect::<String>()
        ),
        Forge::GitHub | Forge::Gitea => format!("repos/{}", config.repo),
    }
}

fn call(
    config: &ForgeConfig,
    token: &str,
    method: &'static str,
    path: &str,
    body: Value,
) -> ApiCall {
    let auth = match forge(config) {
        Forge::GitHub => ("authorization", format!("Bearer {token}")),
        Forge::GitLab => ("private-token", token.to_string()),
        Forge::Gitea => ("authorization", format!("token {token}")),
    };
    let mut headers = vec![auth];
    if forge(config) == Forge::GitHub {
        headers.push(("accept", "application/vnd.github+json".into()));
    }
    ApiCall {
        method,
        url: format!(
            "{}/{}/{path}",
            config.api.trim_end_matches('/'),
            repo_path(config)
        ),
        headers,
        body,
    }
}

/// A commit status: `context` names the stage (`gantry/staging/unit`).
pub fn status(
    config: &ForgeConfig,
    token: &str,
    sha: &str,
    state: StatusState,
    context: &str,
    description: &str,
    target_url: &str,
) -> ApiCall {
    let state = match (forge(config), state) {
        (_, StatusState::Pending) => "pending",
        (_, StatusState::Success) => "success",
        (Forge::GitLab, StatusState::Failure) => "failed",
        (_, StatusState::Failure) => "failure",
    };
    let body = match forge(config) {
        Forge::GitLab => {
            json!({ "state": state, "name": context, "description": description, "target_url": target_url })
        }
        Forge::GitHub | Forge::Gitea => {
            json!({ "state": state, "context": context, "description": description, "target_url": target_url })
        }
    };
    call(config, token, "POST", &format!("statuses/{sha}"), body)
}

/// The first comment on request `number`.
pub fn create_comment(config: &ForgeConfig, token: &str, number: i64, body: &str) -> ApiCall {
    let path = match forge(config) {
        Forge::GitLab => format!("merge_requests/{number}/notes"),
        Forge::GitHub | Forge::Gitea => format!("issues/{number}/comments"),
    };
    call(config, token, "POST", &path, json!({ "body": body }))
}

/// The same comment, edited.
pub fn update_comment(
    config: &ForgeConfig,
    token: &str,
    number: i64,
    comment_id: &str,
    body: &str,
) -> ApiCall {
    let (method, path) = match forge(config) {
        Forge::GitLab => ("PUT", format!("merge_requests/{number}/notes/{comment_id}")),
        Forge::GitHub | Forge::Gitea => ("PATCH", format!("issues/comments/{comment_id}")),
    };
    call(config, token, method, &path, json!({ "body": body }))
}

/// Merges request `number` at `sha` on the forge.
pub fn merge(config: &ForgeConfig, token: &str, number: i64, sha: &str) -> ApiCall {
    match forge(config) {
        Forge::GitHub => call(
            config,
            token,
            "PUT",
            &format!("pulls/{number}/merge"),
            json!({ "sha": sha, "merge_method": "merge" }),
        ),
        Forge::GitLab => call(
            config,
            token,
            "PUT",
            &format!("merge_requests/{number}/merge"),
            json!({ "sha": sha }),
        ),
        Forge::Gitea => call(
            config,
            token,
            "POST",
            &format!("pulls/{number}/merge"),
            json!({ "Do": "merge", "head_commit_id": sha }),
        ),
    }
}

/// Sends a call; the answer's JSON (or `null`). Errors name the host only
/// and never the token.
pub async fn send(client: &reqwest::Client, call: &ApiCall) -> Result<Value, CallError> {
    let method = reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|e| {
        CallError::Unreachable {
            host: crate::outbound::host_of(&call.url),
            reason: format!("method {}: {e}", call.method),
        }
    })?;
    let mut request = client
        .request(method, &call.url)
        .header("user-agent", "gantry")
        .json(&call.body);
    for (name, value) in &call.headers {
        request = request.header(*name, value);
    }
    let (status, text) = crate::outbound::send(request, &call.url).await?;
    if !status.is_success() {
        let host = crate::outbound::host_of(&call.url);
        let path = url::Url::parse(&call.url)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        return Err(CallError::Refused {
            call: format!("{} {path} on {host}", call.method),
            status,
            excerpt: crate::outbound::excerpt(&text),
        });
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The comment id in a create-comment answer (all three forges say `id`).
pub fn comment_id(answer: &Value) -> Option<String> {
    match &answer["id"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: &str, api: &str, repo: &str) -> ForgeConfig {
        ForgeConfig {
            kind: kind.into(),
            api: api.into(),
            repo: repo.into(),
            token_secret: "T".into(),
            comment_diff: false,
        }
    }

    #[test]
    fn each_forge_gets_its_own_paths_auth_and_words() {
        let github = config("github", "https://api.github.com", "acme/shop");
        let gitlab = config("gitlab", "https://gitlab.example.com/api/v4", "team/shop");
        let gitea = config("gitea", "https://gitea.example.com/api/v1", "team/shop");

        let s = status(
            &github,
            "tok",
            "abc",
            StatusState::Failure,
            "gantry/staging",
            "unit failed",
            "http://g/runs/1",
        );
        assert_eq!(
            (s.method, s.url.as_str()),
            (
                "POST",
                "https://api.github.com/repos/acme/shop/statuses/abc"
            )
        );
        assert_eq!(s.headers[0], ("authorization", "Bearer tok".to_string()));
        assert_eq!(s.body["state"], "failure");
        assert_eq!(s.body["context"], "gantry/staging");

        let s = status(
            &gitlab,
            "tok",
            "abc",
            StatusState::Failure,
            "gantry/staging",
            "",
            "",
        );
        assert_eq!(
            s.url,
            "https://gitlab.example.com/api/v4/projects/team%2Fshop/statuses/abc"
        );
        assert_eq!(s.headers[0], ("private-token", "tok".to_string()));
        assert_eq!(s.body["state"], "failed");
        assert_eq!(s.body["name"], "gantry/staging");

        let s = status(
            &gitea,
            "tok",
            "abc",
            StatusState::Pending,
            "gantry/staging",
            "",
            "",
        );
        assert_eq!(
            s.url,
            "https://gitea.example.com/api/v1/repos/team/shop/statuses/abc"
        );
        assert_eq!(s.headers[0], ("authorization", "token tok".to_string()));

        let c = create_comment(&gitlab, "tok", 3, "hi");
        assert_eq!(
            c.url,
            "https://gitlab.example.com/api/v4/projects/team%2Fshop/merge_requests/3/notes"
        );
        let u = update_comment(&gitlab, "tok", 3, "77", "hi");
        assert_eq!(
            (u.method, u.url.as_str()),
            (
                "PUT",
                "https://gitlab.example.com/api/v4/projects/team%2Fshop/merge_requests/3/notes/77"
            )
        );
        let u = update_comment(&github, "tok", 3, "77", "hi");
        assert_eq!(
            (u.method, u.url.as_str()),
            (
                "PATCH",
                "https://api.github.com/repos/acme/shop/issues/comments/77"
            )
        );
        let u = update_comment(&gitea, "tok", 3, "77", "hi");
        assert_eq!(
            (u.method, u.url.as_str()),
            (
                "PATCH",
                "https://gitea.example.com/api/v1/repos/team/shop/issues/comments/77"
            )
        );

        let m = merge(&github, "tok", 7, "abc");
        assert_eq!(
            (m.method, m.url.as_str()),
            (
                "PUT",
                "https://api.github.com/repos/acme/shop/pulls/7/merge"
            )
        );
        let m = merge(&gitlab, "tok", 7, "abc");
        assert_eq!(
            (m.method, m.url.as_str()),
            (
                "PUT",
                "https://gitlab.example.com/api/v4/projects/team%2Fshop/merge_requests/7/merge"
            )
        );
        let m = merge(&gitea, "tok", 7, "abc");
        assert_eq!(
            (m.method, m.url.as_str()),
            (
                "POST",
                "https://gitea.example.com/api/v1/repos/team/shop/pulls/7/merge"
            )
        );
        assert_eq!(m.body["Do"], "merge");
    }
}
