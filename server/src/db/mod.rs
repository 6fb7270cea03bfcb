//! Storage. One [`Db`] over SQLite (the embedded default) or PostgreSQL,
//! through sqlx's `Any` driver so every query is written once: the SQL uses
//! only what both backends share (`$n` parameters, BIGINT millisecond
//! timestamps, TEXT states, `RETURNING`). Migrations differ per backend only
//! where the DDL must (identity columns, BLOB/BYTEA, triggers).
//!
//! One file per aggregate; functions take an executor so callers own
//! transactions.

pub mod approvals;
pub mod apps;
pub mod artifacts;
pub mod audit;
pub mod branch_heads;
pub mod change_requests;
pub mod clusters;
pub mod config_revisions;
pub mod coverage;
pub mod deployments;
pub mod environments;
mod error;
pub mod inbox;
pub mod installation;
pub mod local_processes;
pub mod notices;
pub mod notifications;
pub mod pins;
pub mod releases;
pub mod run_attempts;
pub mod runs;
pub mod secrets;
pub mod sessions;
pub mod sharing;
pub mod singletons;
pub mod steps;
pub mod tokens;
pub mod users;
pub mod watermarks;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};

use crate::config::{DatabaseTarget, redact_url};
pub use error::{Failure, QueryError};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A value the vault sealed (`secrets::Vault::seal`), as the tables that
/// keep secrets, cluster credentials and deployments' variables store it.
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub key_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database file {path} is not a SQLite database")]
    NotSqlite { path: PathBuf },
    #[error("cannot open database file {path}: {source}")]
    OpenSqlite { path: PathBuf, source: sqlx::Error },
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    ConnectPostgres { url: String, source: sqlx::Error },
    #[error(
        "the database was migrated by a newer gantry (it has migration {version}, this binary knows up to {known}); run the newer gantry"
    )]
    SchemaTooNew { version: i64, known: i64 },
    #[error("migrating the {backend} database failed: {source}")]
    Migrate {
        backend: &'static str,
        source: MigrateError,
    },
    #[error("the database schema is not migrated (at {found:?}, expected {expected})")]
    NotMigrated { found: Option<i64>, expected: i64 },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// The connection pool and which backend it talks to.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects without touching the schema. Fails fast (in seconds) with an
    /// error naming the file or the host.
    pub async fn connect(target: &DatabaseTarget) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        match target {
            DatabaseTarget::Sqlite(path) => connect_sqlite(path).await,
            DatabaseTarget::Postgres(url) => {
                let fail = |source| DbError::ConnectPostgres {
                    url: redact_url(url),
                    source,
                };
                // One direct connection first: a pool would retry until its
                // timeout and then report only "timed out", hiding the cause.
                let options = AnyConnectOptions::from_str(url).map_err(fail)?;
                let probe = tokio::time::timeout(Duration::from_secs(10), options.connect())
                    .await
                    .map_err(|_| fail(sqlx::Error::PoolTimedOut))?
                    .map_err(fail)?;
                let _ = probe.close().await;
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(fail)?;
                Ok(Db {
                    pool,
                    backend: Backend::Postgres,
                })
            }
        }
    }

    /// Applies the embedded migrations that are not applied yet. Each runs in
    /// its own transaction, so a failure leaves the previous schema intact.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = self.backend.migrator();
        migrator
            .run(&self.pool)
            .await
            .map_err(|source| match source {
                MigrateError::VersionMissing(version) => DbError::SchemaTooNew {
                    version,
                    known: latest_version(migrator),
                },
                source => DbError::Migrate {
                    backend: self.backend.name(),
                    source,
                },
            })
    }

    /// Ready = reachable and migrated to exactly what this binary expects.
    pub async fn check_ready(&self) -> Result<(), DbError> {
        let expected = latest_version(self.backend.migrator());
        let found: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = $1")
                .bind(true)
                .fetch_one(&self.pool)
                .await?;
        if found != Some(expected) {
            return Err(DbError::NotMigrated { found, expected });
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that may write. On SQLite it takes the write lock at
    /// `BEGIN` (`IMMEDIATE`): a deferred transaction reads from a snapshot
    /// and, if another connection commits before its first write, fails
    /// at once with "database is locked" — no busy timeout helps, since the
    /// snapshot is stale, not locked. Waiting for the lock up front makes
    /// read-then-write transactions take turns instead. Every transaction
    /// goes through here; `pool().begin()` would bring the failure back.
    pub async fn begin(&self) -> Result<Tx, QueryError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            #[allow(clippy::disallowed_methods)] // this is the one place
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// One connection of the pool, for a few queries in a row.
    pub async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, QueryError> {
        Ok(self.pool.acquire().await?)
    }

    /// Closes every connection; used on shutdown so SQLite checkpoints its WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn latest_version(migrator: &Migrator) -> i64 {
    migrator
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or(0)
}

async fn connect_sqlite(path: &Path) -> Result<Db, DbError> {
    check_sqlite_file(path)?;
    // The Any driver takes a URL; let sqlx encode the path so spaces and
    // other characters in it survive.
    let url = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .to_url_lossy();
    let options = AnyConnectOptions::from_url(&url).map_err(|source| DbError::OpenSqlite {
        path: path.to_path_buf(),
        source,
    })?;
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL lets the dashboard read while the runner writes; NORMAL
                // sync is durable across process crashes in WAL mode. Writers
                // take turns: under a burst (many runs finishing at once on
                // a small machine) one may wait for seconds, which beats
                // failing with "database is locked".
                conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;")
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|source| match &source {
            sqlx::Error::Database(db) if db.message().contains("not a database") => {
                DbError::NotSqlite { path: path.to_path_buf() }
            }
            _ => DbError::OpenSqlite { path: path.to_path_buf(), source },
        })?;
    Ok(Db {
        pool,
        backend: Backend::Sqlite,
    })
}

