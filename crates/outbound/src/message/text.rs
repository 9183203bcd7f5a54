//! Text helpers: line-ending normalisation and the plain-text alternative of an HTML body.

use std::borrow::Cow;

/// Rewrites every line ending (CRLF, bare LF, bare CR) as CRLF, the only line ending SMTP
/// allows. A bare CR or LF that reaches a server is rejected by some and silently mangled by
/// others (and is the root of SMTP smuggling), so none ever leaves Outbound.
pub(crate) fn normalize_newlines(input: &str) -> Cow<'_, str> {
    let bytes = input.as_bytes();
    // memchr finds the line endings a word at a time: most text is already clean, and this
    // check runs over every body.
    let clean = !memchr::memchr2_iter(b'\r', b'\n', bytes).any(|i| match bytes[i] {
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        _ => i == 0 || bytes[i - 1] != b'\r',
    });
    if clean {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len() + input.len() / 16);
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Byte-level version of [`normalize_newlines`] for raw messages.
pub(crate) fn normalize_newlines_bytes(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 16);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A readable plain-text rendering of an HTML body, for clients (and spam filters) that want
/// a text/plain alternative.
pub(crate) fn html_to_text(html: &str) -> String {
    match html2text::from_read(html.as_bytes(), 78) {
        Ok(text) => text,
        // html2text only fails on pathological input (e.g. nesting too deep); fall back to
        // the markup stripped of tags rather than refuse the message.
        Err(_) => strip_tags(html),
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_every_line_ending() {
        assert_eq!(normalize_newlines("a\nb\rc\r\nd"), "a\r\nb\r\nc\r\nd");
        assert!(matches!(normalize_newlines("a\r\nb"), Cow::Borrowed(_)));
        assert_eq!(normalize_newlines("\n"), "\r\n");
        assert_eq!(normalize_newlines("\r"), "\r\n");
        assert_eq!(normalize_newlines("a\r\nb\r"), "a\r\nb\r\n");
        assert_eq!(normalize_newlines("a\r\n\nb"), "a\r\n\r\nb");
        assert!(matches!(
            normalize_newlines("no line end"),
            Cow::Borrowed(_)
        ));
        assert_eq!(normalize_newlines_bytes(b"a\nb\rc\r\n"), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn derives_text_from_html() {
        let t = html_to_text(
            "<h1>Hello</h1><p>World &amp; you. <a href=\"https://example.com/r?t=1\">Reset</a></p>",
        );
        assert!(t.contains("Hello"));
        assert!(t.contains("World & you"), "{t}");
        // Links keep their target: a reset link must survive in the text alternative.
        assert!(t.contains("https://example.com/r?t=1"), "{t}");
        assert!(!t.contains('<'));
    }
}
