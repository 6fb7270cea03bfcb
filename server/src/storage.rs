//! The data directory: created on first start, checked for writability,
//! and locked so two Gantry processes never share one (they would run the
//! same work twice). A SQLite database is locked too, wherever it lives:
//! SQLite serves one Gantry process; several replicas need PostgreSQL.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory {path} cannot be created: its parent {} does not exist", parent.display())]
    MissingParent { path: PathBuf, parent: PathBuf },
    #[error("data directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("data directory {path} is not usable: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory {path} is in use by another gantry process (lock file {path}/gantry.lock)"
    )]
    Locked { path: PathBuf },
    #[error(
        "the SQLite database {path} is in use by another gantry process{by} (lock file {path}.lock): SQLite serves one gantry process; run several replicas on PostgreSQL (storage.database_url = postgres://…)",
        by = pid.as_ref().map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    DatabaseInUse { path: PathBuf, pid: Option<String> },
}

/// Takes `path` as this process's lock file, writing the pid into it (which
/// helps a person find the other process). `None` when another holds it.
fn exclusive(path: &Path) -> std::io::Result<Option<File>> {
    let mut lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(error)) => return Err(error),
    }
    // Failure to write the pid is harmless.
    let _ = lock
        .set_len(0)
        .and_then(|_| writeln!(lock, "{}", std::process::id()));
    Ok(Some(lock))
}

/// A SQLite database held by this process (`<database>.lock`), so a second
/// `gantry serve` on the same file — from another data directory — stops
/// with a clear error instead of running the same work twice.
#[derive(Debug)]
pub struct DatabaseLock {
    _lock: File,
}

impl DatabaseLock {
    pub fn acquire(database: &Path) -> Result<DatabaseLock, DataDirError> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        match exclusive(&path).map_err(io)? {
            Some(lock) => Ok(DatabaseLock { _lock: lock }),
            None => Err(DataDirError::DatabaseInUse {
                path: database.to_path_buf(),
                pid: std::fs::read_to_string(&path)
                    .ok()
                    .map(|pid| pid.trim().to_string())
                    .filter(|pid| !pid.is_empty()),
            }),
        }
    }
}

/// An opened, locked data directory. The lock is released when dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Opens `path`, creating it (but not its parents) on first use.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_dir() => {
                return Err(DataDirError::NotADirectory {
                    path: path.to_path_buf(),
                });
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
                if !parent.as_os_str().is_empty() && !parent.is_dir() {
                    return Err(DataDirError::MissingParent {
                        path: path.to_path_buf(),
                        parent,
                    });
                }
                std::fs::create_dir(path).map_err(io)?;
            }
            Err(error) => return Err(io(error)),
        }

        make_private(path).map_err(io)?;
        let Some(lock) = exclusive(&path.join("gantry.lock")).map_err(io)? else {
            return Err(DataDirError::Locked {
                path: path.to_path_buf(),
            });
        };

        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The data directory holds the secret key, the database and the
/// sessions: only Gantry's own user may enter it (0700).
pub fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// The SQLite file and its journal files: 0600.
pub fn make_database_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_missing_directory_but_not_its_parents() {
        let root = tempfile::tempdir().expect("tempdir");
        let fresh = root.path().join("data");
        DataDir::open(&fresh).expect("creates the directory");
        assert!(fresh.is_dir());

        let deep = root.path().join("no/such/parent/data");
        let error = DataDir::open(&deep).expect_err("refuses a missing parent");
        assert!(
            matches!(error, DataDirError::MissingParent { .. }),
            "{error}"
        );
        assert!(!root.path().join("no").exists(), "nothing half-created");
    }

    #[test]
    fn the_data_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let fresh = root.path().join("data");
        std::fs::create_dir(&fresh).expect("mkdir");
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        DataDir::open(&fresh).expect("opens");
        let mode = std::fs::metadata(&fresh)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "an existing directory is tightened too"
        );
    }

    #[test]
    fn a_file_is_not_a_data_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("data");
        std::fs::write(&file, "x").expect("write");
        let error = DataDir::open(&file).expect_err("a file is refused");
        assert_eq!(
            error.to_string(),
            format!("data directory {} is not a directory", file.display())
        );
    }

    #[test]
    fn a_second_process_on_the_same_directory_is_refused_until_the_first_stops() {
        let root = tempfile::tempdir().expect("tempdir");
        let first = DataDir::open(root.path()).expect("first opens");
        let error = DataDir::open(root.path()).expect_err("second is refused");
        assert!(matches!(error, DataDirError::Locked { .. }), "{error}");
        drop(first);
        DataDir::open(root.path()).expect("free again after the first stops");
    }
}
