//! A build pod's workspace, carried as a tar archive over one-time URLs:
//! Gantry packs the run's checkout and what the step may see of its
//! pipeline folder; the pod's `fetch` container downloads it once; the
//! pod's `collect` container uploads the checkout back once the step has
//! run. No repository credential ever reaches the pod, and a URL is good
//! for one use, by one step of one attempt of one run, until that step ends.
//!
//! What comes back was written by the step (an attacker's code, maybe): it
//! is unpacked with the export limits, regular files, folders and symbolic
//! links only, never through a link, never outside the checkout.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::BuildError;
use crate::git::ExportLimits;

/// What a ticket opens.
#[derive(Debug)]
enum Door {
    /// Downloading this archive.
    Fetch(PathBuf),
    /// Uploading the checkout into this file, and saying so.
    Upload(PathBuf, Option<oneshot::Sender<()>>),
}

#[derive(Debug)]
struct Ticket {
    run_id: i64,
    step_id: i64,
    door: Door,
}

/// The tickets a replica has issued, by token. In memory: a build pod
/// reaches the replica that runs its step (`builds.callback_url`).
#[derive(Debug, Default)]
pub struct Archives {
    tickets: Mutex<HashMap<String, Ticket>>,
}

/// Why a ticket is refused: always "not found" to the caller.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("no such workspace")]
pub struct NoTicket;

/// An upload's file, once the pod has sent it.
pub struct Uploaded(oneshot::Receiver<()>);

impl Uploaded {
    /// Waits for the upload; false when its ticket went unused.
    pub async fn wait(self) -> bool {
        self.0.await.is_ok()
    }
}

impl Archives {
    /// A one-time token to download `archive` for `step_id` of `run_id`.
    pub fn fetch(&self, run_id: i64, step_id: i64, archive: PathBuf) -> std::io::Result<String> {
        self.issue(run_id, step_id, Door::Fetch(archive))
    }

    /// A one-time token to upload the checkout into `into`.
    pub fn upload(
        &self,
        run_id: i64,
        step_id: i64,
        into: PathBuf,
    ) -> std::io::Result<(String, Uploaded)> {
        let (done, uploaded) = oneshot::channel();
        let token = self.issue(run_id, step_id, Door::Upload(into, Some(done)))?;
        Ok((token, Uploaded(uploaded)))
    }

    fn issue(&self, run_id: i64, step_id: i64, door: Door) -> std::io::Result<String> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        lock(&self.tickets).insert(
            token.clone(),
            Ticket {
                run_id,
                step_id,
                door,
            },
        );
        Ok(token)
    }

    /// Uses a download ticket: the archive to send. Another run's or
    /// step's, used, or revoked: refused.
    pub fn take_fetch(&self, run_id: i64, step_id: i64, token: &str) -> Result<PathBuf, NoTicket> {
        let mut tickets = lock(&self.tickets);
        match tickets.get(token) {
            Some(t) if t.run_id == run_id && t.step_id == step_id => {}
            _ => return Err(NoTicket),
        }
        match tickets.remove(token).map(|t| t.door) {
            Some(Door::Fetch(path)) => Ok(path),
            Some(door) => {
                tickets.insert(
                    token.to_string(),
                    Ticket {
                        run_id,
                        step_id,
                        door,
                    },
                );
                Err(NoTicket)
            }
            None => Err(NoTicket),
        }
    }

    /// Uses an upload ticket: where to write, and what to tell once written.
    pub fn take_upload(
        &self,
        run_id: i64,
        step_id: i64,
        token: &str,
    ) -> Result<(PathBuf, oneshot::Sender<()>), NoTicket> {
        let mut tickets = lock(&self.tickets);
        let Some(ticket) = tickets.get_mut(token) else {
            return Err(NoTicket);
        };
        if ticket.run_id != run_id || ticket.step_id != step_id {
            return Err(NoTicket);
        }
        let Door::Upload(path, done) = &mut ticket.door else {
            return Err(NoTicket);
        };
        let (path, done) = (path.clone(), done.take().ok_or(NoTicket)?);
        tickets.remove(token);
        Ok((path, done))
    }

    /// Gives an upload ticket back after an upload that broke off (the pod
    /// offers the checkout again), while its step still waits for it.
    pub fn give_back(
        &self,
        (run_id, step_id): (i64, i64),
        token: &str,
        path: PathBuf,
        done: oneshot::Sender<()>,
    ) {
        if done.is_closed() {
            return;
        }
        lock(&self.tickets).insert(
            token.to_string(),
            Ticket {
                run_id,
                step_id,
                door: Door::Upload(path, Some(done)),
            },
        );
    }

    /// Revokes what a step's tickets still open (the step ended).
    pub fn revoke_step(&self, step_id: i64) {
        lock(&self.tickets).retain(|_, t| t.step_id != step_id);
    }

    /// Revokes every ticket of a run (the run ended).
    pub fn revoke_run(&self, run_id: i64) {
        lock(&self.tickets).retain(|_, t| t.run_id != run_id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Packs `folders` (archive prefix, folder) into a tar file at `into`.
pub fn pack(folders: &[(&str, &Path)], into: &Path) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(into)?);
    pack_into(folders, file)?.flush()
}