/// Refuses a file that exists but is not SQLite, before SQLite touches it.
fn check_sqlite_file(path: &Path) -> Result<(), DbError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(DbError::OpenSqlite {
                path: path.to_path_buf(),
                source: sqlx::Error::Io(error),
            });
        }
    };
    let mut header = Vec::with_capacity(16);
    file.by_ref()
        .take(16)
        .read_to_end(&mut header)
        .map_err(|error| DbError::OpenSqlite {
            path: path.to_path_buf(),
            source: sqlx::Error::Io(error),
        })?;
    // An empty file is what SQLite itself creates before the first write.
    if header.is_empty() || header.as_slice() == SQLITE_HEADER {
        Ok(())
    } else {
        Err(DbError::NotSqlite {
            path: path.to_path_buf(),
        })
    }
}

/// Turns a stored state name into its enum; an unknown name means the row
/// was written by something else and is reported, not guessed.
fn decode_state<T>(text: &str, parse: fn(&str) -> Option<T>) -> Result<T, QueryError> {
    parse(text).ok_or_else(|| QueryError::stored(format!("unknown state {text:?}")))
}

/// Ids for an `IN (…)` list, written into a query's text: they are
/// numbers, so nothing a person wrote reaches the SQL.
fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A transaction begun with [`Db::begin`].
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Commits what `tx` wrote.
pub async fn commit(tx: Tx) -> Result<(), QueryError> {
    Ok(tx.commit().await?)
}

/// Now, in the unit every table uses.
/// Now, in milliseconds since the epoch, as the database's clock says: what
/// leases are measured in, so replicas whose clocks disagree still agree on
/// whose lease ran out.
pub(crate) fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two writers on SQLite, one of which reads before it writes: the one
    /// that began first finishes first, and the other waits for it instead
    /// of failing with "database is locked".
    #[tokio::test]
    async fn a_sqlite_transaction_that_reads_then_writes_is_not_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::connect(&DatabaseTarget::Sqlite(dir.path().join("t.db")))
            .await
            .expect("open");
        for statement in [
            "CREATE TABLE counter (n BIGINT NOT NULL)",
            "INSERT INTO counter VALUES (0)",
        ] {
            db.pool().execute(statement).await.expect("create");
        }

        let mut tx = db.begin().await.expect("begin");
        let read: i64 = sqlx::query_scalar("SELECT n FROM counter")
            .fetch_one(&mut *tx)
            .await
            .expect("read");
        // Another connection writes while the transaction is open.
        let other = tokio::spawn({
            let pool = db.pool().clone();
            async move {
                sqlx::query("UPDATE counter SET n = n + 10")
                    .execute(&pool)
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("UPDATE counter SET n = $1")
            .bind(read + 1)
            .execute(&mut *tx)
            .await
            .expect("the transaction's write is not refused");
        tx.commit().await.expect("commit");
        other
            .await
            .expect("join")
            .expect("the other write waits its turn");

        let n: i64 = sqlx::query_scalar("SELECT n FROM counter")
            .fetch_one(db.pool())
            .await
            .expect("read");
        assert_eq!(n, 11, "the transaction's write, then the other one");
    }

    /// A database that went away is an outage, not a defect (the surfaces
    /// answer 503); a key already taken or a bad query is internal (500,
    /// the cause in the log: an index name is nobody's business).
    #[tokio::test]
    async fn database_errors_have_the_kind_of_what_went_wrong() {
        use crate::error::{Classified, Kind};
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::connect(&DatabaseTarget::Sqlite(dir.path().join("t.db")))
            .await
            .expect("open");
        db.pool()
            .execute("CREATE TABLE names (name TEXT NOT NULL UNIQUE)")
            .await
            .expect("create");
        let insert = || sqlx::query("INSERT INTO names VALUES ('shop')").execute(db.pool());
        insert().await.expect("first");
        let taken = QueryError::from(insert().await.expect_err("the name is taken"));
        assert_eq!(taken.failure(), Failure::Conflict, "{taken}");
        assert_eq!(taken.kind(), Kind::Internal, "{taken}");
        let wrong = QueryError::from(
            sqlx::query("SELECT nothing FROM names")
                .execute(db.pool())
                .await
                .expect_err("no such column"),
        );
        assert_eq!(wrong.failure(), Failure::Internal, "{wrong}");
        assert_eq!(wrong.kind(), Kind::Internal, "{wrong}");
        let unknown = decode_state("exploded", |_| None::<()>).expect_err("no such state");
        assert_eq!(unknown.failure(), Failure::Stored, "{unknown}");
        db.pool().close().await;
        let closed = QueryError::from(
            sqlx::query("SELECT 1")
                .execute(db.pool())
                .await
                .expect_err("the pool is closed"),
        );
        assert_eq!(closed.failure(), Failure::Unavailable, "{closed}");
        assert_eq!(closed.kind(), Kind::Unavailable, "{closed}");
    }
}
