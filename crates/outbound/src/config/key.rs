//! What a setting is: its [`Key`] (names in each vocabulary, default, one-line doc) and how
//! its value is read ([`Parse`]) into a [`Typed`] value. The definitions themselves are the
//! table in `table.rs`.
//!
//! A value is parsed once, when it is set (see `Settings::set`): the parse's outcome is kept
//! beside the text, and every use reads it. The error, if any, is reported when the value is
//! used, so a configuration with a bad value can still be shown (`outbound config`).

use std::time::Duration;

use crate::layer::Rate;
use crate::Mailbox;

/// One setting a kind understands.
#[derive(Debug)]
pub struct Key {
    /// Canonical name, as in the seeds' config maps (`server`, `password`, ...).
    pub name: &'static str,
    /// Environment variables that set it, first one preferred.
    pub env: &'static [&'static str],
    /// Other names accepted in a map or a DSN query.
    pub aliases: &'static [&'static str],
    /// Whether the value is a secret (never printed).
    pub secret: bool,
    /// The default, when there is one.
    pub default: Option<&'static str>,
    /// One line on what it means.
    pub help: &'static str,
    /// How its value is read, and the range it must be in.
    pub(crate) parse: Parse,
    /// The part of a DSN URL that sets it (`host` for `server`), when not the query.
    pub(crate) dsn_part: Option<&'static str>,
    /// The transport builder's name for it, when that differs (`host` for `server`), so an
    /// error about it can name its source.
    pub(crate) field: Option<&'static str>,
    /// Values that other keys can spell too: `tls=starttls` is `use_tls=true` with
    /// `opportunistic_tls=true`, so a hint can use the keys the operator used.
    pub(crate) spelled_as: &'static [(&'static str, &'static [(&'static str, &'static str)])],
    /// Where README's configuration reference lists it.
    pub(crate) doc: Doc,
}

/// The tables of README's configuration reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doc {
    /// What selects the configuration, and the settings every kind has.
    General,
    /// The shared limits (Redis).
    Limits,
    /// The `smtp` kind.
    Smtp,
    /// The `smtp` kind's OAuth2 settings.
    SmtpOAuth2,
    /// The HTTP providers: Resend, SendGrid, Microsoft Graph.
    Http,
}

#[cfg(test)]
impl Doc {
    /// Every table, in README's order, with its name in README's markers.
    pub(crate) const ALL: [(Doc, &'static str); 5] = [
        (Doc::General, "general"),
        (Doc::Limits, "limits"),
        (Doc::Smtp, "smtp"),
        (Doc::SmtpOAuth2, "smtp-oauth2"),
        (Doc::Http, "http"),
    ];
}

impl Key {
    /// A setting read as text, with no variable, default or alias yet.
    pub(crate) const fn new(name: &'static str, doc: Doc, help: &'static str) -> Key {
        Key {
            name,
            env: &[],
            aliases: &[],
            secret: false,
            default: None,
            help,
            parse: Parse::Text,
            dsn_part: None,
            field: None,
            spelled_as: &[],
            doc,
        }
    }

    /// Read from these environment variables (the first is preferred).
    pub(crate) const fn env(mut self, env: &'static [&'static str]) -> Key {
        self.env = env;
        self
    }

    /// Also accepted under these names in a map or DSN query.
    pub(crate) const fn aliases(mut self, aliases: &'static [&'static str]) -> Key {
        self.aliases = aliases;
        self
    }

    /// A secret: never printed.
    pub(crate) const fn secret(mut self) -> Key {
        self.secret = true;
        self
    }

    /// The value when none is given.
    pub(crate) const fn default(mut self, default: &'static str) -> Key {
        self.default = Some(default);
        self
    }

    /// How the value is read.
    pub(crate) const fn parse(mut self, parse: Parse) -> Key {
        self.parse = parse;
        self
    }

    /// Set by this part of a DSN URL.
    pub(crate) const fn dsn_part(mut self, part: &'static str) -> Key {
        self.dsn_part = Some(part);
        self
    }

    /// The transport builder calls it `field`.
    pub(crate) const fn field(mut self, field: &'static str) -> Key {
        self.field = Some(field);
        self
    }

    /// Values other keys spell too.
    pub(crate) const fn spelled_as(
        mut self,
        values: &'static [(&'static str, &'static [(&'static str, &'static str)])],
    ) -> Key {
        self.spelled_as = values;
        self
    }

    /// Whether `name` names this key in a map or DSN query.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// How a setting's text becomes a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Parse {
    /// Text, used as given (names, paths, URLs and secrets, checked where they are used).
    Text,
    /// `true/false`, `1/0`, `yes/no`, `on/off`.
    Bool,
    /// A whole number within `min..=max`.
    Whole { min: u64, max: u64 },
    /// Seconds, fractions allowed, greater than 0 and at most `max`.
    Seconds { max: f64 },
    /// Whole seconds within `min..=max`.
    WholeSeconds { min: u64, max: u64 },
    /// One of `words` (any case); `expected` says what they mean.
    Choice {
        words: &'static [&'static str],
        expected: &'static str,
    },
    /// A rate: `10/s`, `30/min,burst=5`.
    Rate,
    /// A sender address.
    Mailbox,
}

