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
