//! What a failed query was, for everything above `db/`: the one error type
//! the storage functions return, so no caller inspects the driver's own.

use crate::error::{Classified, Kind};

/// A query that failed, and what kind of failure it was ([`Failure`]).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct QueryError(#[from] sqlx::Error);

/// The kinds of failure the layers above tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot answer now — a lost connection, a pool that
    /// timed out waiting for one, a server shutting down or starting, a
    /// SQLite database busy past its timeout: trying again later may work.
    Unavailable,
    /// A unique key is already taken (a name, a request per branch pair):
    /// the domain knows which and says so in its own terms.
    Conflict,
    /// A stored row that does not read back (an unknown state name, a
    /// JSON column that does not parse): written by something else.
    Stored,
    /// Anything else: a defect (a bad query, a broken schema).
    Internal,
}

impl QueryError {
    pub fn failure(&self) -> Failure {
        match &self.0 {
            // A connection cut mid-conversation reads as a protocol error
            // (nothing, where the server's answer should be).
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Failure::Unavailable,
            sqlx::Error::Database(error) if outage(error.as_ref()) => Failure::Unavailable,
            sqlx::Error::Database(error) if error.is_unique_violation() => Failure::Conflict,
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => Failure::Stored,
            _ => Failure::Internal,
        }
    }

    /// A unique key was already taken.
    pub fn is_conflict(&self) -> bool {
        self.failure() == Failure::Conflict
    }

    /// The database was away for a moment: worth trying again shortly.
    /// Narrower than `Unavailable`: a closed pool was closed on purpose (at
    /// shutdown), and the driver also reports some refusals of its own as
    /// protocol errors (a message too large), which no retry cures.
    pub fn is_transient(&self) -> bool {
        match &self.0 {
            // The opening handshake of a new connection answered with
            // nothing: a server restarting (seen with PostgreSQL restarted
            // under load), not a refusal of the driver's own.
            sqlx::Error::Protocol(message) => message.contains("SSLRequest"),
            sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => false,
            _ => self.failure() == Failure::Unavailable,
        }
    }

    /// A stored value that does not read back as what Gantry wrote.
    pub fn stored(what: impl std::fmt::Display) -> QueryError {
        QueryError(sqlx::Error::Decode(what.to_string().into()))
    }

    /// A value that cannot be written (it does not serialize).
    pub fn unwritable(error: impl std::error::Error + Send + Sync + 'static) -> QueryError {
        QueryError(sqlx::Error::Encode(Box::new(error)))
    }
}

/// An outage answers 503 with `Retry-After`, like a git or cluster outage.
/// Anything else is a defect: `Internal`, logged, never shown — a unique key
/// already taken included: only the domain knows which key it was and
/// whether that is a conflict the caller can act on (`ClusterError::Exists`),
/// so it says so (the index's name is nobody's business).
impl Classified for QueryError {
    fn kind(&self) -> Kind {
        match self.failure() {
            Failure::Unavailable => Kind::Unavailable,
            Failure::Conflict | Failure::Stored | Failure::Internal => Kind::Internal,
        }
    }
}

/// A database that cannot answer now, where trying again later may work:
/// PostgreSQL's connection exceptions (class 08), a server shutting down
/// or starting (57P01–57P03), an idle session ended (57P05), too many
/// connections (53300); SQLite busy or
/// locked (primary codes 5 and 6, with their extended codes).
fn outage(error: &dyn sqlx::error::DatabaseError) -> bool {
    let code = error.code();
    let code = code.as_deref().unwrap_or_default();
    if error
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        return code
            .parse::<u32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6));
    }
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57P05" | "53300")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarting_server_is_transient_and_a_driver_refusal_is_not() {
        let restarting = QueryError(sqlx::Error::Protocol(
            "encountered unexpected or invalid data: unexpected response from SSLRequest: 0x00"
                .into(),
        ));
        assert!(restarting.is_transient());
        let refused = QueryError(sqlx::Error::Protocol("message too large".into()));
        assert!(!refused.is_transient());
        assert!(!QueryError(sqlx::Error::PoolClosed).is_transient());
        assert!(QueryError(sqlx::Error::PoolTimedOut).is_transient());
    }
}