/// Packs `folders` (archive prefix, folder) as a tar stream into `out`:
/// regular files, folders and symbolic links (as links, never followed);
/// anything else a step left (a FIFO, a socket) is skipped. The folders
/// themselves are not entries (their contents are): unpacking never
/// touches the folder it unpacks into.
pub fn pack_into<W: Write>(folders: &[(&str, &Path)], out: W) -> std::io::Result<W> {
    pack_with_files(folders, &[], out)
}

/// [`pack_into`], with `files` (archive name, path) after the folders: a
/// regular file with its content, a link as a link and a folder as an
/// empty folder (never what a link points at), so the reader refuses what
/// is not a file as it would at home; anything else is left out.
pub fn pack_with_files<W: Write>(
    folders: &[(&str, &Path)],
    files: &[(&str, &Path)],
    out: W,
) -> std::io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    for (prefix, folder) in folders {
        if !folder.is_dir() {
            continue;
        }
        let mut stack = vec![PathBuf::new()];
        while let Some(relative) = stack.pop() {
            let path = folder.join(&relative);
            let metadata = std::fs::symlink_metadata(&path)?;
            let name = Path::new(prefix).join(&relative);
            let kind = metadata.file_type();
            if kind.is_dir() {
                if !relative.as_os_str().is_empty() {
                    builder.append_dir(&name, &path)?;
                }
                let mut children: Vec<_> = std::fs::read_dir(&path)?
                    .filter_map(Result::ok)
                    .map(|e| relative.join(e.file_name()))
                    .collect();
                children.sort();
                children.reverse();
                stack.extend(children);
            } else if kind.is_file() || kind.is_symlink() {
                builder.append_path_with_name(&path, &name)?;
            }
        }
    }
    for (name, path) in files {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() || m.is_symlink() => builder.append_path_with_name(path, name)?,
            Ok(m) if m.is_dir() => builder.append_dir(name, path)?,
            _ => {}
        }
    }
    builder.into_inner()
}

