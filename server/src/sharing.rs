//! Preview sharing for testers. A developer's share button makes a signed,
//! expiring link to a tester page: the change's commits, its tests, its
//! preview link and what testers said. The link opens without an account
//! where the admin allows it (`auth.share_anonymous`), else for anyone
//! signed in. Feedback left there is recorded on the change request and,
//! for forge requests, shown in its one comment.
//!
//! A token is `<request>.<link>.<expiry>.<signature>`: the signature
//! (HMAC-SHA256 under a key derived from the secret key) is checked before
//! the database is asked, the link row makes it revocable.

use app::dto::{NewFeedback, Role, RunSummary, ShareLink, SharedPreview, TesterFeedback};
use app::port::Caller;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::db::{self, sharing::FeedbackRow};

/// Brings a change request's forge comment up to date (the forge module
/// does; sharing only asks, so it need not know the forge).
#[async_trait::async_trait]
pub trait CommentRefresh: Send + Sync {
    /// Refreshes the comment from run `run_id`; failures are logged there.
    async fn refresh(&self, run_id: i64);
}

/// Share links and tester feedback, with what they need: the database, the
/// vault (links are signed), the clock (they expire), git (the commits a
/// request brings), links to the dashboard, the settings, and the forge
/// comment to refresh when feedback arrives.
#[derive(Clone)]
pub struct Sharing<'a> {
    pub db: &'a crate::db::Db,
    pub vault: &'a crate::secrets::Vault,
    pub clock: &'a crate::clock::Clock,
    pub git: &'a crate::git::GitStore,
    pub notifier: crate::notify::Notifier<'a>,
    /// How long a link lives.
    pub ttl: std::time::Duration,
    /// Whether people without an account may use links.
    pub anonymous: bool,
    pub comments: std::sync::Arc<dyn CommentRefresh + 'a>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("change request {0} does not exist")]
    NotFound(i64),
    /// Malformed, tampered with, or signed with another key.
    #[error("this share link is not valid; ask whoever sent it for a new one")]
    Invalid,
    #[error("this share link expired at {0}; ask for a new one")]
    Expired(String),
    #[error("this share link was revoked; ask for a new one")]
    Revoked,
    /// Revoking a link twice: the link is gone, the request is what fails.
    #[error("share link {0} is already revoked")]
    AlreadyRevoked(i64),
    /// Extending a link that has expired: make a new one instead.
    #[error("share link {0} has expired; make a new one")]
    NotLive(i64),
    #[error("{0}")]
    Forbidden(String),
    /// Feedback the tester can fix.
    #[error("{0}")]
    Refused(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
    #[error("the app's configuration is unreadable: {0}")]
    Config(#[from] serde_json::Error),
}

impl crate::error::Classified for ShareError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            // A bad link says no more than a missing one.
            ShareError::NotFound(_) | ShareError::Invalid => Kind::NotFound,
            ShareError::Expired(_) | ShareError::Revoked => Kind::Gone,
            ShareError::AlreadyRevoked(_) | ShareError::NotLive(_) => Kind::Conflict,
            ShareError::Forbidden(_) => Kind::Forbidden,
            ShareError::Refused(_) => Kind::Invalid,
            ShareError::Config(_) => Kind::Internal,
            ShareError::Db(error) => error.kind(),
        }
    }
}

type Result<T> = std::result::Result<T, ShareError>;

/// The verdicts a tester can give.
pub const VERDICTS: [&str; 3] = ["works", "broken", "note"];
const COMMENT_LIMIT: usize = 4_000;
const NAME_LIMIT: usize = 80;
const COMMITS_SHOWN: usize = 50;

fn signed_part(request: i64, link: i64, expires: i64) -> String {
    format!("share:v1:{request}:{link}:{expires}")
}