/// A parsed value.
#[derive(Debug, Clone)]
pub(crate) enum Typed {
    /// Text: read it from the setting's value.
    Text,
    Bool(bool),
    Whole(u64),
    Duration(Duration),
    /// The canonical word of a [`Parse::Choice`].
    Word(&'static str),
    Rate(Rate),
    Mailbox(Mailbox),
}

impl Parse {
    /// Reads `raw`. An error is the message without its subject: the caller puts where the
    /// value came from in front (" is `x`; expected true or false").
    pub(crate) fn read(self, raw: &str) -> Result<Typed, String> {
        let trimmed = raw.trim();
        match self {
            Parse::Text => Ok(Typed::Text),
            Parse::Bool => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Typed::Bool(true)),
                "false" | "0" | "no" | "off" => Ok(Typed::Bool(false)),
                other => Err(format!(" is `{other}`; expected true or false")),
            },
            Parse::Whole { min, max } => whole(trimmed, min, max).map(Typed::Whole),
            Parse::WholeSeconds { min, max } => {
                whole(trimmed, min, max).map(|s| Typed::Duration(Duration::from_secs(s)))
            }
            Parse::Seconds { max } => trimmed
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0 && *v <= max)
                .map(|v| Typed::Duration(Duration::from_secs_f64(v)))
                .ok_or_else(|| {
                    format!(
                        " is `{trimmed}`; expected a number of seconds greater than 0 and at \
                         most {max}"
                    )
                }),
            Parse::Choice { words, expected } => words
                .iter()
                .find(|w| w.eq_ignore_ascii_case(trimmed))
                .map(|w| Typed::Word(w))
                .ok_or_else(|| format!(" is `{trimmed}`; expected {expected}")),
            Parse::Rate => raw
                .parse::<Rate>()
                .map(Typed::Rate)
                .map_err(|e| format!(": {}", e.message())),
            Parse::Mailbox => Mailbox::parse_for(raw, "default_from")
                .map(Typed::Mailbox)
                .map_err(|e| format!(" is not a valid sender address: {e}")),
        }
    }
}

fn whole(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!(" is `{raw}`; expected a whole number from {min} to {max}"))
}

/// A Rust type a [`Typed`] value can be read as.
pub(crate) trait FromTyped: Sized {
    /// What the type is, for the error when the table and the code disagree.
    const WHAT: &'static str;
    fn from_typed(value: Typed) -> Option<Self>;
}

impl FromTyped for bool {
    const WHAT: &'static str = "true or false";
    fn from_typed(value: Typed) -> Option<Self> {
        match value {
            Typed::Bool(b) => Some(b),
            _ => None,
        }
    }
}

macro_rules! whole_numbers {
    ($($t:ty),*) => {$(
        impl FromTyped for $t {
            const WHAT: &'static str = "a whole number";
            fn from_typed(value: Typed) -> Option<Self> {
                match value {
                    Typed::Whole(n) => <$t>::try_from(n).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
whole_numbers!(u16, u32, u64, usize);

impl FromTyped for Duration {
    const WHAT: &'static str = "seconds";
    fn from_typed(value: Typed) -> Option<Self> {
        match value {
            Typed::Duration(d) => Some(d),
            _ => None,
        }
    }
}

impl FromTyped for &'static str {
    const WHAT: &'static str = "one of its words";
    fn from_typed(value: Typed) -> Option<Self> {
        match value {
            Typed::Word(w) => Some(w),
            _ => None,
        }
    }
}

impl FromTyped for Rate {
    const WHAT: &'static str = "a rate";
    fn from_typed(value: Typed) -> Option<Self> {
        match value {
            Typed::Rate(r) => Some(r),
            _ => None,
        }
    }
}

impl FromTyped for Mailbox {
    const WHAT: &'static str = "a sender address";
    fn from_typed(value: Typed) -> Option<Self> {
        match value {
            Typed::Mailbox(m) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parser_reads_its_values_and_says_what_is_valid() {
        assert!(matches!(Parse::Bool.read(" Yes "), Ok(Typed::Bool(true))));
        assert_eq!(
            Parse::Bool.read("maybe").unwrap_err(),
            " is `maybe`; expected true or false"
        );
        let port = Parse::Whole { min: 1, max: 65535 };
        assert!(matches!(port.read("587"), Ok(Typed::Whole(587))));
        for bad in ["0", "70000", "-1", "x"] {
            assert!(port.read(bad).unwrap_err().contains("from 1 to 65535"));
        }
        let secs = Parse::Seconds { max: 3600.0 };
        assert!(
            matches!(secs.read("2.5"), Ok(Typed::Duration(d)) if d == Duration::from_millis(2500))
        );
        assert_eq!(
            secs.read("0").unwrap_err(),
            " is `0`; expected a number of seconds greater than 0 and at most 3600"
        );
        let choice = Parse::Choice {
            words: &["basic", "oauth2"],
            expected: "basic or oauth2",
        };
        assert!(matches!(choice.read(" OAuth2"), Ok(Typed::Word("oauth2"))));
        assert_eq!(
            choice.read("kerberos").unwrap_err(),
            " is `kerberos`; expected basic or oauth2"
        );
        assert!(Parse::Rate.read("10/s").is_ok());
        assert!(Parse::Mailbox.read("nobody").is_err());
        // A number read as a narrower type than it fits is the table's mistake, not the user's.
        assert_eq!(u16::from_typed(Typed::Whole(70_000)), None);
    }
}
