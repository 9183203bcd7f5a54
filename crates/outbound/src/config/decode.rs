//! Percent-decoding the parts of a DSN (user, password, path, query), shared by the DSN
//! parser and each kind's own reader of its URL parts.

use crate::Error;

/// Percent-decodes one part of a DSN, refusing what a typo produces: a `%` not followed by
/// two hex digits (`pa%zz`), or bytes that are not UTF-8 once decoded. A broken escape used
/// literally would surface much later as a failed login; here it is a configuration error
/// naming the part. `what` names the part (``MAILER_DSN password``); the value is never shown.
pub(crate) fn decode_part(raw: &str, what: &str) -> Result<String, Error> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.len() >= i + 3
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(Error::config(format!(
                    "{what} has a broken percent-escape at character {}: `%` must be followed by \
                     two hex digits (write a literal `%` as `%25`, `@` as `%40`, `:` as `%3A`, \
                     `/` as `%2F`)",
                    raw[..i].chars().count() + 1
                )));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::config(format!("{what} is not valid UTF-8 after percent-decoding")))
}
