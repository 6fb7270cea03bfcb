//! The tower-sessions store: sessions in the `user_sessions` table of
//! whichever database Gantry uses, expiry in milliseconds like every other
//! timestamp. A session id is a bearer credential (it is the cookie), so the
//! table keeps only its SHA-256: whoever reads the database cannot sign in
//! as anyone.

use async_trait::async_trait;
use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result};

use crate::clock::Clock;
use crate::db::{self, Db};

#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: Db,
    clock: Clock,
}

impl DbSessionStore {
    pub fn new(db: Db, clock: Clock) -> Self {
        DbSessionStore { db, clock }
    }

    /// Deletes expired sessions (run now and then).
    pub async fn purge_expired(&self) -> std::result::Result<u64, crate::db::QueryError> {
        db::sessions::purge_expired(self.db.pool(), self.clock.now_millis()).await
    }
}

fn backend(error: impl std::fmt::Display) -> Error {
    Error::Backend(error.to_string())
}

/// What the table keeps of a session id.
pub fn stored_id(id: &Id) -> String {
    super::sha256_hex(&id.to_string())
}

fn expires_at(record: &Record) -> i64 {
    i64::try_from(record.expiry_date.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> Result<()> {
        // A fresh id that is not taken (collisions are astronomically rare).
        loop {
            let data =
                serde_json::to_vec(&record.data).map_err(|e| Error::Encode(e.to_string()))?;
            let stored = stored_id(&record.id);
            let inserted = db::sessions::insert(self.db.pool(), &stored, &data, expires_at(record))
                .await
                .map_err(backend)?;
            if inserted {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> Result<()> {
        let data = serde_json::to_vec(&record.data).map_err(|e| Error::Encode(e.to_string()))?;
        let stored = stored_id(&record.id);
        db::sessions::save(self.db.pool(), &stored, &data, expires_at(record))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let row = db::sessions::load(self.db.pool(), &stored_id(id), self.clock.now_millis())
            .await
            .map_err(backend)?;
        let Some((data, expires)) = row else {
            return Ok(None);
        };
        let data = serde_json::from_slice(&data).map_err(|e| Error::Decode(e.to_string()))?;
        let expiry_date =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires) * 1_000_000)
                .map_err(|e| Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        db::sessions::delete(self.db.pool(), &stored_id(id))
            .await
            .map_err(backend)?;
        Ok(())
    }
}
