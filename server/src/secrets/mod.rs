//! Secrets at rest: ChaCha20-Poly1305 with a 256-bit key from a key file
//! (created with mode 0600 on first start). The secret's name is bound in as
//! associated data, so a ciphertext cannot be moved to another name. Values
//! only ever leave this module to be injected into a step's environment.

pub mod mask;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret key file {path} does not hold a base64 256-bit key")]
    BadKey { path: PathBuf },
    #[error("secret {name:?} was encrypted with key {key_id}, not the configured key {configured}")]
    WrongKey {
        name: String,
        key_id: String,
        configured: String,
    },
    #[error("secret {name:?} cannot be decrypted (corrupt or tampered with)")]
    Corrupt { name: String },
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    #[error(
        "secret {name:?} is not registered for this app (register it with PUT /api/v1/secrets/{name})"
    )]
    Missing { name: String },
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

/// The secrets registered for apps, as steps, deploys, notifications and
/// forges receive them: rows from the database opened with the vault.
#[derive(Clone, Copy, Debug)]
pub struct Store<'a> {
    db: &'a crate::db::Db,
    vault: &'a Vault,
}

impl<'a> Store<'a> {
    pub fn new(db: &'a crate::db::Db, vault: &'a Vault) -> Store<'a> {
        Store { db, vault }
    }

    /// The values of `names` for `app_id` (its own secrets win over global
    /// ones of the same name), as `(NAME, value)` pairs.
    pub async fn resolve(
        &self,
        app_id: i64,
        names: &[String],
    ) -> Result<Vec<(String, String)>, SecretError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let rows = crate::db::secrets::for_app(self.db.pool(), app_id).await?;
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            let row = rows
                .iter()
                .filter(|row| &row.name == name)
                .max_by_key(|row| row.app_id.is_some())
                .ok_or_else(|| SecretError::Missing { name: name.clone() })?;
            let sealed = Sealed {
                nonce: row.nonce.clone(),
                ciphertext: row.ciphertext.clone(),
                key_id: row.key_id.clone(),
            };
            values.push((name.clone(), self.vault.open_value(name, &sealed)?));
        }
        Ok(values)
    }

    /// A masker for everything `app_id` may be given: its own secrets and the
    /// global ones (a deploy's log, its details and notifications about the app
    /// may hold any of them).
    pub async fn masker(&self, app_id: i64) -> Result<mask::Masker, SecretError> {
        let rows = crate::db::secrets::for_app(self.db.pool(), app_id).await?;
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            let sealed = Sealed {
                nonce: row.nonce.clone(),
                ciphertext: row.ciphertext.clone(),
                key_id: row.key_id.clone(),
            };
            // One that cannot be opened cannot be given to anything either.
            match self.vault.open_value(&row.name, &sealed) {
                Ok(value) => values.push(value),
                Err(error) => tracing::warn!(%error, "a secret is left out of masking"),
            }
        }
        Ok(mask::Masker::new(values))
    }

    /// A masker for the secrets `names` of `app_id` (those that exist): what a
    /// step or an app was given.
    pub async fn masker_of(
        &self,
        app_id: i64,
        names: &[String],
    ) -> Result<mask::Masker, SecretError> {
        let mut values = Vec::new();
        for name in names {
            match self.resolve(app_id, std::slice::from_ref(name)).await {
                Ok(found) => values.extend(found.into_iter().map(|(_, value)| value)),
                Err(SecretError::Db(error)) => return Err(SecretError::Db(error)),
                Err(_) => {}
            }
        }
        Ok(mask::Masker::new(values))
    }
}

/// The key that seals and opens secrets.
pub struct Vault {
    cipher: ChaCha20Poly1305,
    /// Signs links Gantry hands out (preview share links).
    signing_key: [u8; 32],
    key_id: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Hex HMAC-SHA256 of `body` under `secret`: how forges sign the webhooks
/// they send, and how Gantry signs its own notification webhooks.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    hmac_sha256(secret.as_bytes(), body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// A sealed value, as the database stores it.
pub use crate::db::Sealed;

impl Vault {
    /// Opens the key file, creating it (0600, random key) when missing.
    pub fn open(path: &Path) -> Result<Vault, SecretError> {
        let io = |source| SecretError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0_u8; 32];
                getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
                let text = STANDARD.encode(key);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                writeln!(file, "{text}").map_err(io)?;
                text
            }
            Err(error) => return Err(io(error)),
        };
        let key = STANDARD
            .decode(text.trim())
            .ok()
            .filter(|key| key.len() == 32)
            .ok_or_else(|| SecretError::BadKey {
                path: path.to_path_buf(),
            })?;
        let key_id = Sha256::digest(&key)
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Vault {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            signing_key: hmac_sha256(&key, b"gantry/signed-links/v1"),
            key_id,
        })
    }

    /// HMAC-SHA256 of `message` under a key derived from the secret key
    /// (so `gantry rotate-key` also ends every signed link).
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.signing_key, message)
    }

    /// Whether `signature` is [`Vault::sign`] of `message`, compared in
    /// constant time.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&self.signing_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(message);
        mac.verify_slice(signature).is_ok()
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn seal(&self, name: &str, value: &str) -> Result<Sealed, SecretError> {
        let mut nonce = [0_u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt {
                name: name.to_string(),
            })?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
            key_id: self.key_id.clone(),
        })
    }

    pub fn open_value(&self, name: &str, sealed: &Sealed) -> Result<String, SecretError> {
        if sealed.key_id != self.key_id {
            return Err(SecretError::WrongKey {
                name: name.to_string(),
                key_id: sealed.key_id.clone(),
                configured: self.key_id.clone(),
            });
        }
        if sealed.nonce.len() != 12 {
            return Err(SecretError::Corrupt {
                name: name.to_string(),
            });
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt {
                name: name.to_string(),
            })?;
        String::from_utf8(plain).map_err(|_| SecretError::Corrupt {
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let vault = Vault::open(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = vault.seal("NPM_TOKEN", "s3cr3t").expect("seal");
        assert_ne!(sealed.ciphertext, b"s3cr3t");
        let again = Vault::open(&path).expect("reopened");
        assert_eq!(
            again.open_value("NPM_TOKEN", &sealed).expect("open"),
            "s3cr3t"
        );
    }

    #[test]
    fn a_ciphertext_cannot_be_moved_to_another_name_or_tampered_with() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = Vault::open(&dir.path().join("k")).expect("vault");
        let mut sealed = vault.seal("A", "value").expect("seal");
        assert!(matches!(
            vault.open_value("B", &sealed),
            Err(SecretError::Corrupt { .. })
        ));
        sealed.ciphertext[0] ^= 1;
        assert!(matches!(
            vault.open_value("A", &sealed),
            Err(SecretError::Corrupt { .. })
        ));
    }

    #[test]
    fn another_key_is_named_not_guessed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Vault::open(&dir.path().join("k1")).expect("vault");
        let second = Vault::open(&dir.path().join("k2")).expect("vault");
        let sealed = first.seal("A", "value").expect("seal");
        assert!(matches!(
            second.open_value("A", &sealed),
            Err(SecretError::WrongKey { .. })
        ));
        std::fs::write(dir.path().join("bad"), "not base64!").expect("write");
        assert!(matches!(
            Vault::open(&dir.path().join("bad")),
            Err(SecretError::BadKey { .. })
        ));
    }
}
