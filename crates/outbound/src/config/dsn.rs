//! `MAILER_DSN`: a whole transport configuration in one URL, e.g.
//! `smtp://user:pass@smtp.example.com:587`, `file:///var/mail/outbox?from=app@example.com`.
//! Secrets in the user-info part and in query values are percent-encoded; in query values a
//! `+` is a plus sign (as in the user-info part), not a space: client secrets and tokens contain
//! `+`, and turning it into a space would corrupt them silently. Write a space as `%20`.
//!
//! Groups: `failover(DSN DSN …)` and `roundrobin(DSN DSN …)`, members separated by spaces,
//! nested freely, with their own query after the closing parenthesis
//! (`failover(smtp://a smtp://b)?retries=3&rate=10/s&cooldown=30`). A member's own query
//! (`smtp://a?rate=5/s`) applies to that member.

use secrecy::SecretString;

use super::decode::decode_part;
use super::registry;
use super::settings::{Group, Origin, Settings, Value};
use super::table;
use crate::Error;

/// Parses a DSN into settings; `source` (e.g. `MAILER_DSN`, `--dsn`) names it in errors and
/// origins.
pub(crate) fn parse(dsn: &str, source: &'static str) -> Result<Settings, Error> {
    let dsn = dsn.trim();
    for group in [Group::Failover, Group::RoundRobin] {
        if let Some(rest) = strip_prefix_ignore_case(dsn, group.as_str()) {
            if let Some(rest) = rest.trim_start().strip_prefix('(') {
                return parse_group(group, rest, source);
            }
        }
    }
    let url = url::Url::parse(dsn).map_err(|e| {
        Error::config(format!(
            "{source} is not a valid URL ({e}); expected e.g. `smtp://user:pass@host:587` or \
             `file:///path/to/outbox`"
        ))
    })?;
    let scheme = url.scheme().to_ascii_lowercase();
    let kind = registry::find_scheme(&scheme).ok_or_else(|| {
        Error::config(format!(
            "{source} scheme `{scheme}` is not supported; expected one of: {}",
            registry::KINDS
                .iter()
                .flat_map(|k| std::iter::once(k.name).chain(k.schemes.iter().copied()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut settings = Settings::new(
        kind.name,
        kind.keys,
        Origin::Dsn {
            source,
            part: "scheme".into(),
        },
    );
    settings.dsn_source = source;
    (kind.dsn)(&url, &mut settings)?;
    for (name, value) in query_pairs(&url, source)? {
        let key = kind
            .keys
            .iter()
            .find(|k| k.is_named(&name))
            .ok_or_else(|| {
                Error::config(format!(
                    "{source} query parameter `{name}` is not known for `{}`; expected one of: {}",
                    kind.name,
                    kind.keys
                        .iter()
                        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let value = if key.secret {
            Value::Secret(SecretString::from(value))
        } else {
            Value::Plain(value)
        };
        let origin = settings.dsn_origin(format!("query `{name}`"));
        settings.set(key, value, origin);
    }
    Ok(settings)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `rest` is what follows `group(`: members up to the matching `)`, then an optional query.
fn parse_group(group: Group, rest: &str, source: &'static str) -> Result<Settings, Error> {
    let name = group.as_str();
    let mut depth = 1usize;
    let mut close = None;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| {
        Error::config(format!(
            "{source}: `{name}(` has no closing `)`; expected e.g. `{name}(smtp://a.example \
             smtp://b.example)`"
        ))
    })?;
    let (inner, after) = (&rest[..close], rest[close + 1..].trim());
    // Split the members on whitespace outside parentheses.
    let mut members_src = Vec::new();
    let (mut start, mut depth) = (None, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if c.is_whitespace() && depth == 0 => {
                if let Some(s) = start.take() {
                    members_src.push(&inner[s..i]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        members_src.push(&inner[s..]);
    }
    if members_src.len() < 2 {
        return Err(Error::config(format!(
            "{source}: `{name}(…)` needs at least two transports separated by spaces, e.g. \
             `{name}(smtp://a.example smtp://b.example)`; it has {}",
            members_src.len()
        )));
    }
    let mut settings = Settings::new(
        name,
        table::GROUP,
        Origin::Dsn {
            source,
            part: "scheme".into(),
        },
    );
    settings.dsn_source = source;
    settings.group = Some(group);
    for (i, member) in members_src.iter().enumerate() {
        let mut m = parse(member, source)?;
        m.rename_dsn_parts(&format!("member {}", i + 1));
        settings.members.push(m);
    }
    let query = match after {
        "" => None,
        q => Some(q.strip_prefix('?').ok_or_else(|| {
            Error::config(format!(
                "{source}: after `{name}(…)` only a query may follow (`?retries=3&rate=10/s`), \
                 not `{q}`"
            ))
        })?),
    };
    if let Some(query) = query {
        let url = url::Url::parse(&format!("group:?{query}")).map_err(|e| {
            Error::config(format!(
                "{source}: the query of `{name}(…)` is not valid ({e})"
            ))
        })?;
        for (key, value) in query_pairs(&url, source)? {
            let known = table::GROUP.iter().find(|k| k.name == key).ok_or_else(|| {
                Error::config(format!(
                    "{source} query parameter `{key}` is not known for `{name}(…)`; expected \
                     one of: retries, rate, cooldown"
                ))
            })?;
            let origin = settings.dsn_origin(format!("query `{key}`"));
            settings.set(known, Value::Plain(value), origin);
        }
    }
    Ok(settings)
}

/// The query's `name=value` pairs, percent-decoded, `+` kept as a plus sign.
fn query_pairs(url: &url::Url, source: &str) -> Result<Vec<(String, String)>, Error> {
    let Some(query) = url.query() else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode_part(name, &format!("{source} query"))?;
            let value = decode_part(value, &format!("{source} query `{name}`"))?;
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded_and_plus_stays_a_plus() {
        let url = url::Url::parse("smtp://h?a=x%2By+z%20w&b&c=%C3%A9").unwrap();
        assert_eq!(
            query_pairs(&url, "MAILER_DSN").unwrap(),
            [
                ("a".to_string(), "x+y+z w".to_string()),
                ("b".to_string(), String::new()),
                ("c".to_string(), "é".to_string()),
            ]
        );
        let url = url::Url::parse("smtp://h?a=%FF").unwrap();
        assert!(query_pairs(&url, "MAILER_DSN").is_err());
    }
}