/// Unpacks an uploaded checkout into `dest` (a new, empty folder), within
/// `limits`. Refuses links out of it, hard links, devices and FIFOs, paths
/// with `..` or a root, and an archive larger or deeper than the limits.
pub fn unpack(archive: &Path, dest: &Path, limits: &ExportLimits) -> Result<(), BuildError> {
    let refuse = |why: String| BuildError::Workspace(why);
    // A path named in a refusal is the step's: quoted, and cut short.
    let shown = |path: &Path| {
        let text = format!("{:?}", path.display().to_string());
        match text.char_indices().nth(200) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text,
        }
    };
    std::fs::create_dir_all(dest)?;
    check_headers(archive)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(archive)?));
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let (mut bytes, mut entries) = (0_u64, 0_u64);
    for entry in archive
        .entries()
        .map_err(|e| refuse(format!("not a tar archive: {e}")))?
    {
        let mut entry = entry.map_err(|e| refuse(format!("a broken archive: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| refuse(format!("a bad path: {e}")))?
            .into_owned();
        entries += 1;
        bytes += entry.size();
        if entries > limits.max_entries || bytes > limits.max_bytes {
            return Err(refuse(format!(
                "the workspace is larger than {} files or {} bytes",
                limits.max_entries, limits.max_bytes
            )));
        }
        let plain = path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain || path.components().count() > limits.max_depth {
            return Err(refuse(format!(
                "{} is not a path inside the checkout",
                shown(&path)
            )));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            // A hard link, device, FIFO or the like: never recreated.
            continue;
        }
        // unpack_in checks that no folder on the way is a link out of dest.
        let inside = entry
            .unpack_in(dest)
            .map_err(|e| refuse(format!("{} cannot be written: {e}", shown(&path))))?;
        if !inside {
            return Err(refuse(format!("{} is outside the checkout", shown(&path))));
        }
    }
    writable(dest)?;
    Ok(())
}

/// Gives every folder of `dir` its owner's full access back (a step may
/// send a folder as 0555): the workspace is always Gantry's to write and
/// delete, as root or not. Links are not followed.
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let metadata = std::fs::symlink_metadata(&dir)?;
        if !metadata.is_dir() {
            continue;
        }
        let mode = metadata.permissions().mode();
        if mode & 0o700 != 0o700 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700))?;
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// The largest extended header (PAX `x`/`g`, GNU long name `L` or long
/// link `K`) an upload may hold: tar readers read these whole into memory.
const MAX_EXTENDED_HEADER: u64 = 64 * 1024;

/// Walks the archive's raw 512-byte headers before anything is read into
/// memory: an extended header larger than [`MAX_EXTENDED_HEADER`] is
/// refused (a real checkout's paths are short), as is a header that
/// cannot be read.
fn check_headers(archive: &Path) -> Result<(), BuildError> {
    let broken = |why: String| BuildError::Workspace(why);
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(archive)?;
    let mut header = [0_u8; 512];
    loop {
        match file.read_exact(&mut header) {
            Ok(()) => {}
            // The end, with or without the two zero blocks.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(broken(format!("a broken archive: {e}"))),
        }
        if header.iter().all(|b| *b == 0) {
            return Ok(());
        }
        let size = header_size(&header[124..136])
            .ok_or_else(|| broken("a broken archive: a header's size is not a number".into()))?;
        if matches!(header[156], b'x' | b'g' | b'L' | b'K') && size > MAX_EXTENDED_HEADER {
            return Err(broken(format!(
                "an extended tar header of {size} bytes (at most {MAX_EXTENDED_HEADER})"
            )));
        }
        let skip = i64::try_from(size.div_ceil(512) * 512)
            .map_err(|_| broken("a broken archive: a size too large".into()))?;
        file.seek(SeekFrom::Current(skip))?;
    }
}

