//! The kinds of failure every domain error is one of. The surfaces answer
//! from the kind alone (`http::error` for the REST API, `dashboard` for the
//! port), so a status code is decided in one place, and an `Internal` or
//! `Unavailable` error never shows its cause to the caller.

/// What went wrong, as far as the caller is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The thing asked about does not exist (or may not be seen).
    NotFound,
    /// The request is wrong in a way the caller can fix; the message says how.
    Invalid,
    /// The thing's state does not allow this now.
    Conflict,
    /// The thing was there and is gone for good (an expired or revoked
    /// share link): asking again will not help; asking for a new one will.
    Gone,
    /// The caller is known but may not do this.
    Forbidden,
    /// The caller is not known: no, or no longer valid, credentials.
    Unauthenticated,
    /// Something Gantry depends on is down or refused; trying later may help.
    Unavailable,
    /// A defect or a broken invariant: logged, never shown.
    Internal,
}

/// A domain error's kind.
pub trait Classified: std::error::Error {
    fn kind(&self) -> Kind;
}

/// What a person may read of an error: its message, unless the error is
/// internal or an outage (then a sentence, and the cause goes to the log).
pub fn shown(error: &impl Classified) -> String {
    let sentence = match error.kind() {
        Kind::Internal => "an internal error occurred; it is in Gantry's log",
        Kind::Unavailable => "a service Gantry depends on did not answer; try again later",
        _ => return error.to_string(),
    };
    tracing::warn!(%error, "not shown to the caller");
    sentence.to_string()
}

/// A value that does not parse or is out of bounds, and why, in words for
/// the person who wrote it (a duration, a URL, a size, a branch name). Its
/// kind is always `Invalid`; the error that holds it names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

impl Classified for Rejected {
    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

impl From<String> for Rejected {
    fn from(reason: String) -> Rejected {
        Rejected(reason)
    }
}

impl From<&str> for Rejected {
    fn from(reason: &str) -> Rejected {
        Rejected(reason.to_string())
    }
}

/// The reason, where an error holding it keeps messages per field.
impl From<Rejected> for String {
    fn from(rejected: Rejected) -> String {
        rejected.0
    }
}
