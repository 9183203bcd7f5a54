//! Mailboxes: an address with an optional display name.
//!
//! Parsing is deliberately strict. A mail library that accepts `"a@b.com\r\nBcc: x@y"` as an
//! address is a spam relay, so line breaks are refused before anything else is looked at.

use std::fmt;
use std::str::FromStr;

use super::MessageError;

/// An email address with an optional display name, e.g. `Ada <ada@example.com>`.
///
/// ```
/// use outbound::Mailbox;
/// let m: Mailbox = "Ada Lovelace <ada@example.com>".parse()?;
/// assert_eq!(m.name(), Some("Ada Lovelace"));
/// assert_eq!(m.email(), "ada@example.com");
/// assert_eq!(m.domain(), "example.com");
/// # Ok::<(), outbound::MessageError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    name: Option<String>,
    email: String,
}

impl Mailbox {
    /// A mailbox from a display name and an address; the address is validated.
    ///
    /// ```
    /// use outbound::Mailbox;
    /// let m = Mailbox::new(Some("Zoë"), "zoe@example.com")?;
    /// assert_eq!(m.to_string(), "Zoë <zoe@example.com>");
    /// # Ok::<(), outbound::MessageError>(())
    /// ```
    pub fn new(name: Option<&str>, email: &str) -> Result<Self, MessageError> {
        Self::parse_parts_for(name, email, "address")
    }

    /// Parses `addr@example.com` or `Display Name <addr@example.com>`, naming `field` (e.g.
    /// "to") in any error.
    pub fn parse_for(input: &str, field: &str) -> Result<Self, MessageError> {
        if input.contains(['\r', '\n']) {
            return Err(MessageError::HeaderInjection {
                field: field.to_string(),
            });
        }
        let trimmed = input.trim();
        if let Some(open) = trimmed.rfind('<') {
            let Some(inner) = trimmed[open + 1..].strip_suffix('>') else {
                return Err(invalid(
                    field,
                    input,
                    "an opening `<` without a closing `>`",
                ));
            };
            let raw_name = trimmed[..open].trim();
            let name = unquote(raw_name);
            let name = if name.is_empty() { None } else { Some(name) };
            Self::parse_parts_for(name.as_deref(), inner.trim(), field)
        } else {
            Self::parse_parts_for(None, trimmed, field)
        }
    }

    /// Parses an RFC 5322 address list (`Ada <ada@example.com>, bob@example.com`): every
    /// mailbox in it, in order. Commas inside quoted display names (`"Doe, John" <j@x>`) do
    /// not separate; comments (`(…)`) are dropped; groups (`team: a@x, b@x;`) are refused, as is
    /// a display name that shows an address other than the recipient's
    /// (`"ada@example.com" <evil@example.net>`): such a name would mislead the reader.
    ///
    /// ```
    /// use outbound::Mailbox;
    /// let list = Mailbox::parse_list("Ada <ada@example.com>, <bob@example.com>", "to")?;
    /// assert_eq!(list.len(), 2);
    /// assert_eq!(list[1].email(), "bob@example.com");
    /// let one = Mailbox::parse_list("\"Doe, John\" <john@example.com>", "to")?;
    /// assert_eq!(one.len(), 1);
    /// assert!(Mailbox::parse_list("\"ada@example.com\" <evil@example.net>", "to").is_err());
    /// # Ok::<(), outbound::MessageError>(())
    /// ```
    pub fn parse_list(input: &str, field: &str) -> Result<Vec<Mailbox>, MessageError> {
        if input.contains(['\r', '\n']) {
            return Err(MessageError::HeaderInjection {
                field: field.to_string(),
            });
        }
        let mut out = Vec::new();
        for element in split_list(input, field)? {
            let element = element.trim();
            if element.is_empty() {
                continue;
            }
            let mailbox = Mailbox::parse_for(element, field)?;
            mailbox.check_name_shows_no_other_address(field, element)?;
            out.push(mailbox);
        }
        if out.is_empty() {
            return Err(invalid(field, input, "it has no address"));
        }
        Ok(out)
    }