/// A tar header's size field: octal, or base-256 with its high bit set.
fn header_size(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*byte))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ExportLimits {
        ExportLimits {
            max_bytes: 1 << 20,
            max_entries: 100,
            max_depth: 16,
        }
    }

    #[test]
    fn a_checkout_packs_and_unpacks_with_its_links_as_links() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("src")).unwrap();
        std::fs::write(app.join("src/main.rs"), "fn main() {}").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", app.join("passwd")).unwrap();
        nix::unistd::mkfifo(&app.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let tar = dir.path().join("a.tar");
        pack(&[("", &app)], &tar).unwrap();
        let out = dir.path().join("out");
        unpack(&tar, &out, &limits()).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("src/main.rs")).unwrap(),
            "fn main() {}"
        );
        assert_eq!(
            std::fs::read_link(out.join("passwd")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(!out.join("fifo").exists(), "a FIFO is not packed");
    }

    /// An archive as an attacker writes it, entry by raw entry.
    fn hostile(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, content) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if kind.is_symlink() || *kind == tar::EntryType::Link {
                header.set_size(0);
                header.set_link_name(content).unwrap();
            } else {
                header.set_size(content.len() as u64);
            }
            // Raw name bytes: the builder's own checks would refuse `..`.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            let data: &[u8] = if kind.is_symlink() || *kind == tar::EntryType::Link {
                &[]
            } else {
                content.as_bytes()
            };
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn an_upload_cannot_write_outside_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "dot-dot",
                hostile(&[("../escaped", tar::EntryType::Regular, "x")]),
            ),
            (
                "absolute",
                hostile(&[("/tmp/escaped-abs", tar::EntryType::Regular, "x")]),
            ),
            (
                "through a link",
                hostile(&[
                    ("out", tar::EntryType::Symlink, outside.to_str().unwrap()),
                    ("out/escaped", tar::EntryType::Regular, "x"),
                ]),
            ),
        ];
        for (name, bytes) in cases {
            let tar = dir.path().join(format!("{name}.tar"));
            std::fs::write(&tar, bytes).unwrap();
            let dest = dir.path().join(format!("dest-{name}"));
            let result = unpack(&tar, &dest, &limits());
            assert!(result.is_err(), "{name}: {result:?}");
            assert!(!outside.join("escaped").exists(), "{name}");
            assert!(!dir.path().join("escaped").exists(), "{name}");
        }
        assert!(!Path::new("/tmp/escaped-abs").exists());
        // A hard link to a file Gantry can read is not recreated.
        let tar = dir.path().join("hard.tar");
        std::fs::write(
            &tar,
            hostile(&[("shadow", tar::EntryType::Link, "/etc/shadow")]),
        )
        .unwrap();
        let dest = dir.path().join("dest-hard");
        unpack(&tar, &dest, &limits()).unwrap();
        assert!(!dest.join("shadow").exists());
        // A folder sent read-only is Gantry's to delete all the same.
        let tar = dir.path().join("locked.tar");
        std::fs::write(
            &tar,
            hostile(&[
                ("d/x", tar::EntryType::Regular, "x"),
                ("d", tar::EntryType::Directory, ""),
            ]),
        )
        .unwrap();
        let dest = dir.path().join("dest-locked");
        unpack(&tar, &dest, &limits()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dest.join("d"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o700, 0o700, "{mode:o}");
        std::fs::remove_dir_all(&dest).expect("removable");
    }

    #[test]
    fn a_huge_extended_header_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let long = "a/".repeat(100_000);
        // A PAX header carrying a 200 kB path.
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("path", long.as_bytes())])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(1);
        header.set_path("x").unwrap();
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        let tar = dir.path().join("pax.tar");
        std::fs::write(&tar, builder.into_inner().unwrap()).unwrap();
        let error = unpack(&tar, &dir.path().join("d"), &limits()).unwrap_err();
        assert!(error.to_string().contains("extended tar header"), "{error}");
        // An ordinary archive passes the walk.
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("src")).unwrap();
        std::fs::write(app.join("src/a.rs"), "x".repeat(1000)).unwrap();
        let plain = dir.path().join("plain.tar");
        pack(&[("", &app)], &plain).unwrap();
        assert!(check_headers(&plain).is_ok());
    }

    #[test]
    fn an_upload_over_the_limits_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(2 << 20);
        let tar = dir.path().join("big.tar");
        std::fs::write(&tar, hostile(&[("big", tar::EntryType::Regular, &big)])).unwrap();
        let error = unpack(&tar, &dir.path().join("d"), &limits()).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    #[test]
    fn a_ticket_opens_once_for_its_own_run_and_step() {
        let archives = Archives::default();
        let token = archives.fetch(7, 70, PathBuf::from("/a.tar")).unwrap();
        assert_eq!(
            archives.take_fetch(8, 70, &token),
            Err(NoTicket),
            "another run"
        );
        assert_eq!(
            archives.take_fetch(7, 71, &token),
            Err(NoTicket),
            "another step"
        );
        assert!(
            archives.take_upload(7, 70, &token).is_err(),
            "not an upload ticket"
        );
        assert_eq!(
            archives.take_fetch(7, 70, &token),
            Ok(PathBuf::from("/a.tar"))
        );
        assert_eq!(
            archives.take_fetch(7, 70, &token),
            Err(NoTicket),
            "replayed"
        );
        let (token, _uploaded) = archives.upload(7, 70, PathBuf::from("/up.tar")).unwrap();
        archives.revoke_run(7);
        assert!(
            archives.take_upload(7, 70, &token).is_err(),
            "after its run"
        );
    }
}
