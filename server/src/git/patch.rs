//! What a change does to each file, line by line: the diff a reviewer
//! reads on a change request, from where the change left its target (the
//! merge base) to its head. Bounded — files, the size of a file diffed,
//! lines per file, lines in all, characters per line — so a huge or
//! hostile change can make neither a page heavy nor the git workers busy:
//! once the lines in all are spent, later files are listed unread. What is
//! cut off says so.

use git2::{DiffOptions, Repository};

use super::{GitError, GitStore, commit_of};

/// How much of a diff to keep.
#[derive(Clone, Copy, Debug)]
pub struct PatchLimits {
    pub files: usize,
    pub lines_per_file: usize,
    pub lines: usize,
    pub line_chars: usize,
    /// A file bigger than this (either side) is treated as binary: named,
    /// never read line by line.
    pub file_bytes: u64,
}

impl Default for PatchLimits {
    fn default() -> Self {
        PatchLimits {
            files: 100,
            lines_per_file: 400,
            lines: 1_000,
            line_chars: 300,
            file_bytes: 512 * 1024,
        }
    }
}

/// One file's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePatch {
    pub path: String,
    /// added, modified, deleted, renamed, …
    pub status: String,
    /// Lines added and removed (`None`: not read — lines not asked for,
    /// or the limits were spent before this file).
    pub additions: Option<usize>,
    pub deletions: Option<usize>,
    pub binary: bool,
    /// Each line starts with its kind: `@` a hunk header, `+` added, `-`
    /// removed, ` ` context.
    pub lines: Vec<String>,
    /// Lines were left out (the limits).
    pub truncated: bool,
}

/// A change's files, and whether more files were left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patches {
    pub files: Vec<FilePatch>,
    pub more_files: bool,
}

impl GitStore {
    /// The diff from the merge base of `base` and `head` to `head`: what
    /// `head` changes, not what `base` gained since. Without `lines`, only
    /// the files' names and statuses (no file is read).
    pub async fn patches(
        &self,
        url: &str,
        base: &str,
        head: &str,
        limits: PatchLimits,
        lines: bool,
    ) -> Result<Patches, GitError> {
        let (base, head) = (base.to_string(), head.to_string());
        self.with_mirror(url, move |path| {
            let repo = Repository::open_bare(path)?;
            let head = commit_of(&repo, &head)?;
            let base = commit_of(&repo, &base)?;
            let fork = repo.merge_base(base.id(), head.id())?;
            let old = repo.find_commit(fork)?.tree()?;
            let mut options = DiffOptions::new();
            options
                .context_lines(3)
                .max_size(i64::try_from(limits.file_bytes).unwrap_or(i64::MAX));
            let mut diff =
                repo.diff_tree_to_tree(Some(&old), Some(&head.tree()?), Some(&mut options))?;
            if lines {
                // Rename detection compares contents: bounded like the rest.
                let mut find = git2::DiffFindOptions::new();
                find.renames(true).rename_limit(100);
                diff.find_similar(Some(&mut find))?;
            }
            Ok(collect(&diff, limits, lines)?)
        })
        .await
    }
}

fn collect(
    diff: &git2::Diff<'_>,
    limits: PatchLimits,
    lines: bool,
) -> Result<Patches, git2::Error> {
    let deltas = diff.deltas().len();
    let mut patches = Patches {
        files: Vec::new(),
        more_files: deltas > limits.files,
    };
    let mut kept = 0usize;
    for index in 0..deltas.min(limits.files) {
        let Some(delta) = diff.get_delta(index) else {
            continue;
        };
        let file = delta.new_file().path().or_else(|| delta.old_file().path());
        let mut out = FilePatch {
            path: file.map(|p| p.display().to_string()).unwrap_or_default(),
            status: format!("{:?}", delta.status()).to_lowercase(),
            additions: None,
            deletions: None,
            binary: delta.flags().is_binary(),
            lines: Vec::new(),
            truncated: false,
        };
        if !lines {
            patches.files.push(out);
            continue;
        }
        if kept >= limits.lines {
            // The budget is spent: list the file without reading it.
            out.truncated = true;
            patches.files.push(out);
            continue;
        }
        if let Some(patch) = git2::Patch::from_diff(diff, index)? {
            let (_, additions, deletions) = patch.line_stats()?;
            out.additions = Some(additions);
            out.deletions = Some(deletions);
            out.binary |= patch.delta().flags().is_binary();
            for hunk_index in 0..patch.num_hunks() {
                let (hunk, lines) = patch.hunk(hunk_index)?;
                let header = String::from_utf8_lossy(hunk.header()).into_owned();
                if !keep(&mut out, &mut kept, limits, header) {
                    break;
                }
                for line_index in 0..lines {
                    let line = patch.line_in_hunk(hunk_index, line_index)?;
                    let kind = match line.origin() {
                        kind @ ('+' | '-' | ' ') => kind,
                        // "No newline at end of file" and the like.
                        _ => continue,
                    };
                    let text = String::from_utf8_lossy(line.content());
                    if !keep(&mut out, &mut kept, limits, format!("{kind}{text}")) {
                        break;
                    }
                }
                if out.truncated {
                    break;
                }
            }
        }
        patches.files.push(out);
    }
    Ok(patches)
}