    /// Refuses a display name that contains an address other than the mailbox's own.
    fn check_name_shows_no_other_address(
        &self,
        field: &str,
        raw: &str,
    ) -> Result<(), MessageError> {
        let Some(name) = &self.name else {
            return Ok(());
        };
        for word in name.split(|c: char| c.is_whitespace() || "<>()[],;:\"'".contains(c)) {
            if word.contains('@') && !word.eq_ignore_ascii_case(&self.email) {
                return Err(invalid(
                    field,
                    raw,
                    "its display name shows an address that is not the recipient's; write the \
                     name without an address, or each address as its own recipient",
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn parse_parts_for(
        name: Option<&str>,
        email: &str,
        field: &str,
    ) -> Result<Self, MessageError> {
        super::check_line(email, field)?;
        if let Some(name) = name {
            super::check_line(name, field)?;
        }
        validate_addr_spec(email).map_err(|reason| invalid(field, email, reason))?;
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        Ok(Mailbox {
            name,
            email: email.to_string(),
        })
    }

    /// The display name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The address exactly as given, e.g. `ada@example.com`.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.email
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or_default()
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.email
            .rsplit_once('@')
            .map(|(l, _)| l)
            .unwrap_or_default()
    }

    /// Whether delivering to or from this address needs SMTPUTF8 (RFC 6531): a non-ASCII local
    /// part. Non-ASCII domains do not; they are sent as punycode.
    pub fn needs_smtputf8(&self) -> bool {
        !self.local_part().is_ascii()
    }

    /// The address with an internationalised domain converted to punycode (RFC 5890), which
    /// any server accepts. The local part is kept as is.
    ///
    /// ```
    /// use outbound::Mailbox;
    /// let m: Mailbox = "info@bücher.example".parse()?;
    /// assert_eq!(m.ascii_email(), "info@xn--bcher-kva.example");
    /// # Ok::<(), outbound::MessageError>(())
    /// ```
    pub fn ascii_email(&self) -> String {
        let domain = self.domain();
        if domain.is_ascii() {
            return self.email.clone();
        }
        // Validation already proved the conversion succeeds.
        match idna::domain_to_ascii(domain) {
            Ok(ascii) => format!("{}@{}", self.local_part(), ascii),
            Err(_) => self.email.clone(),
        }
    }
}

impl FromStr for Mailbox {
    type Err = MessageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mailbox::parse_for(s, "address")
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) if needs_quoting(name) => {
                let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
                write!(f, "\"{escaped}\" <{}>", self.email)
            }
            Some(name) => write!(f, "{name} <{}>", self.email),
            None => f.write_str(&self.email),
        }
    }
}

/// Splits an address list at top-level commas, dropping comments; refuses groups and
/// unbalanced quotes, comments or brackets.
fn split_list(input: &str, field: &str) -> Result<Vec<String>, MessageError> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let (mut in_quote, mut in_angle, mut in_literal, mut comment) = (false, false, false, 0usize);
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quote || comment > 0 => {
                let next = chars.next();
                if comment == 0 {
                    cur.push(c);
                    if let Some(n) = next {
                        cur.push(n);
                    }
                }
            }
            '"' if comment == 0 => {
                in_quote = !in_quote;
                cur.push(c);
            }
            '(' if !in_quote => comment += 1,
            ')' if !in_quote && comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            '<' if !in_quote => {
                in_angle = true;
                cur.push(c);
            }
            '[' if !in_quote => {
                in_literal = true;
                cur.push(c);
            }
            ']' if !in_quote => {
                in_literal = false;
                cur.push(c);
            }
            '>' if !in_quote => {
                in_angle = false;
                cur.push(c);
            }
            ',' if !in_quote && !in_angle && !in_literal => parts.push(std::mem::take(&mut cur)),
            ':' | ';' if !in_quote && !in_angle && !in_literal => {
                return Err(invalid(
                    field,
                    input,
                    "it is a group (`name: addresses;`); list the addresses themselves",
                ))
            }
            _ => cur.push(c),
        }
    }
    if in_quote || comment > 0 || in_angle || in_literal {
        return Err(invalid(
            field,
            input,
            "a quote, comment or `<` is not closed",
        ));
    }
    parts.push(cur);
    Ok(parts)
}

fn needs_quoting(name: &str) -> bool {
    name.chars().any(|c| "()<>[]:;@\\,.\"".contains(c))
}

fn unquote(name: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => name.to_string(),
    }
}

