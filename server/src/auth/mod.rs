//! Identity and permission. A request is made by a [`Principal`]: a person
//! signed in (a session cookie, from OIDC or the demo's dev login) or an API
//! token. What a principal may do comes from its grants: a [`Role`] for
//! every app or for one. Handlers ask with [`Principal::require`]; nothing
//! in the browser decides. How a request becomes a principal (cookies,
//! headers, sessions) is HTTP's business: `http::auth`.

pub mod dev;
pub mod oidc;
pub mod store;
pub mod tokens;

use app::dto::{Grant, Me, Role};
use app::port::{Caller, PortError};
use sha2::{Digest, Sha256};

use crate::db::{self, Db, now_millis};
use crate::error::{Classified, Kind};

/// Why an identity or permission check failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials: a bad token, an owner with no role left.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    #[error("session: {0}")]
    Session(String),
    /// The session table did not answer (the database is out of reach).
    #[error("session store: {0}")]
    SessionStore(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl Classified for AuthError {
    fn kind(&self) -> Kind {
        match self {
            AuthError::Unauthenticated(_) => Kind::Unauthenticated,
            AuthError::Forbidden(_) => Kind::Forbidden,
            AuthError::NotFound(_) => Kind::NotFound,
            AuthError::Invalid(_) => Kind::Invalid,
            AuthError::Random(_) | AuthError::Session(_) => Kind::Internal,
            AuthError::SessionStore(_) => Kind::Unavailable,
            AuthError::Db(error) => error.kind(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    Session { csrf: String },
    Token { token_id: i64 },
}

/// Who makes a request, and what they may do.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: i64,
    pub name: String,
    pub grants: Vec<Grant>,
    /// When the person last authenticated with the identity provider.
    pub auth_time: Option<i64>,
    pub via: Via,
    /// Where the request came from (first `X-Forwarded-For` hop, else the
    /// peer address), for the audit log.
    pub source_ip: Option<String>,
}

impl Principal {
    pub fn can(&self, role: Role, app: Option<&str>) -> bool {
        self.me().can(role, app)
    }

    /// Refuses (403) unless a grant gives at least `role` on `app`: the
    /// same check as the dashboard's, [`Caller::require`].
    pub fn require(&self, role: Role, app: Option<&str>) -> Result<(), AuthError> {
        self.caller().require(role, app).map_err(refused)
    }

    /// The same person, as the dashboard port and the domain services see
    /// them.
    pub fn caller(&self) -> Caller {
        Caller {
            user_id: self.user_id,
            me: self.me(),
            via_token: matches!(self.via, Via::Token { .. }),
            source_ip: self.source_ip.clone(),
        }
    }

    pub fn me(&self) -> Me {
        Me {
            name: self.name.clone(),
            grants: self.grants.clone(),
            csrf: match &self.via {
                Via::Session { csrf } => csrf.clone(),
                Via::Token { .. } => String::new(),
            },
            auth_time: self.auth_time,
        }
    }

    /// Checks a CSRF token sent with a change (sessions only: an API token
    /// is not sent by the browser on its own, so it needs none): the same
    /// check as the dashboard's, [`Caller::check_csrf`].
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), AuthError> {
        self.caller()
            .check_csrf(sent.unwrap_or_default())
            .map_err(refused)
    }
}

/// A session that could not be read or written: its store (the database)
/// not answering is an outage; a record that does not decode is internal.
pub fn session_error(error: tower_sessions::session::Error) -> AuthError {
    match error {
        tower_sessions::session::Error::Store(tower_sessions::session_store::Error::Backend(
            cause,
        )) => AuthError::SessionStore(cause),
        other => AuthError::Session(other.to_string()),
    }
}

/// A refusal of the port's identity checks, as this domain's error.
fn refused(error: PortError) -> AuthError {
    match error {
        PortError::Forbidden(reason) => AuthError::Forbidden(reason),
        other => AuthError::Session(other.to_string()),
    }
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Hex SHA-256 (what the database keeps of tokens).
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh random token with a readable prefix.
pub fn random_token(prefix: &str) -> Result<String, AuthError> {
    let mut bytes = [0_u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(format!(
        "{prefix}{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// The grants of a user, from their role bindings.
pub async fn grants_of(db: &Db, user_id: i64) -> Result<Vec<Grant>, crate::db::QueryError> {
    Ok(to_grants(db::users::bindings(db.pool(), user_id).await?))
}

fn to_grants(bindings: Vec<(String, Option<String>)>) -> Vec<Grant> {
    bindings
        .into_iter()
        .filter_map(|(role, app)| Role::parse(&role).map(|role| Grant { role, app }))
        .collect()
}

/// Where a request came from, for the audit log: the TCP peer, unless the
/// peer is one of `server.trusted_proxies` — then the nearest hop of
/// `X-Forwarded-For` that is not a trusted proxy. A client can write any
/// `X-Forwarded-For` it likes, so the header means nothing from others.
pub fn client_ip(
    peer: Option<std::net::IpAddr>,
    forwarded: &[&str],
    trusted: &[crate::config::IpNet],
) -> Option<String> {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer?;
    // Right to left: each trusted hop vouches for the one before it.
    for hop in forwarded.iter().rev() {
        if !is_trusted(client) {
            break;
        }
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => client = ip,
            Err(_) => break,
        }
    }
    Some(client.to_string())
}

/// Finds or creates the user of an identity, updating name and e-mail.
pub async fn upsert_user(
    db: &Db,
    issuer: &str,
    subject: &str,
    name: &str,
    email: Option<&str>,
) -> Result<i64, crate::db::QueryError> {
    db::users::upsert(db.pool(), issuer, subject, name, email, now_millis()).await
}

/// Records the forge account the person signs in as, from the claim
/// `auth.forge_login_claim` names (none: the token did not carry it).
pub async fn set_forge_login(
    db: &Db,
    user_id: i64,
    login: Option<&str>,
) -> Result<(), crate::db::QueryError> {
    db::users::set_forge_login(db.pool(), user_id, login.map(str::trim)).await
}

/// Replaces the user's grants from one source (e.g. the OIDC groups claim
/// at each sign-in) with `grants`. Unknown apps in grants are skipped.
pub async fn set_grants(
    db: &Db,
    user_id: i64,
    source: &str,
    grants: &[Grant],
) -> Result<(), crate::db::QueryError> {
    let mut tx = db.begin().await?;
    db::users::remove_bindings_from(&mut *tx, user_id, source).await?;
    for grant in grants {
        let app_id = match &grant.app {
            Some(name) => match db::users::app_id(&mut *tx, name).await? {
                Some(id) => Some(id),
                None => continue,
            },
            None => None,
        };
        let role = grant.role.as_str();
        db::users::bind(&mut *tx, user_id, role, app_id, source, now_millis()).await?;
    }
    crate::db::commit(tx).await
}

/// Adds one grant to a user's grants from `source`, keeping the others
/// (the CLI gives the operator's user the role of each token it creates).
pub async fn add_grant(
    db: &Db,
    user_id: i64,
    source: &str,
    grant: &Grant,
) -> Result<(), crate::db::QueryError> {
    let mut grants = to_grants(db::users::bindings_from(db.pool(), user_id, source).await?);
    if !grants.contains(grant) {
        grants.push(grant.clone());
    }
    set_grants(db, user_id, source, &grants).await
}

/// A caller standing for Gantry itself acting on a person's behalf (the
/// demo's first approval): a user of issuer `gantry-system`.
pub async fn system_caller(
    db: &Db,
    name: &str,
    role: Role,
) -> Result<app::port::Caller, crate::db::QueryError> {
    let user_id = upsert_user(db, "gantry-system", name, name, None).await?;
    let grants = vec![Grant { role, app: None }];
    set_grants(db, user_id, "system", &grants).await?;
    Ok(app::port::Caller {
        user_id,
        me: Me {
            name: name.to_string(),
            grants,
            csrf: String::new(),
            auth_time: Some(now_millis()),
        },
        via_token: true,
        source_ip: None,
    })
}

/// A forge account as a Gantry identity: the one user whose sign-in
/// carried this login in the claim `auth.forge_login_claim` names (the
/// identity the forge and the SSO share). Never from commit metadata; an
/// account no user — or more than one — signs in as maps to nobody.
#[derive(Clone, Debug)]
pub struct ForgeIdentity {
    pub user_id: i64,
    pub name: String,
    pub grants: Vec<Grant>,
}

impl ForgeIdentity {
    /// The person as an approver: no fresh sign-in to show (a policy with
    /// `reauth` refuses them).
    pub fn caller(&self) -> Caller {
        Caller {
            user_id: self.user_id,
            me: Me {
                name: self.name.clone(),
                grants: self.grants.clone(),
                csrf: String::new(),
                auth_time: None,
            },
            via_token: true,
            source_ip: None,
        }
    }
}

/// The Gantry user who wrote a change request: who opened it in Gantry, or
/// — for a forge's request — the user its forge author maps to now (a
/// person may sign in for the first time after the request was opened).
pub async fn author_of_request(
    db: &Db,
    request: &db::change_requests::CrRow,
) -> Result<Option<i64>, crate::db::QueryError> {
    if request.author_user_id.is_some() || request.origin == "native" {
        return Ok(request.author_user_id);
    }
    Ok(forge_identity(db, &request.author)
        .await?
        .map(|who| who.user_id))
}

pub async fn forge_identity(
    db: &Db,
    login: &str,
) -> Result<Option<ForgeIdentity>, crate::db::QueryError> {
    if login.trim().is_empty() {
        return Ok(None);
    }
    let users = db::users::by_forge_login(db.pool(), login.trim()).await?;
    let [(user_id, name)] = users.as_slice() else {
        return Ok(None);
    };
    Ok(Some(ForgeIdentity {
        user_id: *user_id,
        name: name.clone(),
        grants: grants_of(db, *user_id).await?,
    }))
}

/// Grants from the values of the roles claim: `admin`, `developer`,
/// `tester`, `viewer`, optionally scoped as `<app>:<role>`; a `gantry-`
/// prefix is accepted (`gantry-admin`). Other values are ignored.
pub fn grants_from_claim(values: &[String]) -> Vec<Grant> {
    values
        .iter()
        .filter_map(|value| {
            let value = value.trim().strip_prefix("gantry-").unwrap_or(value.trim());
            match value.split_once(':') {
                Some((app, role)) => Role::parse(role).map(|role| Grant {
                    role,
                    app: Some(app.to_string()),
                }),
                None => Role::parse(value).map(|role| Grant { role, app: None }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_map_to_grants() {
        let grants = grants_from_claim(&[
            "gantry-admin".into(),
            "shop:developer".into(),
            "everyone".into(),
            "tester".into(),
        ]);
        assert_eq!(
            grants,
            vec![
                Grant {
                    role: Role::Admin,
                    app: None
                },
                Grant {
                    role: Role::Developer,
                    app: Some("shop".into())
                },
                Grant {
                    role: Role::Tester,
                    app: None
                },
            ]
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = [crate::config::IpNet::parse("10.0.0.0/8").expect("net")];
        let ip = |text: &str| Some(text.parse().expect("ip"));
        // A client that writes the header itself gains nothing.
        assert_eq!(
            client_ip(ip("203.0.113.7"), &["1.2.3.4"], &proxies).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            client_ip(ip("203.0.113.7"), &["1.2.3.4"], &[]).as_deref(),
            Some("203.0.113.7")
        );
        // Behind the proxy: the hop the proxy saw, not what the client wrote.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["1.2.3.4", "198.51.100.9"], &proxies).as_deref(),
            Some("198.51.100.9")
        );
        // Two trusted proxies in a row.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["198.51.100.9", "10.0.0.3"], &proxies).as_deref(),
            Some("198.51.100.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["junk"], &proxies).as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(client_ip(None, &["1.2.3.4"], &proxies), None);
    }

    #[test]
    fn roles_include_the_ones_below_and_scopes_hold() {
        let me = Me {
            name: "d".into(),
            grants: vec![Grant {
                role: Role::Developer,
                app: Some("shop".into()),
            }],
            csrf: String::new(),
            auth_time: None,
        };
        assert!(me.can(Role::Viewer, Some("shop")));
        assert!(me.can(Role::Developer, Some("shop")));
        assert!(!me.can(Role::Admin, Some("shop")));
        assert!(!me.can(Role::Viewer, Some("billing")), "scoped to shop");
        assert!(!me.can(Role::Viewer, None), "not a global grant");
    }
}
