//! `$GANTRY_OUTPUTS`: what a step declares it built — an image with its
//! digest, a file with its checksum — as `name=value` lines or one JSON
//! object of strings. Read after the step (never following a link: the
//! file is the step's), within bounds, and kept with the run; a later
//! step's value of a name wins.

use std::io::Read;
use std::path::Path;

use crate::error::Rejected;

/// The largest outputs file read.
pub const MAX_BYTES: u64 = 64 * 1024;
/// How many names one step may declare.
pub const MAX_OUTPUTS: usize = 100;
/// The longest value.
pub const MAX_VALUE: usize = 4096;

/// Why a step's outputs were refused (the step fails with it).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum OutputsError {
    #[error("$GANTRY_OUTPUTS is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("$GANTRY_OUTPUTS declares more than {MAX_OUTPUTS} outputs")]
    TooMany,
    #[error("$GANTRY_OUTPUTS is not a regular file (a link or a folder)")]
    NotAFile,
    #[error("$GANTRY_OUTPUTS line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("$GANTRY_OUTPUTS is not a JSON object of strings: {0}")]
    Json(String),
    #[error("$GANTRY_OUTPUTS cannot be read: {0}")]
    Io(String),
    #[error("$GANTRY_OUTPUTS names an output with a secret in its name")]
    SecretName,
    #[error(
        "$GANTRY_OUTPUTS declares `image`, which is the image step's: the run's image is the digest it pushed"
    )]
    ImageIsBuilt,
}

fn check_name(name: &str) -> Result<(), Rejected> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an output name: a letter or `_`, then letters, digits, `_`, `.` or `-`, at most 64",
            name.chars().take(80).collect::<String>()
        )
        .into())
    }
}

fn check_value(value: &str) -> Result<(), Rejected> {
    if value.len() > MAX_VALUE {
        Err(format!("a value is longer than {MAX_VALUE} bytes").into())
    } else if value.chars().any(char::is_control) {
        Err("a value holds a control character".into())
    } else {
        Ok(())
    }
}

/// Reads the outputs a step left in `text`, in the order declared (a name
/// declared twice keeps its last value).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, OutputsError> {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut add = |name: String, value: String| {
        found.retain(|(n, _)| *n != name);
        found.push((name, value));
        if found.len() > MAX_OUTPUTS {
            Err(OutputsError::TooMany)
        } else {
            Ok(())
        }
    };
    if text.trim_start().starts_with('{') {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| OutputsError::Json(e.to_string()))?;
        for (name, value) in object {
            let serde_json::Value::String(value) = value else {
                return Err(OutputsError::Json(format!("{name:?} is not a string")));
            };
            check_name(&name)
                .and_then(|()| check_value(&value))
                .map_err(|e| OutputsError::Json(e.0))?;
            add(name, value)?;
        }
        return Ok(found);
    }
    for (index, line) in text.lines().enumerate() {
        let line_error = |why: String| OutputsError::Line {
            line: index + 1,
            why,
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(line_error("expected name=value".into()));
        };
        // Spaces around `=` are the file's layout, not the value's.
        let (name, value) = (name.trim(), value.trim_start());
        check_name(name)
            .and_then(|()| check_value(value))
            .map_err(|e| line_error(e.0))?;
        add(name.to_string(), value.to_string())?;
    }
    Ok(found)
}

/// Reads and parses the outputs file at `path`: none when the step left
/// none. A link is never followed; a file over [`MAX_BYTES`] is refused.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, OutputsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        // ELOOP: the path is a link.
        Err(error) if error.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(OutputsError::NotAFile);
        }
        Err(error) => return Err(OutputsError::Io(error.to_string())),
    };
    let metadata = file
        .metadata()
        .map_err(|e| OutputsError::Io(e.to_string()))?;
    if !metadata.is_file() {
        return Err(OutputsError::NotAFile);
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| OutputsError::Io(e.to_string()))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(OutputsError::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| OutputsError::Io("it is not UTF-8".into()))?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_or_a_json_object_declare_outputs_and_the_last_value_wins() {
        let text = "# what the build made\nimage=registry.example.com/shop@sha256:abc\n\nsha256.app.tar = 9f86d0=\nimage=registry.example.com/shop@sha256:def\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                ("sha256.app.tar".to_string(), "9f86d0=".to_string()),
                (
                    "image".to_string(),
                    "registry.example.com/shop@sha256:def".to_string()
                ),
            ]
        );
        let json = r#"{ "image": "registry.example.com/shop@sha256:abc", "version": "1.2.3" }"#;
        assert_eq!(parse(json).unwrap().len(), 2);
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn a_bad_outputs_file_names_its_line_and_what_is_wrong() {
        assert_eq!(
            parse("image=a\nno equals sign\n"),
            Err(OutputsError::Line {
                line: 2,
                why: "expected name=value".into()
            })
        );
        assert!(matches!(
            parse("1st=x"),
            Err(OutputsError::Line { line: 1, .. })
        ));
        assert!(matches!(
            parse("$(id)=x"),
            Err(OutputsError::Line { line: 1, .. })
        ));
        assert!(matches!(
            parse(&format!("big={}", "x".repeat(MAX_VALUE + 1))),
            Err(OutputsError::Line { line: 1, .. })
        ));
        assert!(matches!(
            parse("a=\u{1b}[31mred"),
            Err(OutputsError::Line { .. })
        ));
        assert!(matches!(parse(r#"{"n": 1}"#), Err(OutputsError::Json(_))));
        assert!(matches!(parse("{ not json"), Err(OutputsError::Json(_))));
        let many: String = (0..=MAX_OUTPUTS).map(|n| format!("o{n}=v\n")).collect();
        assert_eq!(parse(&many), Err(OutputsError::TooMany));
    }

    #[test]
    fn the_file_is_never_followed_through_a_link_nor_read_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("host-secret");
        std::fs::write(&secret, "key=host secret\n").unwrap();
        let link = dir.path().join("outputs");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert_eq!(read(&link), Err(OutputsError::NotAFile));
        std::fs::remove_file(&link).unwrap();
        std::fs::create_dir(&link).unwrap();
        assert_eq!(read(&link), Err(OutputsError::NotAFile));
        std::fs::remove_dir(&link).unwrap();
        assert_eq!(read(&link), Ok(Vec::new()));
        std::fs::write(&link, "a=".to_string() + &"x".repeat(MAX_BYTES as usize)).unwrap();
        assert_eq!(read(&link), Err(OutputsError::TooLarge));
        // Cut inside a character, it is still too large.
        std::fs::write(&link, "a=".to_string() + &"é".repeat(MAX_BYTES as usize)).unwrap();
        assert_eq!(read(&link), Err(OutputsError::TooLarge));
        // A FIFO would block a reader that waits for a writer.
        std::fs::remove_file(&link).unwrap();
        nix::unistd::mkfifo(&link, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read(&link), Err(OutputsError::NotAFile));
    }
}