fn token(sharing: &Sharing<'_>, request: i64, link: i64, expires: i64) -> String {
    let signature = sharing
        .vault
        .sign(signed_part(request, link, expires).as_bytes());
    format!(
        "{request}.{link}.{expires}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// (request, link, expiry) of a well-signed token.
fn verify(sharing: &Sharing<'_>, token: &str) -> Result<(i64, i64, i64)> {
    let mut parts = token.split('.');
    let mut number = || parts.next().and_then(|p| p.parse::<i64>().ok());
    let (Some(request), Some(link), Some(expires)) = (number(), number(), number()) else {
        return Err(ShareError::Invalid);
    };
    let signature = parts
        .next()
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .ok_or(ShareError::Invalid)?;
    if parts.next().is_some()
        || !sharing
            .vault
            .verify(signed_part(request, link, expires).as_bytes(), &signature)
    {
        return Err(ShareError::Invalid);
    }
    Ok((request, link, expires))
}

fn when(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Developers (and up) of the request's app make a link for it.
pub async fn create(sharing: &Sharing<'_>, caller: &Caller, request: i64) -> Result<ShareLink> {
    let pool = sharing.db.pool();
    let cr = db::change_requests::get(pool, request)
        .await?
        .ok_or(ShareError::NotFound(request))?;
    caller
        .require(Role::Developer, Some(&cr.app))
        .map_err(|e| ShareError::Forbidden(e.to_string()))?;
    let now = sharing.clock.now_millis();
    let expires = now + i64::try_from(sharing.ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let mut tx = sharing.db.begin().await?;
    let id = db::sharing::insert_link(&mut *tx, request, &caller.me.name, now, expires).await?;
    db::audit::record(
        &mut *tx,
        &db::audit::NewEntry {
            actor: &caller.me.name,
            action: "share_link.create",
            target: &format!("{} change request {request} (link {id})", cr.app),
            reason: None,
            source_ip: caller.source_ip.as_deref(),
            detail: &serde_json::json!({ "expires_at": expires }).to_string(),
        },
        now,
    )
    .await?;
    crate::db::commit(tx).await?;
    Ok(link_view(
        sharing,
        &db::sharing::ShareLinkRow {
            id,
            change_request_id: request,
            created_by: caller.me.name.clone(),
            created_at: now,
            expires_at: expires,
            revoked_at: None,
        },
    ))
}

/// A link as its creator sees it: its address (the token is derived from
/// the link's id and expiry, so it can be shown again), and its QR code.
fn link_view(sharing: &Sharing<'_>, row: &db::sharing::ShareLinkRow) -> ShareLink {
    let url = crate::notify::link(
        &sharing.notifier,
        &format!(
            "share/{}",
            token(sharing, row.change_request_id, row.id, row.expires_at)
        ),
    );
    ShareLink {
        id: row.id,
        change_request_id: row.change_request_id,
        qr: qr_rows(&url),
        url,
        created_by: row.created_by.clone(),
        expires_at: row.expires_at,
        anonymous: sharing.anonymous,
        revoked_at: row.revoked_at,
    }
}

/// `text` as a QR code: a row of `1` (dark) and `0` per line, with no
/// quiet zone (the page draws it). Empty if it does not fit a QR code.
fn qr_rows(text: &str) -> Vec<String> {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else {
        return Vec::new();
    };
    let width = code.width();
    code.to_colors()
        .chunks(width)
        .map(|row| {
            row.iter()
                .map(|color| {
                    if *color == qrcode::Color::Dark {
                        '1'
                    } else {
                        '0'
                    }
                })
                .collect()
        })
        .collect()
}

/// The links of a request, newest first, for developers of its app (and
/// admins); anyone else gets none (they cannot make or end links either).
pub async fn links(sharing: &Sharing<'_>, caller: &Caller, request: i64) -> Result<Vec<ShareLink>> {
    let pool = sharing.db.pool();
    let Some(cr) = db::change_requests::get(pool, request).await? else {
        return Ok(Vec::new());
    };
    if !caller.me.can(Role::Developer, Some(&cr.app)) {
        return Ok(Vec::new());
    }
    Ok(db::sharing::links_of(pool, request)
        .await?
        .iter()
        .map(|row| link_view(sharing, row))
        .collect())
}

/// Developers of the app give a live link another full lifetime from now;
/// its address stays the same (the stored expiry is what counts).
pub async fn extend(sharing: &Sharing<'_>, caller: &Caller, link: i64) -> Result<ShareLink> {
    let pool = sharing.db.pool();
    let (row, cr) = link_of_developer(sharing, caller, link).await?;
    if row.revoked_at.is_some() {
        return Err(ShareError::AlreadyRevoked(link));
    }
    let now = sharing.clock.now_millis();
    // An expired link stays expired: copies of it may be anywhere by now.
    if row.expires_at <= now {
        return Err(ShareError::NotLive(link));
    }
    let expires = now + i64::try_from(sharing.ttl.as_millis()).unwrap_or(i64::MAX / 2);
    if !db::sharing::extend(pool, link, expires).await? {
        return Err(ShareError::AlreadyRevoked(link));
    }
    crate::audit::record(
        sharing.db,
        caller,
        "share_link.extend",
        &format!("{} change request {} (link {link})", cr.app, cr.id),
        None,
    )
    .await?;
    Ok(link_view(
        sharing,
        &db::sharing::ShareLinkRow {
            expires_at: expires,
            ..row
        },
    ))
}

/// A link and its request, for a developer of the request's app. Those
/// who could act on some link hear "no such link" both for a link that
/// does not exist and for another app's: a developer of one app cannot
/// probe which link ids exist elsewhere. Others are refused.
async fn link_of_developer(
    sharing: &Sharing<'_>,
    caller: &Caller,
    link: i64,
) -> Result<(db::sharing::ShareLinkRow, db::change_requests::CrRow)> {
    let pool = sharing.db.pool();
    let unknown = || {
        if caller.me.can_anywhere(Role::Developer) {
            ShareError::Refused(format!("share link {link} does not exist"))
        } else {
            ShareError::Forbidden(format!(
                "changing a share link needs the developer role; {} does not have it",
                caller.me.name
            ))
        }
    };
    let Some(row) = db::sharing::link(pool, link).await? else {
        return Err(unknown());
    };
    let cr = db::change_requests::get(pool, row.change_request_id)
        .await?
        .ok_or_else(unknown)?;
    if caller.require(Role::Developer, Some(&cr.app)).is_err() {
        return Err(unknown());
    }
    Ok((row, cr))
}

/// Developers of the app (or an admin) end a link before it expires.
pub async fn revoke(sharing: &Sharing<'_>, caller: &Caller, link: i64) -> Result<()> {
    let pool = sharing.db.pool();
    let (_, cr) = link_of_developer(sharing, caller, link).await?;
    if !db::sharing::revoke(pool, link, sharing.clock.now_millis()).await? {
        return Err(ShareError::AlreadyRevoked(link));
    }
    crate::audit::record(
        sharing.db,
        caller,
        "share_link.revoke",
        &format!("{} change request {} (link {link})", cr.app, cr.id),
        None,
    )
    .await
    .map_err(ShareError::from)
}

/// The link's request, if the token is good, live, and the visitor may
/// use it.
async fn admit(
    sharing: &Sharing<'_>,
    token: &str,
    visitor: Option<&Caller>,
) -> Result<(i64, i64, i64)> {
    let (request, link, expires) = verify(sharing, token)?;
    if visitor.is_none() && !sharing.anonymous {
        return Err(ShareError::Forbidden(
            "sign in to open this link (this Gantry does not allow share links without an account)"
                .into(),
        ));
    }
    let row = db::sharing::link(sharing.db.pool(), link)
        .await?
        .filter(|row| row.change_request_id == request)
        .ok_or(ShareError::Invalid)?;
    if row.revoked_at.is_some() {
        return Err(ShareError::Revoked);
    }
    // The stored expiry counts: extending a link keeps its address. The
    // signed one is never later than it (a link is only ever extended).
    let expires = row.expires_at.max(expires);
    if expires <= sharing.clock.now_millis() {
        return Err(ShareError::Expired(when(expires)));
    }
    Ok((request, link, expires))
}

pub fn feedback_view(row: FeedbackRow) -> TesterFeedback {
    TesterFeedback {
        id: row.id,
        author: row.author,
        via_share_link: row.share_link_id.is_some(),
        verdict: row.verdict,
        comment: row.comment,
        commit_sha: row.commit_sha,
        created_at: row.created_at,
    }
}

/// A change request's feedback, oldest first.
pub async fn feedback_of(sharing: &Sharing<'_>, request: i64) -> Result<Vec<TesterFeedback>> {
    Ok(db::sharing::feedback_of(sharing.db.pool(), request)
        .await?
        .into_iter()
        .map(feedback_view)
        .collect())
}

/// The tester page behind `token`.
pub async fn open(
    sharing: &Sharing<'_>,
    token: &str,
    visitor: Option<&Caller>,
) -> Result<SharedPreview> {
    let (request, _, expires) = admit(sharing, token, visitor).await?;
    let pool = sharing.db.pool();
    let cr = db::change_requests::get(pool, request)
        .await?
        .ok_or(ShareError::NotFound(request))?;
    let app_row = db::apps::get(pool, cr.app_id)
        .await?
        .ok_or(ShareError::NotFound(request))?;
    let config: crate::gitops::schema::AppConfig = crate::configs::stored(&app_row)?;
    let preview = db::environments::find_for_branch(pool, cr.app_id, &cr.source_branch).await?;
    let head = cr.head_sha.clone().unwrap_or_default();
    let run = db::runs::latest_of_commit(pool, cr.app_id, &cr.source_branch, &head).await?;
    let (run, reports) = match run {
        Some(run) => (
            // A tester page shows the run's state and tests, never why it
            // failed nor who started it (testers and up read those).
            db::runs::detail(pool, run.id)
                .await?
                .map(|(summary, _)| RunSummary {
                    reason: None,
                    actor: None,
                    ..summary
                }),
            db::steps::reports_for_run(pool, run.id).await?,
        ),
        None => (None, Vec::new()),
    };
    // What the request brings: its head's commits its target lacks. A
    // mirror that cannot say (not fetched yet) shows none rather than fail.
    let target = sharing
        .git
        .heads(&app_row.source_url)
        .await
        .ok()
        .and_then(|heads| heads.get(&cr.target_branch).cloned());
    let commits = match (&cr.head_sha, target) {
        (Some(head), Some(target)) => sharing
            .git
            .log_range(&app_row.source_url, Some(&target), head, COMMITS_SHOWN)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|commit| {
                let mut entry = crate::delivery::ledger::changelog_entry(&config, commit);
                entry.author_email.clear();
                entry
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(SharedPreview {
        change_request_id: cr.id,
        app: cr.app.clone(),
        state: cr.state,
        title: cr.title,
        description: cr.description,
        source_branch: cr.source_branch,
        target_branch: cr.target_branch,
        head_sha: cr.head_sha,
        commits,
        preview_url: preview.as_ref().and_then(|env| env.url.clone()),
        preview_state: preview.as_ref().map(|env| env.state),
        run,
        reports,
        feedback: feedback_of(sharing, request).await?,
        expires_at: expires,
    })
}

/// Records a tester's feedback through `token`; for a forge request, its
/// comment shows it at once.
pub async fn leave_feedback(
    sharing: &Sharing<'_>,
    token: &str,
    visitor: Option<&Caller>,
    feedback: NewFeedback,
) -> Result<TesterFeedback> {
    let (request, link, _) = admit(sharing, token, visitor).await?;
    record(sharing, request, Some(link), visitor, feedback).await
}

/// Signed-in testers (and up) leave feedback on the request's page.
pub async fn leave_feedback_signed_in(
    sharing: &Sharing<'_>,
    caller: &Caller,
    request: i64,
    feedback: NewFeedback,
) -> Result<TesterFeedback> {
    let cr = db::change_requests::get(sharing.db.pool(), request)
        .await?
        .ok_or(ShareError::NotFound(request))?;
    caller
        .require(Role::Tester, Some(&cr.app))
        .map_err(|e| ShareError::Forbidden(e.to_string()))?;
    record(sharing, request, None, Some(caller), feedback).await
}

/// Checks the feedback; (author, verdict, comment) to store.
fn validate(
    visitor: Option<&Caller>,
    feedback: &NewFeedback,
) -> Result<(String, &'static str, String)> {
    let verdict = VERDICTS
        .into_iter()
        .find(|v| *v == feedback.verdict.trim())
        .ok_or_else(|| {
            ShareError::Refused(format!(
                "verdict {:?} is not one of {}",
                feedback.verdict,
                VERDICTS.join(", ")
            ))
        })?;
    let comment = feedback.comment.trim().to_string();
    if comment.is_empty() && verdict != "works" {
        return Err(ShareError::Refused(
            "comment: say what you saw (only \"works\" may go without one)".into(),
        ));
    }
    if comment.chars().count() > COMMENT_LIMIT {
        return Err(ShareError::Refused(format!(
            "comment is longer than {COMMENT_LIMIT} characters"
        )));
    }
    let author = match visitor {
        Some(caller) => caller.me.name.clone(),
        None => {
            let name = feedback.name.as_deref().unwrap_or("").trim();
            if name.is_empty() || name.chars().count() > NAME_LIMIT {
                return Err(ShareError::Refused(format!(
                    "name: say who you are (1 to {NAME_LIMIT} characters)"
                )));
            }
            name.chars().filter(|c| !c.is_control()).collect()
        }
    };
    Ok((author, verdict, comment))
}

async fn record(
    sharing: &Sharing<'_>,
    request: i64,
    link: Option<i64>,
    visitor: Option<&Caller>,
    feedback: NewFeedback,
) -> Result<TesterFeedback> {
    let (author, verdict, comment) = validate(visitor, &feedback)?;
    let pool = sharing.db.pool();
    let cr = db::change_requests::get(pool, request)
        .await?
        .ok_or(ShareError::NotFound(request))?;
    let now = sharing.clock.now_millis();
    let mut tx = sharing.db.begin().await?;
    let id = db::sharing::insert_feedback(
        &mut *tx,
        &db::sharing::NewFeedback {
            change_request_id: request,
            share_link_id: link,
            author: &author,
            verdict,
            comment: &comment,
            commit_sha: cr.head_sha.as_deref(),
        },
        now,
    )
    .await?;
    let actor = match visitor {
        Some(_) => author.clone(),
        None => format!("{author} (share link {})", link.unwrap_or_default()),
    };
    db::audit::record(
        &mut *tx,
        &db::audit::NewEntry {
            actor: &actor,
            action: "feedback.add",
            target: &format!("{} change request {request}", cr.app),
            reason: None,
            source_ip: visitor.and_then(|c| c.source_ip.as_deref()),
            detail: &serde_json::json!({ "verdict": verdict }).to_string(),
        },
        now,
    )
    .await?;
    crate::db::commit(tx).await?;
    tracing::info!(change_request = request, %verdict, "tester feedback recorded");
    // The forge comment carries the feedback: refresh it from the request's
    // newest run.
    if cr.origin != "native"
        && let Some(run) = db::runs::latest_for_change_request(pool, request).await?
    {
        sharing.comments.refresh(run).await;
    }
    Ok(TesterFeedback {
        id,
        author,
        via_share_link: link.is_some(),
        verdict: verdict.into(),
        comment,
        commit_sha: cr.head_sha,
        created_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_is_checked_before_it_is_stored() {
        let feedback = |verdict: &str, comment: &str, name: Option<&str>| NewFeedback {
            verdict: verdict.into(),
            comment: comment.into(),
            name: name.map(str::to_string),
        };
        let ok = validate(
            None,
            &feedback("broken", " the cart is empty ", Some("Lin")),
        );
        let (author, verdict, comment) = ok.unwrap();
        assert_eq!(
            (author.as_str(), verdict, comment.as_str()),
            ("Lin", "broken", "the cart is empty")
        );
        assert!(validate(None, &feedback("works", "", Some("Lin"))).is_ok());
        let error = validate(None, &feedback("broken", "", Some("Lin"))).unwrap_err();
        assert!(error.to_string().starts_with("comment:"), "{error}");
        let error = validate(None, &feedback("meh", "x", Some("Lin"))).unwrap_err();
        assert!(error.to_string().contains("works, broken, note"), "{error}");
        let error = validate(None, &feedback("note", "x", None)).unwrap_err();
        assert!(error.to_string().starts_with("name:"), "{error}");
        let long = "x".repeat(COMMENT_LIMIT + 1);
        assert!(validate(None, &feedback("note", &long, Some("Lin"))).is_err());
    }
}
