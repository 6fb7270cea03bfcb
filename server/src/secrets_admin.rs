//! Managing the registered secrets (global admins): set, list names, delete.
//! Values go in sealed and never come out; every change is audited. The
//! vault and the store it uses are infrastructure (`secrets`); this checks
//! callers and audits, so it is domain code of its own.

use app::dto::Role;
use app::port::Caller;

use crate::db::{self, Db, secrets::NewSecret};
use crate::error::{Classified, Kind};
use crate::secrets::{SecretError, Vault};

/// The shortest value accepted: shorter ones could not be masked in logs
/// without garbling them.
pub const MIN_LENGTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The name or value cannot be a secret; the text says why.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Vault(#[from] SecretError),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl Classified for AdminError {
    fn kind(&self) -> Kind {
        match self {
            AdminError::Forbidden(_) => Kind::Forbidden,
            AdminError::NotFound(_) => Kind::NotFound,
            AdminError::Invalid(_) => Kind::Invalid,
            AdminError::Vault(_) => Kind::Internal,
            AdminError::Db(error) => error.kind(),
        }
    }
}

fn require_admin(caller: &Caller) -> Result<(), AdminError> {
    caller
        .require(Role::Admin, None)
        .map_err(|refused| AdminError::Forbidden(refused.to_string()))
}

async fn app_id(db: &Db, app: Option<&str>) -> Result<Option<i64>, AdminError> {
    match app {
        None => Ok(None),
        Some(name) => db::apps::find_active_by_name(db.pool(), name)
            .await?
            .map(|row| Some(row.id))
            .ok_or_else(|| AdminError::NotFound(format!("app {name} does not exist"))),
    }
}

/// `secret NAME` or `secret NAME (app shop)`, for the audit log: the name
/// and scope, never the value.
fn scoped(name: &str, app: Option<&str>) -> String {
    match app {
        Some(app) => format!("secret {name} (app {app})"),
        None => format!("secret {name}"),
    }
}

/// A name steps and channels can refer to: uppercase letters, digits and
/// `_`, not starting with a digit, and not Gantry's own `GANTRY_*`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
        && !name.starts_with("GANTRY_")
}

/// Creates or replaces secret `name` (for every app, or for `app` only).
pub async fn put(
    db: &Db,
    vault: &Vault,
    caller: &Caller,
    name: &str,
    value: &str,
    app: Option<&str>,
) -> Result<(), AdminError> {
    require_admin(caller)?;
    if !valid_name(name) {
        return Err(AdminError::Invalid(format!(
            "{name:?} is not a secret name: uppercase letters, digits and `_`, not starting with GANTRY_"
        )));
    }
    if value.chars().count() < MIN_LENGTH {
        return Err(AdminError::Invalid(format!(
            "a secret value needs at least {MIN_LENGTH} characters, so logs can mask it"
        )));
    }
    let app_id = app_id(db, app).await?;
    let sealed = vault.seal(name, value)?;
    db::secrets::put(
        db.pool(),
        &NewSecret {
            name,
            app_id,
            nonce: &sealed.nonce,
            ciphertext: &sealed.ciphertext,
            key_id: &sealed.key_id,
            created_by: None,
        },
        db::now_millis(),
    )
    .await?;
    crate::audit::record(db, caller, "secret.set", &scoped(name, app), None).await?;
    Ok(())
}

/// The name and scope (app) of every secret.
pub async fn names(db: &Db, caller: &Caller) -> Result<Vec<(String, Option<String>)>, AdminError> {
    require_admin(caller)?;
    Ok(db::secrets::list_names(db.pool()).await?)
}

/// Deletes secret `name` of `app` (or the global one).
pub async fn delete(
    db: &Db,
    caller: &Caller,
    name: &str,
    app: Option<&str>,
) -> Result<(), AdminError> {
    require_admin(caller)?;
    let app_id = app_id(db, app).await?;
    if !db::secrets::delete(db.pool(), name, app_id).await? {
        return Err(AdminError::NotFound(format!("no secret {name}")));
    }
    crate::audit::record(db, caller, "secret.delete", &scoped(name, app), None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_what_steps_can_refer_to() {
        for good in ["DB_URL", "A", "TOKEN_2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "db_url", "2FA", "GANTRY_TOKEN", "A-B", "A B"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
