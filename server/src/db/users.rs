//! People and their role bindings. A binding has a `source` (`oidc`, `dev`,
//! `cli`, `system`) so each sign-in replaces only what it granted.

use sqlx::{Any, Executor};

/// The (role, app name) pairs bound to a user, oldest first; a `None` app
/// is a binding for every app.
pub async fn bindings<'e>(
    exec: impl Executor<'e, Database = Any>,
    user_id: i64,
) -> Result<Vec<(String, Option<String>)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT b.role, a.name FROM role_bindings b LEFT JOIN apps a ON a.id = b.app_id WHERE b.user_id = $1 ORDER BY b.id",
    )
    .bind(user_id)
    .fetch_all(exec)
    .await?)
}

/// The bindings one source gave a user.
pub async fn bindings_from<'e>(
    exec: impl Executor<'e, Database = Any>,
    user_id: i64,
    source: &str,
) -> Result<Vec<(String, Option<String>)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT b.role, a.name FROM role_bindings b LEFT JOIN apps a ON a.id = b.app_id
         WHERE b.user_id = $1 AND b.source = $2 ORDER BY b.id",
    )
    .bind(user_id)
    .bind(source)
    .fetch_all(exec)
    .await?)
}

pub async fn remove_bindings_from<'e>(
    exec: impl Executor<'e, Database = Any>,
    user_id: i64,
    source: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("DELETE FROM role_bindings WHERE user_id = $1 AND source = $2")
            .bind(user_id)
            .bind(source)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Binds `role` on `app_id` (None: every app) to a user.
pub async fn bind<'e>(
    exec: impl Executor<'e, Database = Any>,
    user_id: i64,
    role: &str,
    app_id: Option<i64>,
    source: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query("INSERT INTO role_bindings (user_id, role, app_id, created_at, source) VALUES ($1, $2, $3, $4, $5)")
        .bind(user_id)
        .bind(role)
        .bind(app_id)
        .bind(now)
        .bind(source)
        .execute(exec)
        .await
        .map(|_| ())?)
}

/// The id of an app by name, removed or not (bindings outlive removal).
pub async fn app_id<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar("SELECT id FROM apps WHERE name = $1")
        .bind(name)
        .fetch_optional(exec)
        .await?)
}

pub async fn display_name<'e>(
    exec: impl Executor<'e, Database = Any>,
    user_id: i64,
) -> Result<Option<String>, super::QueryError> {
    Ok(
        sqlx::query_scalar("SELECT display_name FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(exec)
            .await?,
    )
}

/// Finds or creates the user of an identity, updating name and e-mail;
/// returns the user's id.
pub async fn upsert<'e>(
    exec: impl Executor<'e, Database = Any>,
    issuer: &str,
    subject: &str,
    name: &str,
    email: Option<&str>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO users (issuer, subject, email, display_name, created_at, last_login_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (issuer, subject) DO UPDATE SET email = $3, display_name = $4, last_login_at = $5
         RETURNING id",
    )
    .bind(issuer)
    .bind(subject)
    .bind(email)
    .bind(name)
    .bind(now)
    .fetch_one(exec)
    .await?)
}

/// The first user with this e-mail address (case-insensitive).
pub async fn by_email<'e>(
    exec: impl Executor<'e, Database = Any>,
    email: &str,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM users WHERE LOWER(email) = LOWER($1) ORDER BY id LIMIT 1",
    )
    .bind(email)
    .fetch_optional(exec)
    .await?)
}

/// The users who sign in as forge account `login` (case-insensitive; see
/// `auth.forge_login_claim`), with their names.
pub async fn by_forge_login<'e>(
    exec: impl Executor<'e, Database = Any>,
    login: &str,
) -> Result<Vec<(i64, String)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, display_name FROM users WHERE LOWER(forge_login) = LOWER($1) ORDER BY id LIMIT 2",
    )
    .bind(login)
    .fetch_all(exec)
    .await?)
}

/// Records the forge account the user signs in as (none: the identity
/// provider did not say).
pub async fn set_forge_login<'e>(
    exec: impl Executor<'e, Database = Any>,
    user_id: i64,
    login: Option<&str>,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE users SET forge_login = $2 WHERE id = $1")
            .bind(user_id)
            .bind(login)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}
