//! Dependency caches: folders of the checkout a step names in `cache:`
//! (`node_modules`, `.cargo-home`, `vendor/bundle`), kept between runs of
//! one app — opt-in, per app, never shared across apps. Before the step
//! they are put back into the checkout (where it does not have them), after
//! it succeeded they are kept again, the same for a local step and a build
//! pod (whose checkout goes through Gantry anyway).
//!
//! A cache is written by its own branch only and read by that branch or,
//! while it has none, the app's first branch (so a new branch starts warm,
//! and cannot poison what the others read). A fork's build reads and writes
//! none. What comes back is the app's code's: it is unpacked as an uploaded
//! checkout is (nothing outside, no links out), a folder on the way that is
//! a link is refused both ways, and a cache larger than the export limit is
//! not kept. Each app's caches together stay under twice that limit: the
//! least recently used go first. Caches live in the replica's data
//! directory: another replica starts cold.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::archive;
use crate::git::ExportLimits;

/// Why a cache was not used or kept (the step goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{0} is not a folder of the checkout (a folder on its way is a link)")]
    NotInside(String),
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error("more than {0} files or folders, or deeper than {1}")]
    TooMany(u64, usize),
    #[error(transparent)]
    Archive(#[from] crate::builds::BuildError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The caches of this replica (`<data>/caches/<app id>/…`).
#[derive(Clone)]
pub struct Caches {
    root: PathBuf,
    limits: ExportLimits,
}

/// Whose cache: an app's step on a branch.
#[derive(Clone, Debug)]
pub struct CacheKey {
    pub app_id: i64,
    pub branch: String,
    pub step: String,
}

/// What restoring found.
#[derive(Debug, PartialEq)]
pub enum Restored {
    /// From this branch (the key's, or the app's first).
    From { branch: String, bytes: u64 },
    /// No cache yet.
    None,
}

fn hashed(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `relative` under `checkout`, when every folder on its way that exists
/// is a real folder (not a link): None otherwise.
fn inside(checkout: &Path, relative: &str) -> Option<PathBuf> {
    let mut path = checkout.to_path_buf();
    let mut missing = false;
    for component in Path::new(relative).components() {
        let Component::Normal(part) = component else {
            return None;
        };
        path.push(part);
        // Once a folder is not there, nothing below it is either.
        if missing {
            continue;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {}
            Err(_) => missing = true,
            Ok(_) => return None,
        }
    }
    Some(path)
}

/// A writer that fails once more than `max` bytes went through.
struct Capped<W> {
    inner: W,
    written: u64,
    max: u64,
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len() as u64;
        if self.written > self.max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "over the cache's limit",
            ));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Caches {
    /// Caches within half the export `limits` (bytes and entries): a
    /// build pod's checkout, which carries them, leaves room for the rest.
    pub fn new(data_dir: &Path, limits: ExportLimits) -> Caches {
        Caches {
            root: data_dir.join("caches"),
            limits: ExportLimits {
                max_bytes: limits.max_bytes / 2,
                max_entries: limits.max_entries / 2,
                max_depth: limits.max_depth,
            },
        }
    }

    fn app_dir(&self, app_id: i64) -> PathBuf {
        self.root.join(app_id.to_string())
    }

    /// The cache of `key`'s step and folders on `branch` (other folders,
    /// another cache: what one holds is never read as another's).
    fn file(&self, key: &CacheKey, branch: &str, paths: &[String]) -> PathBuf {
        let what = format!("{}\n{}", key.step, paths.join("\n"));
        self.app_dir(key.app_id)
            .join(format!("{}-{}.tar", hashed(branch), hashed(&what)))
    }

    /// Puts the cached `paths` back into `checkout` where it has none of
    /// them, from the key's branch or else `first_branch`. `scratch` is a
    /// folder of the run's own to unpack into.
    pub fn restore(
        &self,
        key: &CacheKey,
        first_branch: Option<&str>,
        paths: &[String],
        checkout: &Path,
        scratch: &Path,
    ) -> Result<Restored, CacheError> {
        let candidates = std::iter::once(key.branch.as_str()).chain(first_branch);
        let Some((branch, file)) = candidates
            .map(|branch| (branch, self.file(key, branch, paths)))
            .find(|(_, file)| file.is_file())
        else {
            return Ok(Restored::None);
        };
        let bytes = std::fs::metadata(&file)?.len();
        // Used: the last to be evicted.
        let _ =
            std::fs::File::open(&file).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        let _ = std::fs::remove_dir_all(scratch);
        let unpacked = archive::unpack(&file, scratch, &self.limits);
        let moved = unpacked.map_err(CacheError::from).and_then(|()| {
            // Every folder checked before anything moves: all or nothing.
            let mut moves = Vec::new();
            for path in paths {
                // A link in the archive (on the way, or the folder itself)
                // would move what it points at: refused.
                let (Some(from), Some(to)) = (inside(scratch, path), inside(checkout, path)) else {
                    return Err(CacheError::NotInside(path.clone()));
                };
                let cached = std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_dir());
                if cached && std::fs::symlink_metadata(&to).is_err() {
                    moves.push((from, to));
                }
            }
            for (from, to) in moves {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::rename(&from, &to)?;
            }
            Ok(())
        });
        let _ = std::fs::remove_dir_all(scratch);
        moved?;
        Ok(Restored::From {
            branch: branch.to_string(),
            bytes,
        })
    }

    /// Keeps the checkout's `paths` as the key's cache: the bytes kept.
    pub fn save(
        &self,
        key: &CacheKey,
        paths: &[String],
        checkout: &Path,
    ) -> Result<u64, CacheError> {
        let mut folders = Vec::new();
        for path in paths {
            let Some(folder) = inside(checkout, path) else {
                return Err(CacheError::NotInside(path.clone()));
            };
            // A folder, not a link to one.
            if std::fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir()) {
                folders.push((path.as_str(), folder));
            }
        }
        let (entries, depth) = walk(&folders);
        if entries > self.limits.max_entries || depth > self.limits.max_depth {
            return Err(CacheError::TooMany(
                self.limits.max_entries,
                self.limits.max_depth,
            ));
        }
        let dir = self.app_dir(key.app_id);
        std::fs::create_dir_all(&dir)?;
        let file = self.file(key, &key.branch, paths);
        // Its own name: two runs of a branch may keep theirs at once.
        let mut unique = [0_u8; 6];
        let _ = getrandom::fill(&mut unique);
        let unique: String = unique.iter().map(|b| format!("{b:02x}")).collect();
        let partial = file.with_extension(format!("{unique}.partial"));
        let packed = std::fs::File::create(&partial).and_then(|out| {
            let capped = Capped {
                inner: std::io::BufWriter::new(out),
                written: 0,
                max: self.limits.max_bytes,
            };
            let listed: Vec<(&str, &Path)> =
                folders.iter().map(|(p, f)| (*p, f.as_path())).collect();
            archive::pack_into(&listed, capped)?.flush()
        });
        if let Err(error) = packed {
            let _ = std::fs::remove_file(&partial);
            return Err(if error.kind() == std::io::ErrorKind::FileTooLarge {
                CacheError::TooLarge(self.limits.max_bytes)
            } else {
                error.into()
            });
        }
        std::fs::rename(&partial, &file)?;
        let bytes = std::fs::metadata(&file)?.len();
        self.evict(key.app_id, &file)?;
        Ok(bytes)
    }

    /// Keeps the app's caches under twice the export limit: the least
    /// recently used go first (never `keep`, just written).
    fn evict(&self, app_id: i64, keep: &Path) -> std::io::Result<()> {
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> =
            std::fs::read_dir(self.app_dir(app_id))?
                .filter_map(Result::ok)
                // Kept caches only: another save's file in the making stays.
                .filter(|entry| entry.path().extension().is_some_and(|e| e == "tar"))
                .filter_map(|entry| {
                    let metadata = entry.metadata().ok()?;
                    Some((metadata.modified().ok()?, metadata.len(), entry.path()))
                })
                .collect();
        files.sort();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        // Twice the export limit: four caches at their largest.
        let budget = self.limits.max_bytes.saturating_mul(4);
        for (_, len, path) in files {
            if total <= budget {
                break;
            }
            if path != keep {
                std::fs::remove_file(&path)?;
                total -= len;
            }
        }
        Ok(())
    }
}

