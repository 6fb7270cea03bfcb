//! Who someone is and what they may do: roles and grants.

use super::*;

state_enum! {
    /// What a person may do, from least to most. A role includes the ones
    /// below it.
    Role {
        Viewer => "viewer",
        Tester => "tester",
        Developer => "developer",
        Admin => "admin",
    }
}

impl Role {
    /// Where it stands in `viewer < tester < developer < admin`.
    pub fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Tester => 1,
            Role::Developer => 2,
            Role::Admin => 3,
        }
    }
}

/// A role, for every app or for one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Grant {
    pub role: Role,
    /// `None`: every app.
    pub app: Option<String>,
}

/// Who is signed in, as the dashboard needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Me {
    pub name: String,
    pub grants: Vec<Grant>,
    /// Sent back with every change (forms carry it as `csrf`).
    pub csrf: String,
    /// When this person last authenticated with the identity provider.
    pub auth_time: Option<UnixMillis>,
}

impl Me {
    /// True when a grant gives at least `role` on `app` (or everywhere).
    pub fn can(&self, role: Role, app: Option<&str>) -> bool {
        self.grants.iter().any(|grant| {
            grant.role.rank() >= role.rank() && (grant.app.is_none() || grant.app.as_deref() == app)
        })
    }

    /// True when some grant gives at least `role` somewhere.
    pub fn can_anywhere(&self, role: Role) -> bool {
        self.grants
            .iter()
            .any(|grant| grant.role.rank() >= role.rank())
    }
}

/// An API token as its owner (or a global admin) sees it: never the secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: i64,
    /// What it is for (`ci`, `laptop`).
    pub name: String,
    /// Whose it is.
    pub user: String,
    pub role: String,
    pub app: Option<String>,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    pub last_used_at: Option<UnixMillis>,
}

/// A token to create, acting as its creator with at most their power.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenRequest {
    pub name: String,
    pub role: String,
    pub app: Option<String>,
    /// `30d`, `12h` (default 90 days).
    pub expires: Option<String>,
}

/// A token just created: the secret, shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedApiToken {
    pub id: i64,
    pub token: String,
    pub expires_at: UnixMillis,
}