/// Adds one line to `file` within the limits (cut to `line_chars`); false
/// once a limit is reached (the file is marked truncated).
fn keep(file: &mut FilePatch, kept: &mut usize, limits: PatchLimits, line: String) -> bool {
    if file.lines.len() >= limits.lines_per_file || *kept >= limits.lines {
        file.truncated = true;
        return false;
    }
    let line = line.trim_end_matches(['\n', '\r']);
    let mut shown: String = line.chars().take(limits.line_chars + 1).collect();
    if shown.len() < line.len() {
        shown.push('…');
    }
    file.lines.push(shown);
    *kept += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        (dir, repo)
    }

    fn commit(repo: &Repository, parent: Option<git2::Oid>, files: &[(&str, &[u8])]) -> git2::Oid {
        let mut builder = repo.treebuilder(None).unwrap();
        for (name, content) in files {
            let blob = repo.blob(content).unwrap();
            builder.insert(name, blob, 0o100644).unwrap();
        }
        let tree = repo.find_tree(builder.write().unwrap()).unwrap();
        let who = git2::Signature::now("t", "t@example.com").unwrap();
        let parents: Vec<git2::Commit<'_>> = parent
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(None, &who, &who, "c", &tree, &refs).unwrap()
    }

    fn between(repo: &Repository, old: git2::Oid, new: git2::Oid, limits: PatchLimits) -> Patches {
        let old = repo.find_commit(old).and_then(|c| c.tree()).unwrap();
        let new = repo.find_commit(new).and_then(|c| c.tree()).unwrap();
        let mut options = DiffOptions::new();
        options.max_size(i64::try_from(limits.file_bytes).unwrap());
        let diff = repo
            .diff_tree_to_tree(Some(&old), Some(&new), Some(&mut options))
            .unwrap();
        collect(&diff, limits, true).unwrap()
    }

    fn limits(files: usize, lines: usize) -> PatchLimits {
        PatchLimits {
            files,
            lines_per_file: 10,
            lines,
            line_chars: 20,
            file_bytes: 1024,
        }
    }

    #[test]
    fn each_file_has_its_lines_and_counts() {
        let (_dir, repo) = repo();
        let base = commit(
            &repo,
            None,
            &[("app.py", b"a\nb\nc\n"), ("logo.png", b"\x89PNG\0\0\x01")],
        );
        let head = commit(
            &repo,
            Some(base),
            &[
                ("app.py", b"a\nB\nc\nd\n"),
                ("logo.png", b"\x89PNG\0\0\x02"),
                ("new.txt", b"hi\n"),
            ],
        );
        let patches = between(&repo, base, head, PatchLimits::default());
        assert!(!patches.more_files);
        let app = &patches.files[0];
        assert_eq!(
            (app.path.as_str(), app.status.as_str()),
            ("app.py", "modified")
        );
        assert_eq!((app.additions, app.deletions), (Some(2), Some(1)));
        assert!(
            app.lines[0].starts_with("@@ -1,3 +1,4 @@"),
            "{:?}",
            app.lines
        );
        assert_eq!(&app.lines[1..], [" a", "-b", "+B", " c", "+d"]);
        let logo = &patches.files[1];
        assert!(logo.binary && logo.lines.is_empty(), "{logo:?}");
        assert_eq!(patches.files[2].status, "added");
    }

    #[test]
    fn limits_cut_lines_files_long_lines_and_big_files() {
        let (_dir, repo) = repo();
        let base = commit(&repo, None, &[("a", b"x\n"), ("b", b"x\n")]);
        let long = format!("{}\n", "y".repeat(50));
        let many: String = (0..30).map(|n| format!("{n}\n")).collect();
        let head = commit(
            &repo,
            Some(base),
            &[("a", many.as_bytes()), ("b", long.as_bytes())],
        );

        let cut = between(&repo, base, head, limits(1, 100));
        assert!(cut.more_files, "a second file was left out");
        assert_eq!(cut.files.len(), 1);
        assert_eq!(cut.files[0].lines.len(), 10);
        assert!(cut.files[0].truncated);
        assert_eq!(
            cut.files[0].additions,
            Some(30),
            "counts are of the whole file"
        );

        let lines = &between(&repo, base, head, limits(5, 100)).files[1].lines;
        let added = lines
            .iter()
            .find(|l| l.starts_with('+'))
            .cloned()
            .unwrap_or_default();
        assert_eq!(added, format!("+{}…", "y".repeat(20)));

        // Once the lines in all are spent, later files are listed unread.
        let spent = between(&repo, base, head, limits(5, 10));
        assert_eq!(spent.files.len(), 2);
        assert!(spent.files[1].lines.is_empty() && spent.files[1].truncated);
        assert_eq!(spent.files[1].additions, None, "not read");

        // A file past the size limit is named, never read.
        let small = PatchLimits {
            file_bytes: 16,
            ..limits(5, 100)
        };
        let big = between(&repo, base, head, small);
        assert!(
            big.files[1].binary && big.files[1].lines.is_empty(),
            "{:?}",
            big.files[1]
        );
    }
}