fn invalid(field: &str, value: &str, reason: &str) -> MessageError {
    MessageError::InvalidAddress {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks an RFC 5321 mailbox (`local@domain`), allowing RFC 6531 UTF-8 and IDN domains.
fn validate_addr_spec(email: &str) -> Result<(), &'static str> {
    if email.is_empty() {
        return Err("it is empty");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("it has no `@`");
    };
    if local.is_empty() {
        return Err("the part before `@` is empty");
    }
    if domain.is_empty() {
        return Err("the domain after `@` is empty");
    }
    if local.len() > 64 {
        return Err("the part before `@` is longer than 64 octets");
    }
    if domain.len() > 255 {
        return Err("the domain is longer than 255 octets");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) && !local.starts_with('"') {
        return Err("it contains whitespace or a control character");
    }
    if !email_address::EmailAddress::is_valid(email) {
        return Err("it is not a valid RFC 5321 mailbox");
    }
    if let Some(literal) = domain.strip_prefix('[') {
        return match literal.strip_suffix(']') {
            Some(_) => Ok(()),
            None => Err("the address literal is not closed with `]`"),
        };
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| "the domain is not a valid IDN")?;
    for label in ascii.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("a domain label is empty or longer than 63 octets");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err("a domain label has characters other than letters, digits and inner `-`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_named() {
        let m: Mailbox = "a@example.com".parse().unwrap();
        assert_eq!(m.name(), None);
        let m: Mailbox = "\"Doe, John\" <john@example.com>".parse().unwrap();
        assert_eq!(m.name(), Some("Doe, John"));
        assert_eq!(m.to_string(), "\"Doe, John\" <john@example.com>");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "nobody",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "Name <a@example.com",
            "a@-bad-.com",
        ] {
            let err = bad.parse::<Mailbox>().unwrap_err();
            assert!(
                matches!(err, MessageError::InvalidAddress { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn address_lists() {
        let l = Mailbox::parse_list("Ada <ada@example.test>, <evil@evil.test>", "to").unwrap();
        assert_eq!(
            l.iter().map(|m| m.email()).collect::<Vec<_>>(),
            ["ada@example.test", "evil@evil.test"]
        );
        assert_eq!(l[0].name(), Some("Ada"));
        assert_eq!(l[1].name(), None);
        let l = Mailbox::parse_list(
            "\"Doe, John\" <john@example.com> (work), b@example.com",
            "to",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name(), Some("Doe, John"));
        let l = Mailbox::parse_list("root@[IPv6:2001:db8::1]", "to").unwrap();
        assert_eq!(l.len(), 1);
        for (bad, says) in [
            ("team: a@example.com, b@example.com;", "group"),
            ("\"ada@example.test\" <evil@evil.test>", "display name"),
            ("ada@example.test <evil@evil.test>", "display name"),
            ("\"unclosed <a@example.com>", "not closed"),
            (" , ", "no address"),
        ] {
            let err = Mailbox::parse_list(bad, "to").unwrap_err();
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
        // A name that shows the recipient's own address is fine.
        Mailbox::parse_list("\"ada@example.test\" <ada@example.test>", "to").unwrap();
    }

    #[test]
    fn quoted_local_parts_are_accepted_and_kept_quoted() {
        let m: Mailbox = "\"john doe\"@example.test".parse().unwrap();
        assert_eq!(m.local_part(), "\"john doe\"");
        assert_eq!(m.ascii_email(), "\"john doe\"@example.test");
        let m: Mailbox = "John <\"john doe\"@example.test>".parse().unwrap();
        assert_eq!(m.email(), "\"john doe\"@example.test");
        assert!("\"john\ndoe\"@example.test".parse::<Mailbox>().is_err());
        assert!("\"unterminated@example.test".parse::<Mailbox>().is_err());
    }

    #[test]
    fn refuses_line_breaks() {
        let err = "a@example.com\r\nBcc: x@example.com"
            .parse::<Mailbox>()
            .unwrap_err();
        assert!(matches!(err, MessageError::HeaderInjection { .. }));
    }

    #[test]
    fn utf8_local_part_needs_smtputf8() {
        let m: Mailbox = "jösé@example.com".parse().unwrap();
        assert!(m.needs_smtputf8());
        let m: Mailbox = "info@bücher.example".parse().unwrap();
        assert!(!m.needs_smtputf8());
    }
}
