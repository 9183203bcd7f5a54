//! The settings table: every setting of every kind, defined once. A [`Key`] gives a setting's
//! environment variables (Dify's names first, then their aliases), its map key (the seeds'
//! name) and the other names a map or DSN query accepts, the DSN part that sets it, how it
//! is parsed and its range, its default and its one-line doc.
//!
//! Everything else follows from here: reading the environment, a DSN or a map
//! (`env.rs`, `dsn.rs`, `Settings::from_map`), the typed values every use reads
//! (`Settings::value`), which variables a configuration leaves unused, the names errors
//! give a setting, `outbound config`, and README's configuration reference (a test renders
//! it from this table and fails when README differs).

use super::key::{Doc, Key, Parse};

// --- What selects the configuration, and what every kind has ---------------------------

/// Variables that choose the configuration, or that the command line reads itself: no key
/// of any kind (their `name` is empty).
pub(crate) const SELECTORS: &[Key] = &[
    Key::new(
        "",
        Doc::General,
        "the whole configuration as one URL (see below); wins over `MAIL_TYPE`",
    )
    .env(&["MAILER_DSN"]),
    Key::new(
        "",
        Doc::General,
        "transport kind: `smtp`, `resend`, `sendgrid`, `graph`, `file`, `memory` (`outbound types`)",
    )
    .env(&["MAIL_TYPE"]),
    Key::new(
        "",
        Doc::General,
        "largest message input `outbound send` and `bulk` read, e.g. `25M` (default: the \
         transport's limit)",
    )
    .env(&["MAIL_MAX_SIZE"]),
];

/// The sender of messages that have none: every kind.
pub(crate) const DEFAULT_FROM: Key = Key::new(
    "default_from",
    Doc::General,
    "sender for messages that have no From",
)
.env(&["MAIL_DEFAULT_SEND_FROM"])
.aliases(&["from"])
.parse(Parse::Mailbox);

/// Retries after the first attempt, for failures that delivered nothing: every kind.
pub(crate) const RETRIES: Key = Key::new(
    "retries",
    Doc::General,
    "retries after the first attempt, for failures that delivered nothing (none unless set; \
     `outbound send` 2)",
)
.env(&["MAIL_RETRIES"])
.parse(Parse::Whole { min: 0, max: 100 });

/// A rate cap: every kind.
pub(crate) const RATE: Key = Key::new(
    "rate",
    Doc::General,
    "rate cap, e.g. `10/s`, `30/min`, `1000/h`, with an optional burst: `30/min,burst=5`",
)
.env(&["MAIL_RATE"])
.parse(Parse::Rate);

/// Shared limits (issue 12): the Redis that holds the connection cap and the rate for every
/// process sending as the same account. Secret: the URL may carry a password.
pub(crate) const LIMITS: Key = Key::new(
    "limits",
    Doc::Limits,
    "`redis://[:password@]host[:port][/db]` (`rediss://` for TLS), optionally \
     `?lease=S&wait=S`: connection cap and rate shared by every process using it \
     (percent-encoded in a DSN query)",
)
.env(&["MAIL_LIMITS_URL"])
.secret();

/// What happens while the shared limits are unreachable.
pub(crate) const LIMITS_FAIL: Key = Key::new(
    "limits_fail",
    Doc::Limits,
    "while Redis is unreachable or slow (> 500 ms): `local` (per-process limits, warned) or \
     `wait` (bounded by the URL's `wait=S`, default 30)",
)
.env(&["MAIL_LIMITS_FAIL"])
.default("local")
.parse(Parse::Choice {
    words: &["local", "wait"],
    expected: "`local` (per-process limits while Redis is unreachable) or `wait` (wait for \
               Redis, bounded)",
});

/// How long a failed member of failover() or roundrobin() is set aside.
pub(crate) const COOLDOWN: Key = Key::new(
    "cooldown",
    Doc::General,
    "seconds a failed member of `failover(…)`/`roundrobin(…)` is set aside",
)
.env(&["MAIL_FAILOVER_COOLDOWN"])
.default("60")
.parse(Parse::Seconds { max: 86_400.0 });

