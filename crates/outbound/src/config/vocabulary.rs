//! Naming settings in the operator's own words. Transports name their own settings
//! (`` `host` ``, `` `ca_file` ``, `` `tls=implicit` ``) and know nothing of environment
//! variables; an error about a setting says so ([`Error::setting`]), and
//! [`Settings::explain`] rewrites every such name in its message to the vocabulary the
//! operator configured with:
//!
//! | the transport says | environment | DSN | map |
//! |---|---|---|---|
//! | `` `host` `` | `SMTP_SERVER` | ``MAILER_DSN host`` | ``setting `server` `` |
//! | `` `tls=starttls` `` | `SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=true` | `` `?tls=starttls` in MAILER_DSN `` | `` settings `use_tls=true`, `opportunistic_tls=true` `` |
//!
//! A value that was given is named by where it came from (the alias the operator used, the
//! member of a group); one that was not, by where it would come from.

use super::key::Key;
use super::settings::{Origin, Settings};
use crate::Error;

/// `NAME=value` for messages: `SMTP_AUTH_TYPE=oauth2`, ``MAILER_DSN query `auth=oauth2` ``,
/// ``setting `auth_type=oauth2` ``.
pub(crate) fn assignment(name: &str, value: &str) -> String {
    match name.strip_suffix('`') {
        Some(head) => format!("{head}={value}`"),
        None => format!("{name}={value}"),
    }
}

impl Settings {
    /// `err` with the settings it names (a transport's own names, see [`Error::setting`])
    /// named as these settings name them: `` `host` `` becomes `SMTP_SERVER`,
    /// `` `tls=implicit` `` becomes `SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=false`.
    pub(crate) fn explain(&self, err: Error) -> Error {
        if err.setting().is_none() {
            return err;
        }
        err.name_settings(|token| self.label(token))
    }

