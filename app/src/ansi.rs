//! ANSI colours in step logs: the SGR sequences tools print (`ESC[1;32m`)
//! become styled segments; every other escape sequence is dropped, so the
//! log reads as the terminal showed it. Pure, so the server render and the
//! browser agree.

/// A run of text with one style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    /// CSS classes: `ansi-bold`, `ansi-fg-<0..15>`, `ansi-bg-<0..15>`;
    /// empty for plain text.
    pub class: String,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    bold: bool,
    fg: Option<u8>,
    bg: Option<u8>,
}

impl Style {
    fn class(self) -> String {
        let mut classes = Vec::new();
        if self.bold {
            classes.push("ansi-bold".to_string());
        }
        if let Some(fg) = self.fg {
            classes.push(format!("ansi-fg-{fg}"));
        }
        if let Some(bg) = self.bg {
            classes.push(format!("ansi-bg-{bg}"));
        }
        classes.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let codes: Vec<u16> = if params.is_empty() {
            vec![0]
        } else {
            params.split(';').map(|p| p.parse().unwrap_or(0)).collect()
        };
        let mut codes = codes.into_iter();
        while let Some(code) = codes.next() {
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                22 => self.bold = false,
                30..=37 => self.fg = Some((code - 30) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((code - 40) as u8),
                49 => self.bg = None,
                90..=97 => self.fg = Some((code - 90 + 8) as u8),
                100..=107 => self.bg = Some((code - 100 + 8) as u8),
                // 256-colour and RGB forms: skip their arguments.
                38 | 48 => match codes.next() {
                    Some(5) => {
                        codes.next();
                    }
                    Some(2) => {
                        codes.next();
                        codes.next();
                        codes.next();
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// Splits one line of log text into styled segments. `style` carries over
/// between lines, as in a terminal.
fn line_segments(line: &str, style: &mut Style) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut text = String::new();
    let mut chars = line.chars().peekable();
    let flush = |text: &mut String, style: Style, out: &mut Vec<Segment>| {
        if !text.is_empty() {
            out.push(Segment {
                text: std::mem::take(text),
                class: style.class(),
            });
        }
    };
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            if c != '\r' {
                text.push(c);
            }
            continue;
        }
        // ESC [ params final-byte; anything else after ESC is dropped.
        if chars.peek() != Some(&'[') {
            chars.next();
            continue;
        }
        chars.next();
        let mut params = String::new();
        let mut last = None;
        for c in chars.by_ref() {
            if ('\u{40}'..='\u{7e}').contains(&c) {
                last = Some(c);
                break;
            }
            params.push(c);
        }
        if last == Some('m') {
            flush(&mut text, *style, &mut out);
            style.apply(&params);
        }
    }
    flush(&mut text, *style, &mut out);
    out
}

/// The log as lines of styled segments.
pub fn lines(log: &str) -> Vec<Vec<Segment>> {
    let mut style = Style::default();
    log.lines()
        .map(|line| line_segments(line, &mut style))
        .collect()
}

/// A line's text without styles (what search matches).
pub fn plain(segments: &[Segment]) -> String {
    segments.iter().map(|s| s.text.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str, class: &str) -> Segment {
        Segment {
            text: text.into(),
            class: class.into(),
        }
    }

    #[test]
    fn colours_and_bold_become_classes_and_reset_ends_them() {
        let parsed = lines("\u{1b}[32mok\u{1b}[0m built \u{1b}[1;91mWARN\u{1b}[m done");
        assert_eq!(
            parsed,
            vec![vec![
                seg("ok", "ansi-fg-2"),
                seg(" built ", ""),
                seg("WARN", "ansi-bold ansi-fg-9"),
                seg(" done", ""),
            ]]
        );
        assert_eq!(plain(&parsed[0]), "ok built WARN done");
    }

    #[test]
    fn styles_carry_over_lines_and_other_sequences_are_dropped() {
        let parsed =
            lines("\u{1b}[33mfirst\nsecond\u{1b}[39m\n\u{1b}[2K\rprogress\u{1b}[38;5;208m!");
        assert_eq!(parsed[0], vec![seg("first", "ansi-fg-3")]);
        assert_eq!(parsed[1], vec![seg("second", "ansi-fg-3")]);
        assert_eq!(parsed[2], vec![seg("progress", ""), seg("!", "")]);
        assert_eq!(lines("plain"), vec![vec![seg("plain", "")]]);
        assert_eq!(lines("\u{1b}[31m"), vec![Vec::<Segment>::new()]);
    }
}