/// What `failover(…)` and `roundrobin(…)` themselves take.
pub(crate) const GROUP: &[Key] = &[RETRIES, RATE, COOLDOWN];

/// Keys every kind has whose variables apply whatever the configuration's source (a DSN is
/// completed from them too).
pub(crate) const COMMON: &[&Key] = &[&DEFAULT_FROM, &RETRIES, &RATE, &LIMITS, &LIMITS_FAIL];

/// What the variables complete in each member of a group: retries and rate belong to the
/// group (retrying at two levels would multiply the attempts), the shared limits to each
/// member (each its own account).
pub(crate) const MEMBER_COMMON: &[&Key] = &[&DEFAULT_FROM, &LIMITS, &LIMITS_FAIL];

/// What the variables complete in a group itself.
pub(crate) const GROUP_COMMON: &[&Key] = &[&RETRIES, &RATE, &COOLDOWN];

// --- file and memory ----------------------------------------------------------------------

/// The `file` kind.
pub(crate) const FILE: &[Key] = &[
    DEFAULT_FROM,
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
    Key::new(
        "dir",
        Doc::General,
        "directory the `file` transport writes `.eml` files to",
    )
    .env(&["MAIL_FILE_DIR"])
    .aliases(&["path", "directory"])
    .default("./outbox")
    .dsn_part("path"),
];

/// The `memory` kind (tests): only what every kind has.
pub(crate) const MEMORY: &[Key] = &[DEFAULT_FROM, RETRIES, RATE, LIMITS, LIMITS_FAIL];

// --- smtp ----------------------------------------------------------------------------------

/// `tls` values that Dify's two flags spell too.
const TLS_AS_FLAGS: &[(&str, &[(&str, &str)])] = &[
    (
        "implicit",
        &[("use_tls", "true"), ("opportunistic_tls", "false")],
    ),
    (
        "starttls",
        &[("use_tls", "true"), ("opportunistic_tls", "true")],
    ),
    ("none", &[("use_tls", "false")]),
];

