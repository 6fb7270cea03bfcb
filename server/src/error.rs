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