    /// The operator's words for a transport's `name` or `name=value`, when `name` is a
    /// setting of this kind.
    fn label(&self, token: &str) -> Option<String> {
        let (name, value) = match token.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (token, None),
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.field == Some(name))
            .or_else(|| self.keys.iter().find(|k| k.name == name))?;
        Some(match value {
            Some(value) => self.to_set(key, value),
            None => self.name_in_own_words(key),
        })
    }

    /// Whether the operator speaks of `key` through the keys that spell its values
    /// (`use_tls`/`opportunistic_tls` for `tls`): they did not give `key` itself, and either
    /// configured with variables (where only those keys have one) or gave one of them.
    fn speaks_through_spellings(&self, key: &Key) -> bool {
        if key.spelled_as.is_empty() || self.get(key.name).is_some() {
            return false;
        }
        matches!(self.kind_origin(), Origin::Env(_))
            || key
                .spelled_as
                .iter()
                .flat_map(|(_, keys)| keys.iter())
                .any(|(k, _)| self.get(k).is_some())
    }

    /// `key`'s name: where it came from or would come from, or the keys that spell it.
    fn name_in_own_words(&self, key: &Key) -> String {
        if self.speaks_through_spellings(key) {
            let mut names: Vec<String> = Vec::new();
            for (k, _) in key.spelled_as.iter().flat_map(|(_, keys)| keys.iter()) {
                let name = self.name_of(k);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            return names.join(" and ");
        }
        self.name_of(key.name)
    }

    /// What to set for `key` to be `value`, in the operator's words: `SMTP_PORT=465`,
    /// `` `?tls=starttls` in MAILER_DSN ``, `` setting `port=465` ``; a value other keys
    /// spell is said with them (`SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=true`).
    pub(crate) fn to_set(&self, key: &Key, value: &str) -> String {
        if self.speaks_through_spellings(key) {
            if let Some((_, keys)) = key.spelled_as.iter().find(|(v, _)| *v == value) {
                let parts: Vec<String> = keys
                    .iter()
                    .map(|(k, v)| assignment(&self.name_of(k), v))
                    .collect();
                return match self.kind_origin() {
                    Origin::Map(_) => format!(
                        "settings {}",
                        parts
                            .iter()
                            .map(|p| p.trim_start_matches("setting "))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => parts.join(", "),
                };
            }
        }
        let Origin::Dsn { source, part } = self.kind_origin() else {
            return assignment(&self.name_of(key.name), value);
        };
        // A member of a group is named as one: `… in MAILER_DSN member 2`.
        let whose = match part.strip_suffix("scheme").map(str::trim) {
            Some(member) if !member.is_empty() => format!("{source} {member}"),
            _ => (*source).to_string(),
        };
        if key.name == "tls" {
            if let Some(hint) = self.tls_by_scheme(value, &whose) {
                return hint;
            }
        }
        match key.dsn_part {
            Some(part) => format!("`{value}` as the {part} of {whose}"),
            None => format!("`?{}={value}` in {whose}", key.name),
        }
    }

    /// The TLS mode said with the DSN's scheme when the scheme chose the mode now in effect:
    /// `smtps://` is implicit TLS and refuses another `tls`, `smtp://` is STARTTLS.
    fn tls_by_scheme(&self, value: &str, whose: &str) -> Option<String> {
        let current = self.get("tls")?;
        let by_scheme =
            matches!(&current.origin, Origin::Dsn { part, .. } if part.ends_with("scheme"));
        if !by_scheme {
            return None;
        }
        Some(match (current.value.expose(), value) {
            ("implicit", "implicit") => format!("`smtps://` in {whose}"),
            ("implicit", "starttls") => {
                format!("`smtp://` instead of `smtps://` in {whose} (STARTTLS is its default)")
            }
            ("implicit", other) => {
                format!("`smtp://…?tls={other}` instead of `smtps://` in {whose}")
            }
            (_, "implicit") => {
                format!("`smtps://` instead of `smtp://` in {whose} (or `?tls=implicit`)")
            }
            (_, other) => format!("`?tls={other}` in {whose}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env_source(&map).unwrap().unwrap()
    }

    /// The hint a transport gives when a port speaks implicit TLS but STARTTLS was asked for,
    /// in the transport's own words.
    fn implicit_tls_hint() -> Error {
        Error::config(
            "port 587 answered with a TLS handshake: it speaks implicit TLS; select it with \
             `tls=implicit` and `port=465`, or set `timeout` higher",
        )
        .for_setting("tls")
    }

    #[test]
    fn a_tls_hint_to_someone_who_used_difys_flags_names_difys_flags() {
        let s = env(&[
            ("MAIL_TYPE", "smtp"),
            ("SMTP_SERVER", "smtp.example.com"),
            ("SMTP_PORT", "587"),
            ("SMTP_USE_TLS", "true"),
            ("SMTP_OPPORTUNISTIC_TLS", "true"),
        ]);
        let text = s.explain(implicit_tls_hint()).to_string();
        assert!(
            text.contains(
                "select it with SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=false and SMTP_PORT=465"
            ) && text.contains("set SMTP_TIMEOUT higher"),
            "{text}"
        );
        assert!(!text.contains("tls=implicit"), "{text}");
        // And the other way round: STARTTLS is both flags true.
        let err = Error::config("select STARTTLS with `tls=starttls`").for_setting("tls");
        let text = s.explain(err).to_string();
        assert!(
            text.contains("SMTP_USE_TLS=true, SMTP_OPPORTUNISTIC_TLS=true"),
            "{text}"
        );
        // `tls` alone is the two flags; other names are their variables.
        let err = Error::config("check `tls`, `ca_file` and `timeout`").for_setting("tls");
        let text = s.explain(err).to_string();
        assert!(
            text.contains(
                "check SMTP_USE_TLS and SMTP_OPPORTUNISTIC_TLS, SMTP_TLS_CA_FILE and SMTP_TIMEOUT"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_tls_hint_to_someone_who_used_a_dsn_names_the_dsn() {
        let s = Settings::from_dsn("smtp://user:pw@smtp.example.com:587").unwrap();
        let text = s.explain(implicit_tls_hint()).to_string();
        assert!(
            text.contains(
                "select it with `smtps://` instead of `smtp://` in MAILER_DSN (or \
                 `?tls=implicit`) and `465` as the port of MAILER_DSN"
            ) && text.contains("set MAILER_DSN query `timeout` higher"),
            "{text}"
        );
        let s = Settings::from_dsn("smtp://smtp.example.com?tls=none").unwrap();
        let err = Error::config("use `tls=starttls`").for_setting("tls");
        assert_eq!(
            s.explain(err).to_string(),
            "configuration error: use `?tls=starttls` in MAILER_DSN"
        );
        // `smtps://` refuses `?tls=starttls`: the scheme is what changes.
        let s = Settings::from_dsn("smtps://smtp.example.com:587").unwrap();
        let err = Error::config("use `tls=starttls`").for_setting("tls");
        assert!(s
            .explain(err)
            .to_string()
            .contains("`smtp://` instead of `smtps://` in MAILER_DSN"),);
        // A member of a group is named as one.
        let s = Settings::from_dsn("failover(smtp://a.example:465 memory://)").unwrap();
        let member = &s.members()[0];
        assert!(member
            .explain(implicit_tls_hint())
            .to_string()
            .contains("in MAILER_DSN member 1 (or `?tls=implicit`)"),);
    }

    #[test]
    fn a_tls_hint_to_someone_who_used_map_keys_names_their_keys() {
        let s = Settings::from_map(
            "smtp",
            [
                ("server", "smtp.example.com"),
                ("use_tls", "true"),
                ("opportunistic_tls", "true"),
            ],
        )
        .unwrap();
        let text = s.explain(implicit_tls_hint()).to_string();
        assert!(
            text.contains(
                "select it with settings `use_tls=true`, `opportunistic_tls=false` and \
                 setting `port=465`"
            ),
            "{text}"
        );
        let s = Settings::from_map("smtp", [("server", "h.example"), ("tls_mode", "starttls")])
            .unwrap();
        let text = s.explain(implicit_tls_hint()).to_string();
        assert!(text.contains("setting `tls_mode=implicit`"), "{text}");
    }

    #[test]
    fn only_errors_about_a_setting_are_renamed() {
        let s = env(&[("MAIL_TYPE", "smtp"), ("SMTP_SERVER", "h.example")]);
        // A provider's answer may hold the same words; it is not about our settings.
        let err = Error::config("the JSON has no `access_token` and no `port`");
        assert_eq!(
            s.explain(err).to_string(),
            "configuration error: the JSON has no `access_token` and no `port`"
        );
    }
}