/// The `smtp` kind.
#[cfg(feature = "smtp")]
pub(crate) const SMTP: &[Key] = &[
    DEFAULT_FROM,
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
    Key::new("server", Doc::Smtp, "SMTP server host name or IP address")
        .env(&["SMTP_SERVER"])
        .aliases(&["host"])
        .dsn_part("host")
        .field("host"),
    Key::new(
        "port",
        Doc::Smtp,
        "port (default from the TLS mode: 465 implicit, 587 starttls, 25 none or opportunistic)",
    )
    .env(&["SMTP_PORT"])
    .parse(Parse::Whole { min: 1, max: 65535 })
    .dsn_part("port"),
    Key::new(
        "username",
        Doc::Smtp,
        "user name; login happens only when user name and password are both set; with OAuth2, \
         the mailbox",
    )
    .env(&["SMTP_USERNAME"])
    .aliases(&["user"])
    .dsn_part("user"),
    Key::new("password", Doc::Smtp, "password (basic auth)")
        .env(&["SMTP_PASSWORD"])
        .secret()
        .dsn_part("password"),
    Key::new(
        "use_tls",
        Doc::Smtp,
        "Dify's flag: `true` is TLS: implicit, or STARTTLS (required) with \
         `opportunistic_tls`; `false` is none",
    )
    .env(&["SMTP_USE_TLS"])
    .default("false")
    .parse(Parse::Bool),
    Key::new(
        "opportunistic_tls",
        Doc::Smtp,
        "Dify's flag: with `use_tls` true, STARTTLS (required) instead of implicit TLS",
    )
    .env(&["SMTP_OPPORTUNISTIC_TLS"])
    .default("false")
    .parse(Parse::Bool),
    Key::new(
        "tls",
        Doc::Smtp,
        "TLS mode: `implicit`, `starttls`, `opportunistic` (only this way) or `none`, instead \
         of Dify's flags; `smtp://` is `starttls`, `smtps://` is `implicit`",
    )
    .aliases(&["tls_mode"])
    .parse(Parse::Choice {
        words: &["implicit", "starttls", "opportunistic", "none"],
        expected: "one of: implicit, starttls, opportunistic, none",
    })
    .spelled_as(TLS_AS_FLAGS),
    Key::new(
        "tls_verify",
        Doc::Smtp,
        "`false` turns certificate verification off (warned)",
    )
    .env(&["SMTP_TLS_VERIFY"])
    .aliases(&["verify"])
    .default("true")
    .parse(Parse::Bool),
    Key::new(
        "ca_file",
        Doc::Smtp,
        "PEM file of extra trusted CA certificates (a server certificate in it is pinned)",
    )
    .env(&["SMTP_TLS_CA_FILE"])
    .aliases(&["tls_ca_file"]),
    Key::new(
        "timeout",
        Doc::Smtp,
        "seconds allowed for each SMTP phase, and for each token request",
    )
    .env(&["SMTP_TIMEOUT"])
    .default("30")
    .parse(Parse::Seconds { max: 3600.0 }),
    Key::new(
        "pool_size",
        Doc::Smtp,
        "connection cap per server and account (across processes with `MAIL_LIMITS_URL`)",
    )
    .env(&["SMTP_POOL_SIZE"])
    .default("3")
    .parse(Parse::Whole { min: 1, max: 100 }),
    Key::new(
        "chunking",
        Doc::Smtp,
        "`true`: BDAT (RFC 3030) where the server offers CHUNKING, up to 16 messages in flight \
         per connection (a connection lost then leaves each of them Ambiguous)",
    )
    .env(&["SMTP_CHUNKING"])
    .aliases(&["bdat"])
    .default("false")
    .parse(Parse::Bool),
    Key::new(
        "local_hostname",
        Doc::Smtp,
        "EHLO name (default: this host's name when it is a domain, else an address literal)",
    )
    .env(&["SMTP_LOCAL_HOSTNAME"])
    .aliases(&["ehlo"]),
    Key::new(
        "mechanism",
        Doc::Smtp,
        "SASL mechanism: PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER (default: chosen from what the \
         server offers)",
    )
    .aliases(&["sasl_mechanism", "auth_mechanism"])
    .parse(Parse::Choice {
        words: &["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"],
        expected: "one of: PLAIN, LOGIN, XOAUTH2, OAUTHBEARER",
    }),
    Key::new(
        "max_messages",
        Doc::Smtp,
        "messages sent over one connection before it is replaced",
    )
    .aliases(&["max_messages_per_connection"])
    .default("100")
    .parse(Parse::Whole {
        min: 1,
        max: 100_000,
    }),
    Key::new(
        "idle_timeout",
        Doc::Smtp,
        "seconds an unused pooled connection is kept open",
    )
    .default("30")
    .parse(Parse::Seconds { max: 86_400.0 }),
    Key::new(
        "auth_type",
        Doc::Smtp,
        "`basic` (user name and password) or `oauth2` (XOAUTH2/OAUTHBEARER with a token)",
    )
    .env(&["SMTP_AUTH_TYPE"])
    .aliases(&["auth"])
    .default("basic")
    .parse(Parse::Choice {
        words: &["basic", "oauth2"],
        expected: "basic or oauth2",
    }),
    Key::new(
        "oauth2_provider",
        Doc::SmtpOAuth2,
        "`microsoft` (client credentials), `google` (refresh token) or `generic` (any token URL)",
    )
    .env(&["SMTP_OAUTH2_PROVIDER"])
    .aliases(&["provider"])
    .default("microsoft")
    .parse(Parse::Choice {
        words: &["microsoft", "google", "generic"],
        expected: "microsoft (Entra ID client credentials, the default), google (refresh \
                   token) or generic (any token URL)",
    }),
    client_id(
        &["SMTP_CLIENT_ID", "MICROSOFT_OAUTH2_CLIENT_ID"],
        Doc::SmtpOAuth2,
        "the app's OAuth2 client (application) id",
    ),
    client_secret(&["SMTP_CLIENT_SECRET", "MICROSOFT_OAUTH2_CLIENT_SECRET"])
        .doc_in(Doc::SmtpOAuth2),
    tenant_id(&["SMTP_TENANT_ID", "MICROSOFT_OAUTH2_TENANT_ID"]).doc_in(Doc::SmtpOAuth2),
    AUTHORITY,
    Key::new(
        "token_url",
        Doc::SmtpOAuth2,
        "token endpoint (overrides the provider's; required for `generic`)",
    )
    .env(&["SMTP_OAUTH2_TOKEN_URL"]),
    Key::new(
        "scope",
        Doc::SmtpOAuth2,
        "scope to ask for (default: the provider's for SMTP, \
         `https://outlook.office365.com/.default` for Microsoft client credentials)",
    )
    .env(&["SMTP_OAUTH2_SCOPE"]),
    Key::new(
        "refresh_token",
        Doc::SmtpOAuth2,
        "refresh token of a delegated account (required for `google`; with `microsoft` or \
         `generic` it selects the refresh-token flow)",
    )
    .env(&["SMTP_OAUTH2_REFRESH_TOKEN"])
    .secret(),
    Key::new(
        "refresh_token_file",
        Doc::SmtpOAuth2,
        "file holding the latest refresh token: read at start, rewritten (mode 0600) when the \
         provider rotates it",
    )
    .env(&["SMTP_OAUTH2_REFRESH_TOKEN_FILE"]),
    Key::new(
        "access_token",
        Doc::SmtpOAuth2,
        "a static access token (never refreshed; when set, the other OAuth2 settings are \
         ignored)",
    )
    .env(&["SMTP_OAUTH2_ACCESS_TOKEN"])
    .aliases(&["oauth_access_token"])
    .secret(),
];

