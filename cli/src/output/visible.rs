//! What other people's text (an app's output, a commit message, a ref, an agent's message)
//! may do to a terminal: nothing. Control characters (escape sequences that clear the
//! screen, retitle the window, move the cursor to overwrite a line with a fake "✓") and
//! bidirectional overrides are shown escaped (`\x1b`, `\u{202e}`) when the output is a
//! terminal; a pipe (or `logs --raw`) gets the bytes as they are.

use std::borrow::Cow;
use std::io::IsTerminal;

/// Where text is printed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub(crate) fn is_terminal(self) -> bool {
        match self {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        }
    }
}

/// `text` as it is safe to print on `stream`.
pub(crate) fn visible_on(stream: Stream, text: &str) -> Cow<'_, str> {
    match stream.is_terminal() {
        true => visible(text),
        false => Cow::Borrowed(text),
    }
}

fn harmful(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Control characters (but newline and tab; a carriage return before a newline stays) and
/// bidirectional overrides, escaped.
pub(crate) fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(harmful) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            out.push(c);
        } else if harmful(c) && (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else if harmful(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes (an app's log: not always UTF-8) made safe the same way; invalid UTF-8 is shown
/// as the replacement character.
pub(crate) fn visible_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let text = String::from_utf8_lossy(bytes);
    match visible(&text) {
        Cow::Borrowed(_) if matches!(text, Cow::Borrowed(_)) => Cow::Borrowed(bytes),
        shown => Cow::Owned(shown.into_owned().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_shown_not_obeyed() {
        assert_eq!(visible("plain ✓ text\n\tok"), "plain ✓ text\n\tok");
        assert_eq!(
            visible("\x1b[2J\x1b]0;pwned\x07"),
            "\\x1b[2J\\x1b]0;pwned\\x07"
        );
        // A carriage return that would overwrite the line with a fake result.
        assert_eq!(visible("failed\r✓ ok"), "failed\\x0d✓ ok");
        assert_eq!(visible("windows line\r\n"), "windows line\r\n");
        assert_eq!(visible("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(visible("\u{9b}31m"), "\\x9b31m");
        assert_eq!(&*visible_bytes(b"log line\n"), b"log line\n");
        assert_eq!(&*visible_bytes(b"\x1b[31mred\n"), b"\\x1b[31mred\n");
    }
}
