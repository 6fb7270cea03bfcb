//! Data shared by the server and the dashboard: what the REST API returns and
//! what server functions hand to components. Compiled for both targets, so no
//! server-only types here; OpenAPI schemas are derived only under `ssr`.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Every timestamp Gantry stores or
/// returns uses this unit, so the two databases and the browser agree.
pub type UnixMillis = i64;

macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name used in the database, the API and CSS classes.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stable name; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// How a stored name is read back (the server's rows).
        impl TryFrom<String> for $name {
            type Error = UnknownState;
            fn try_from(text: String) -> Result<Self, UnknownState> {
                Self::parse(&text).ok_or(UnknownState {
                    kind: stringify!($name),
                    text,
                })
            }
        }
    };
}

/// A stored state name that none of its enum's values has: the row was
/// written by something else, and is reported, not guessed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownState {
    pub kind: &'static str,
    pub text: String,
}

impl std::fmt::Display for UnknownState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {} {:?}", self.kind, self.text)
    }
}

impl std::error::Error for UnknownState {}

mod audit;
mod change_requests;
mod clusters;
mod delivery;
mod environments;
mod identity;
mod lanes;
mod notify;
mod promotion;
mod releases;
mod resources;
mod runs;
mod settings;
mod sharing;
mod states;

pub use audit::*;
pub use change_requests::*;
pub use clusters::*;
pub use delivery::*;
pub use environments::*;
pub use identity::*;
pub use lanes::*;
pub use notify::*;
pub use promotion::*;
pub use releases::*;
pub use resources::*;
pub use runs::*;
pub use settings::*;
pub use sharing::*;
pub use states::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_through_parse() {
        for state in RunState::ALL {
            assert_eq!(RunState::parse(state.as_str()), Some(*state));
        }
        assert_eq!(RunState::parse("Running"), None);
        assert_eq!(
            RunState::try_from("running".to_string()),
            Ok(RunState::Running)
        );
        let unknown = RunState::try_from("Running".to_string()).expect_err("not a stored name");
        assert_eq!(unknown.to_string(), "unknown RunState \"Running\"");
    }
}