// --- The Entra ID application: SMTP's OAuth2 and Graph ----------------------------------

/// The Entra ID application (client) id under both of Dify's spellings, `env[0]` preferred.
const fn client_id(env: &'static [&'static str], doc: Doc, help: &'static str) -> Key {
    Key::new("client_id", doc, help).env(env)
}

/// The client secret.
const fn client_secret(env: &'static [&'static str]) -> Key {
    Key::new(
        "client_secret",
        Doc::SmtpOAuth2,
        "its client secret (the secret's value, not its id)",
    )
    .env(env)
    .secret()
}

/// The Entra ID tenant.
const fn tenant_id(env: &'static [&'static str]) -> Key {
    Key::new(
        "tenant_id",
        Doc::SmtpOAuth2,
        "Entra ID tenant (GUID or domain, e.g. contoso.onmicrosoft.com)",
    )
    .env(env)
    .aliases(&["tenant"])
}

/// The Microsoft authority host (national clouds, tests).
#[cfg(any(feature = "smtp", feature = "graph"))]
const AUTHORITY: Key = Key::new(
    "authority",
    Doc::SmtpOAuth2,
    "Microsoft token authority host (national clouds, tests)",
)
.env(&["MICROSOFT_OAUTH2_AUTHORITY"])
.default(crate::oauth::MICROSOFT_AUTHORITY);

impl Key {
    /// Listed in README's table `doc`.
    const fn doc_in(mut self, doc: Doc) -> Key {
        self.doc = doc;
        self
    }
}

// --- The HTTP providers ------------------------------------------------------------------

/// Seconds for a whole API request: every HTTP kind.
const HTTP_TIMEOUT: Key = Key::new(
    "timeout",
    Doc::Http,
    "seconds allowed for a whole API request (connect, send, answer)",
)
.default("30")
.parse(Parse::WholeSeconds { min: 1, max: 600 });

