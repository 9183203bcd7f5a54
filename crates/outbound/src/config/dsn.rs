//! `MAILER_DSN`: a whole transport configuration in one URL, e.g.
//! `smtp://user:pass@smtp.example.com:587`, `file:///var/mail/outbox?from=app@example.com`.
//! Secrets in the user-info part are percent-encoded.

use secrecy::SecretString;

use super::kinds;
use super::settings::{Origin, Settings, Value};
use crate::Error;

/// Parses a DSN into settings.
pub(crate) fn parse(dsn: &str) -> Result<Settings, Error> {
    let dsn = dsn.trim();
    let url = url::Url::parse(dsn).map_err(|e| {
        Error::config(format!(
            "MAILER_DSN is not a valid URL ({e}); expected e.g. `smtp://user:pass@host:587` or \
             `file:///path/to/outbox`"
        ))
    })?;
    let scheme = url.scheme().to_ascii_lowercase();
    let kind = kinds::find_scheme(&scheme).ok_or_else(|| {
        Error::config(format!(
            "MAILER_DSN scheme `{scheme}` is not supported; expected one of: {}",
            kinds::KINDS
                .iter()
                .flat_map(|k| std::iter::once(k.name).chain(k.schemes.iter().copied()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut settings = Settings::new(kind.name, Origin::Dsn("scheme".into()));
    (kind.dsn)(&url, &mut settings)?;
    for (name, value) in url.query_pairs() {
        let key = kind
            .keys
            .iter()
            .find(|k| k.name == name || k.aliases.contains(&name.as_ref()))
            .ok_or_else(|| {
                Error::config(format!(
                    "MAILER_DSN query parameter `{name}` is not known for `{}`; expected one of: {}",
                    kind.name,
                    kind.keys
                        .iter()
                        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let value = if key.secret {
            Value::Secret(SecretString::from(value.into_owned()))
        } else {
            Value::Plain(value.into_owned())
        };
        settings.set(key.name, value, Origin::Dsn(format!("query `{name}`")));
    }
    Ok(settings)
}
