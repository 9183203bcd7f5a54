//! Server text as it goes into an [`Error`](crate::Error) or a log: one line (no line breaks
//! or control characters a log reader could be fooled by), of bounded length. Redact it first
//! ([`Redactor::server_text`](super::Redactor::server_text) does both).

/// Longest server text kept in an error.
pub(crate) const MAX_SERVER_TEXT: usize = 1000;

/// Folds whitespace, line breaks and control characters into single spaces, trims, and cuts
/// to `max_chars` characters (marked with `…`).
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars));
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    let out = out.trim();
    if out.chars().count() > max_chars {
        let cut: String = out.chars().take(max_chars).collect();
        format!("{cut}…")
    } else {
        out.to_string()
    }
}

/// The start of a body that is not the server's JSON (a proxy's HTML page...): 200 characters
/// of an HTML page, marked as such, else 400 characters.
pub(crate) fn body_snippet(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        None
    } else if text.starts_with('<') {
        Some(format!(
            "(HTML page) {}",
            text.chars().take(200).collect::<String>()
        ))
    } else {
        Some(text.chars().take(400).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_folds() {
        assert_eq!(one_line("a\r\nb  c\t", 100), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    /// The union of the two rules this replaces: all Unicode whitespace (the HTTP providers')
    /// and all control characters (the token requests') become one space.
    #[test]
    fn one_line_folds_unicode_spaces_and_controls() {
        assert_eq!(
            one_line("a\u{a0}\u{2003}b\u{7}c\u{1b}[31m", 100),
            "a b c [31m"
        );
        assert_eq!(
            one_line(&"x".repeat(MAX_SERVER_TEXT + 5), MAX_SERVER_TEXT)
                .chars()
                .count(),
            MAX_SERVER_TEXT + 1
        );
    }

    #[test]
    fn snippets() {
        assert_eq!(body_snippet(b"  \n"), None);
        assert_eq!(
            body_snippet(b"<html><body>Bad gateway</body></html>").as_deref(),
            Some("(HTML page) <html><body>Bad gateway</body></html>")
        );
        assert_eq!(body_snippet(&[b'a'; 500]).map(|s| s.len()), Some(400));
    }
}