/// Seconds to connect: every HTTP kind.
const HTTP_CONNECT_TIMEOUT: Key = Key::new(
    "connect_timeout",
    Doc::Http,
    "seconds allowed to connect (TCP and TLS)",
)
.default("10")
.parse(Parse::WholeSeconds { min: 1, max: 300 });

/// The `resend` kind.
#[cfg(feature = "resend")]
pub(crate) const RESEND: &[Key] = &[
    DEFAULT_FROM,
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
    Key::new(
        "api_key",
        Doc::Http,
        "Resend API key (`re_…`); `MAIL_TYPE=resend`",
    )
    .env(&["RESEND_API_KEY"])
    .aliases(&["key"])
    .secret()
    .dsn_part("user part (the API key)"),
    Key::new("api_url", Doc::Http, "Resend API base URL")
        .env(&["RESEND_API_URL"])
        .aliases(&["url", "base_url"])
        .default(crate::http::resend::ResendTransport::DEFAULT_URL)
        .field("base_url"),
    HTTP_TIMEOUT,
    HTTP_CONNECT_TIMEOUT,
];

/// The `sendgrid` kind.
#[cfg(feature = "sendgrid")]
pub(crate) const SENDGRID: &[Key] = &[
    DEFAULT_FROM,
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
    Key::new(
        "api_key",
        Doc::Http,
        "SendGrid API key (`SG.…`) with the `mail.send` scope; `MAIL_TYPE=sendgrid`",
    )
    .env(&["SENDGRID_API_KEY"])
    .aliases(&["key"])
    .secret()
    .dsn_part("user part (the API key)"),
    Key::new(
        "api_url",
        Doc::Http,
        "SendGrid API base URL (EU subusers: `https://api.eu.sendgrid.com`)",
    )
    .env(&["SENDGRID_API_URL"])
    .aliases(&["url", "base_url"])
    .default(crate::http::sendgrid::SendGridTransport::DEFAULT_URL)
    .field("base_url"),
    HTTP_TIMEOUT,
    HTTP_CONNECT_TIMEOUT,
];

/// The `graph` kind.
#[cfg(feature = "graph")]
pub(crate) const GRAPH: &[Key] = &[
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
    Key::new(
        "default_from",
        Doc::Http,
        "the mailbox Graph sends as (required; `POST /v1.0/users/{mailbox}/sendMail`), also \
         the sender of messages without From",
    )
    .env(&["MAIL_DEFAULT_SEND_FROM"])
    .aliases(&["from", "mailbox", "sender"])
    .parse(Parse::Mailbox)
    .field("mailbox"),
    client_id(
        &["MICROSOFT_OAUTH2_CLIENT_ID", "SMTP_CLIENT_ID"],
        Doc::Http,
        "the app registration for `MAIL_TYPE=graph` (app-only token, scope \
         `https://graph.microsoft.com/.default`, permission `Mail.Send`): its client id",
    )
    .dsn_part("user"),
    client_secret(&["MICROSOFT_OAUTH2_CLIENT_SECRET", "SMTP_CLIENT_SECRET"])
        .doc_in(Doc::Http)
        .dsn_part("password"),
    tenant_id(&["MICROSOFT_OAUTH2_TENANT_ID", "SMTP_TENANT_ID"])
        .doc_in(Doc::Http)
        .dsn_part("host"),
    AUTHORITY,
    Key::new(
        "api_url",
        Doc::Http,
        "Graph base URL (national clouds, tests)",
    )
    .env(&["MICROSOFT_GRAPH_API_URL"])
    .aliases(&["url", "base_url"])
    .default(crate::http::graph::GraphTransport::DEFAULT_URL)
    .field("base_url"),
    Key::new(
        "save_to_sent_items",
        Doc::Http,
        "`true` keeps a copy in the mailbox's Sent Items (JSON form; the MIME form always does)",
    )
    .env(&["MICROSOFT_GRAPH_SAVE_TO_SENT_ITEMS"])
    .default("false")
    .parse(Parse::Bool),
    HTTP_TIMEOUT,
    HTTP_CONNECT_TIMEOUT,
];