/// How many entries `folders` hold, and how deep the deepest is (as the
/// archive's paths count: the folder's own path included). Links are not
/// followed.
fn walk(folders: &[(&str, PathBuf)]) -> (u64, usize) {
    let (mut entries, mut deepest) = (0_u64, 0_usize);
    for (path, folder) in folders {
        let base = Path::new(path).components().count();
        let mut stack = vec![(folder.clone(), base)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(read) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in read.filter_map(Result::ok) {
                entries += 1;
                deepest = deepest.max(depth + 1);
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((entry.path(), depth + 1));
                }
            }
        }
    }
    (entries, deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(branch: &str) -> CacheKey {
        CacheKey {
            app_id: 7,
            branch: branch.into(),
            step: "build".into(),
        }
    }

    fn caches(data: &Path, max_bytes: u64) -> Caches {
        Caches::new(
            data,
            ExportLimits {
                max_bytes,
                ..ExportLimits::default()
            },
        )
    }

    #[test]
    fn a_cache_comes_back_where_the_checkout_has_none_and_never_over_what_it_has() {
        let data = tempfile::tempdir().unwrap();
        let caches = caches(data.path(), 1 << 20);
        let first = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(first.path().join("node_modules/left-pad")).unwrap();
        std::fs::write(first.path().join("node_modules/left-pad/index.js"), "pad").unwrap();
        std::fs::create_dir_all(first.path().join("vendor")).unwrap();
        std::fs::write(first.path().join("vendor/lib"), "cached").unwrap();
        std::fs::create_dir_all(first.path().join(".tools/cargo/registry")).unwrap();
        std::fs::write(first.path().join(".tools/cargo/registry/index"), "crates").unwrap();
        let paths = [
            "node_modules".to_string(),
            "vendor".to_string(),
            ".tools/cargo".to_string(),
        ];
        assert!(caches.save(&key("main"), &paths, first.path()).unwrap() > 0);

        let next = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(next.path().join("vendor")).unwrap();
        std::fs::write(next.path().join("vendor/lib"), "committed").unwrap();
        let scratch = next.path().join(".scratch");
        let restored = caches
            .restore(&key("main"), None, &paths, next.path(), &scratch)
            .unwrap();
        assert!(matches!(restored, Restored::From { ref branch, .. } if branch == "main"));
        let read = |p: &str| std::fs::read_to_string(next.path().join(p)).unwrap();
        assert_eq!(read("node_modules/left-pad/index.js"), "pad");
        assert_eq!(read("vendor/lib"), "committed");
        assert_eq!(read(".tools/cargo/registry/index"), "crates");
        assert!(!scratch.exists());
    }

    #[test]
    fn a_branch_reads_the_first_branchs_cache_until_it_has_its_own_and_another_app_none() {
        let data = tempfile::tempdir().unwrap();
        let caches = caches(data.path(), 1 << 20);
        let built = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(built.path().join("deps")).unwrap();
        std::fs::write(built.path().join("deps/a"), "from latest").unwrap();
        let paths = ["deps".to_string()];
        caches.save(&key("latest"), &paths, built.path()).unwrap();
        let fresh = || tempfile::tempdir().unwrap();

        let feature = fresh();
        let scratch = feature.path().join(".s");
        let restored = caches
            .restore(
                &key("feature/x"),
                Some("latest"),
                &paths,
                feature.path(),
                &scratch,
            )
            .unwrap();
        assert!(matches!(restored, Restored::From { ref branch, .. } if branch == "latest"));

        let other_app = CacheKey {
            app_id: 8,
            ..key("latest")
        };
        let elsewhere = fresh();
        let scratch = elsewhere.path().join(".s");
        assert_eq!(
            caches
                .restore(
                    &other_app,
                    Some("latest"),
                    &paths,
                    elsewhere.path(),
                    &scratch
                )
                .unwrap(),
            Restored::None
        );
        assert!(!elsewhere.path().join("deps").exists());
    }

    #[test]
    fn a_folder_on_the_way_that_is_a_link_is_refused_both_ways() {
        let data = tempfile::tempdir().unwrap();
        let caches = caches(data.path(), 1 << 20);
        let secret = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(secret.path().join("bundle")).unwrap();
        std::fs::write(secret.path().join("bundle/key"), "host secret").unwrap();
        let checkout = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(secret.path(), checkout.path().join("vendor")).unwrap();
        let paths = ["vendor/bundle".to_string()];
        // Saving would read the host's folder through the link.
        assert!(matches!(
            caches.save(&key("main"), &paths, checkout.path()),
            Err(CacheError::NotInside(_))
        ));
        // The cached folder itself a link: refused too.
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(secret.path(), linked.path().join("deps")).unwrap();
        assert!(matches!(
            caches.save(&key("main"), &["deps".to_string()], linked.path()),
            Err(CacheError::NotInside(_))
        ));
        // Restoring would write through the link into the host's folder.
        let clean = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(clean.path().join("vendor/bundle")).unwrap();
        std::fs::write(clean.path().join("vendor/bundle/gem"), "cached").unwrap();
        caches.save(&key("main"), &paths, clean.path()).unwrap();
        let restoring = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(secret.path(), restoring.path().join("vendor")).unwrap();
        let scratch = restoring.path().join(".s");
        assert!(matches!(
            caches.restore(&key("main"), None, &paths, restoring.path(), &scratch),
            Err(CacheError::NotInside(_))
        ));
        assert_eq!(
            std::fs::read_dir(secret.path().join("bundle"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn a_cache_over_the_limit_is_not_kept_and_old_ones_go_first() {
        let data = tempfile::tempdir().unwrap();
        // Caches of at most 64 KiB, 256 KiB for the app.
        let caches = caches(data.path(), 128 * 1024);
        let big = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(big.path().join("deps")).unwrap();
        std::fs::write(big.path().join("deps/blob"), vec![7_u8; 100 * 1024]).unwrap();
        let paths = ["deps".to_string()];
        assert!(matches!(
            caches.save(&key("main"), &paths, big.path()),
            Err(CacheError::TooLarge(_))
        ));
        assert_eq!(
            std::fs::read_dir(data.path().join("caches/7"))
                .unwrap()
                .count(),
            0
        );

        // Archives of ≈ 61.5 KiB: four fit, the least recently used go.
        let medium = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(medium.path().join("deps")).unwrap();
        std::fs::write(medium.path().join("deps/blob"), vec![7_u8; 60 * 1024]).unwrap();
        let branches = ["a", "b", "c", "d", "e", "f"];
        for (age, branch) in branches.iter().enumerate() {
            caches.save(&key(branch), &paths, medium.path()).unwrap();
            // Distinct times of use, oldest first.
            let file = caches.file(&key(branch), branch, &paths);
            let at = std::time::SystemTime::now()
                - std::time::Duration::from_secs(1000 - 100 * age as u64);
            std::fs::File::open(&file)
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
        let left: Vec<bool> = branches
            .iter()
            .map(|b| caches.file(&key(b), b, &paths).exists())
            .collect();
        assert_eq!(left, [false, false, true, true, true, true]);
    }

    #[test]
    fn too_many_files_are_not_kept_and_other_folders_are_another_cache() {
        let data = tempfile::tempdir().unwrap();
        let caches = Caches::new(
            data.path(),
            ExportLimits {
                max_entries: 20,
                ..ExportLimits::default()
            },
        );
        let many = tempfile::tempdir().unwrap();
        for n in 0..11 {
            std::fs::create_dir_all(many.path().join("deps")).unwrap();
            std::fs::write(many.path().join(format!("deps/{n}")), "x").unwrap();
        }
        let paths = ["deps".to_string()];
        assert!(matches!(
            caches.save(&key("main"), &paths, many.path()),
            Err(CacheError::TooMany(10, _))
        ));
        std::fs::remove_file(many.path().join("deps/10")).unwrap();
        caches.save(&key("main"), &paths, many.path()).unwrap();
        let next = tempfile::tempdir().unwrap();
        let scratch = next.path().join(".s");
        let other = ["deps".to_string(), "more".to_string()];
        assert_eq!(
            caches
                .restore(&key("main"), None, &other, next.path(), &scratch)
                .unwrap(),
            Restored::None
        );
    }

    #[test]
    fn a_cached_link_is_never_followed_when_restoring() {
        let data = tempfile::tempdir().unwrap();
        let caches = caches(data.path(), 1 << 20);
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(host.path().join("private")).unwrap();
        std::fs::write(host.path().join("private/key"), "host").unwrap();
        // A step leaves `deps/x` pointing at a host folder.
        let built = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(built.path().join("deps")).unwrap();
        std::os::unix::fs::symlink(host.path(), built.path().join("deps/x")).unwrap();
        let paths = ["deps".to_string()];
        caches.save(&key("main"), &paths, built.path()).unwrap();
        // Restored as the link it was, inside the checkout.
        let next = tempfile::tempdir().unwrap();
        let scratch = next.path().join(".s");
        caches
            .restore(&key("main"), None, &paths, next.path(), &scratch)
            .unwrap();
        assert!(
            std::fs::symlink_metadata(next.path().join("deps/x"))
                .unwrap()
                .is_symlink()
        );
        assert!(host.path().join("private/key").exists());
    }
}
