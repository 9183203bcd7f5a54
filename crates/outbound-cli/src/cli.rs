//! The command line, as clap derive definitions. Parsing only: no I/O happens here.

use std::path::PathBuf;

use clap::builder::NonEmptyStringValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};

const MAIN_AFTER_HELP: &str = "\
Configuration: --dsn, else MAILER_DSN (e.g. smtp://user:pass@smtp.example.com:587), else
MAIL_TYPE with its variables (SMTP_SERVER, SMTP_PASSWORD, ...). With nothing configured,
`send` writes each message as a .eml file to ./outbox.

Exit codes: 0 sent or ok, 64 usage, 65 invalid message or input, 69 rejected or TLS,
75 temporary failure or delivery status unknown, 77 authentication, 78 configuration.

Logs go to stderr: -v, -vv, -vvv or OUTBOUND_LOG (e.g. OUTBOUND_LOG=debug); default warn.

Examples:
  outbound send --from app@example.com --to ada@example.com --subject Hi --text 'Hello'
  outbound check
  outbound token
  outbound config";

const SEND_AFTER_HELP: &str = "\
Bodies: give --html or --html-file, --text or --text-file, or both (a text part is derived
from HTML-only messages). FILE `-` reads standard input (for one flag at most).

Inline images: --inline CID=FILE adds FILE as an inline part that the HTML shows with
<img src=\"cid:CID\">. --attach FILE adds an ordinary attachment; both repeat.

Raw messages: --raw FILE (or --raw - for standard input) sends a complete RFC 5322 message
as it is. Recipients come from --to/--cc/--bcc, or with -t from its To, Cc and Bcc headers
(Bcc is removed before sending). --from then sets only the envelope sender.

Without --from, the configured default sender (MAIL_DEFAULT_SEND_FROM or the DSN's ?from=)
is used. With nothing configured the message is written to ./outbox, not delivered.

Examples:
  outbound send --from app@example.com --to ada@example.com --subject Welcome --text 'Hello Ada'
  outbound send --to ada@example.com --subject Logo --html-file mail.html --inline logo=logo.png
  outbound send --to ops@example.com --subject Report --text-file - --attach report.pdf < summary.txt
  outbound send --to ada@example.com --text hi --header 'X-Campaign: welcome' --json
  outbound send --raw - -t < message.eml
  outbound send --dsn 'smtp://user:pass@smtp.example.com:587' --to ada@example.com --text hi";

const CHECK_AFTER_HELP: &str = "\
Builds the configured transport and verifies it: connects and authenticates (or checks the
API key, or that the outbox directory is writable). Nothing is sent. With nothing configured
this fails with exit code 78.

Examples:
  outbound check
  outbound check --dsn 'smtps://user:pass@smtp.example.com:465' --json";

const TOKEN_AFTER_HELP: &str = "\
Acquires an OAuth2 access token the way the configured transport does (SMTP with
SMTP_AUTH_TYPE=oauth2, or MAIL_TYPE=graph) and prints it masked (first and last characters and
its length), with its scope and when it expires. Nothing is sent and no mail server is
contacted: only the token endpoint.

Exit codes: 0 a token was obtained; 77 the provider refused the credentials (its reason is
shown, e.g. AADSTS7000215 for a wrong client secret); 78 the configuration is invalid or the
transport does not use OAuth2; 75 the token endpoint failed or did not answer in time.

Examples:
  outbound token
  outbound token --json
  outbound token --dsn 'smtp://mailer%40contoso.com@smtp.office365.com:587?auth=oauth2&tenant=contoso.onmicrosoft.com&client_id=APP_ID&client_secret=SECRET'";

const CONFIG_AFTER_HELP: &str = "\
Shows the effective configuration: the transport kind, each of its settings with its value
and where the value came from (an environment variable, a part of the DSN, a default, or
unset), and any problems. Secrets are shown as `******** (N chars)`. An invalid
configuration exits with code 78.

Examples:
  outbound config
  MAILER_DSN='file:///tmp/outbox?from=app@example.com' outbound config --json";

const BULK_AFTER_HELP: &str = "\
Input: JSON Lines, one message per line with the fields of `send`: to, cc, bcc (a string or a
list), from, reply_to, subject, html, text, headers ({\"Name\": \"value\"}), attachments
(paths relative to the input file, or {\"path\": ..., \"inline\": CID}), tags, metadata,
message_id, raw (a complete RFC 5322 message). A malformed line is reported with its number
and counted; the run goes on. The input is streamed.

Journal: with --journal PATH (a SQLite file) every line's state is recorded, and a line is
durably marked in flight before it is sent. Run the same command again after a crash or
kill -9: delivered lines are skipped, failed ones retried; lines that were in flight are
listed as in doubt (at most --concurrency x 2 x --batch per interruption) and not resent unless
--resend-ambiguous, except on Resend, where they are resent at once with the same
Idempotency-Key. A journal refuses an input that changed.

Exit code: the worst outcome: 78 configuration, 77 authentication, 69 rejected or TLS,
65 malformed or invalid lines, 75 in doubt or temporary failures; 0 when all were delivered.

Examples:
  outbound bulk --input invites.jsonl --journal invites.journal --concurrency 8
  outbound bulk --input invites.jsonl --journal invites.journal --rate 10/s --json
  outbound bulk --status --journal invites.journal";

const TYPES_AFTER_HELP: &str = "\
Examples:
  outbound types
  outbound types --json";

/// Send transactional email over SMTP, Microsoft Graph, Resend or SendGrid, and diagnose a
/// mail setup.
#[derive(Debug, Parser)]
#[command(name = "outbound", version, after_help = MAIN_AFTER_HELP)]
pub struct Cli {
    /// Log more on stderr: -v info, -vv debug, -vvv trace (overrides OUTBOUND_LOG)
    #[arg(short, long, action = ArgAction::Count, global = true, display_order = 100)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one message
    #[command(after_help = SEND_AFTER_HELP)]
    Send(Box<SendArgs>),
    /// Verify the configured transport (connect, authenticate; send nothing)
    #[command(after_help = CHECK_AFTER_HELP)]
    Check(CheckArgs),
    /// Acquire an OAuth2 token as configured; print it masked with its scope and expiry
    #[command(after_help = TOKEN_AFTER_HELP)]
    Token(TokenArgs),
    /// Show the effective configuration, where each value came from, and problems
    #[command(after_help = CONFIG_AFTER_HELP)]
    Config(ConfigArgs),
    /// Send many messages from JSON Lines, resumable with a journal
    #[command(after_help = BULK_AFTER_HELP)]
    Bulk(Box<BulkArgs>),
    /// List the supported transport kinds
    #[command(after_help = TYPES_AFTER_HELP)]
    Types(TypesArgs),
}

/// Retries and rate for commands that send (over MAIL_RETRIES, MAIL_RATE and the DSN's).
#[derive(Debug, Clone, Args)]
pub struct LayerArgs {
    /// Retries after the first attempt for failures that delivered nothing (default for
    /// `send`: 2, within 60 s; 0 turns them off)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: Option<u32>,
    /// Rate cap, e.g. 10/s or 30/min (burst optional: 30/min,burst=5)
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,
}

/// Where the configuration comes from (shared by the commands that use a transport).
#[derive(Debug, Clone, Args)]
pub struct DsnArg {
    /// Transport as a DSN, e.g. smtp://user:pass@host:587 (overrides MAILER_DSN and MAIL_TYPE)
    #[arg(long, value_name = "DSN", value_parser = NonEmptyStringValueParser::new())]
    pub dsn: Option<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipients: one address or an RFC 5322 list, e.g. `ada@example.com` or
    /// `Ada <ada@example.com>, bob@example.com` (repeatable)
    #[arg(long, value_name = "ADDRESSES")]
    pub to: Vec<String>,
    /// Cc recipients: one address or an RFC 5322 list (repeatable)
    #[arg(long, value_name = "ADDRESSES")]
    pub cc: Vec<String>,
    /// Bcc recipients: one address or an RFC 5322 list (repeatable; never written into the
    /// message)
    #[arg(long, value_name = "ADDRESSES")]
    pub bcc: Vec<String>,
    /// Sender (default: MAIL_DEFAULT_SEND_FROM or the DSN's ?from=)
    #[arg(long, value_name = "ADDRESS")]
    pub from: Option<String>,
    /// Reply-To addresses: one address or an RFC 5322 list (repeatable)
    #[arg(long = "reply-to", value_name = "ADDRESSES")]
    pub reply_to: Vec<String>,
    /// Subject (any Unicode)
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// HTML body
    #[arg(long, value_name = "HTML", conflicts_with = "html_file")]
    pub html: Option<String>,
    /// HTML body from a file (`-` = standard input)
    #[arg(long, value_name = "FILE")]
    pub html_file: Option<PathBuf>,
    /// Plain-text body
    #[arg(long, value_name = "TEXT", conflicts_with = "text_file")]
    pub text: Option<String>,
    /// Plain-text body from a file (`-` = standard input)
    #[arg(long, value_name = "FILE")]
    pub text_file: Option<PathBuf>,
    /// Attach a file (repeatable)
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
    /// Inline part for the HTML's <img src="cid:CID"> (repeatable)
    #[arg(long, value_name = "CID=FILE")]
    pub inline: Vec<String>,
    /// Extra header, 'Name: value' (repeatable)
    #[arg(long, value_name = "'NAME: VALUE'")]
    pub header: Vec<String>,
    /// Send a complete RFC 5322 message from FILE (`-` or no FILE = standard input)
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        default_missing_value = "-",
        conflicts_with_all = [
            "html", "html_file", "text", "text_file", "attach", "inline", "header", "subject",
            "reply_to",
        ],
    )]
    pub raw: Option<PathBuf>,
    /// With --raw: take recipients from the message's To, Cc and Bcc headers (like sendmail -t)
    #[arg(short = 't', requires = "raw")]
    pub recipients_from_headers: bool,
    #[command(flatten)]
    pub dsn: DsnArg,
    #[command(flatten)]
    pub layers: LayerArgs,
    /// Print one JSON object on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub dsn: DsnArg,
    /// Print one JSON object on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub dsn: DsnArg,
    /// Print one JSON object on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub dsn: DsnArg,
    /// Print one JSON object on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BulkArgs {
    /// The messages, one JSON object per line
    #[arg(long, value_name = "FILE.jsonl", required_unless_present = "status")]
    pub input: Option<PathBuf>,
    /// The journal (a SQLite file, created when missing) that makes a re-run resume
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// Messages sent at the same time
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// The most lines a sending task marks in flight per journal commit (it starts at 1 and
    /// grows only when sending outpaces the journal); a crash leaves at most
    /// concurrency x 2 x batch lines in doubt
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,
    /// `full`: fsync every journal commit (survives a power cut); `normal`: no fsync (survives
    /// a crash or kill -9 of this process, not of the machine)
    #[arg(long, value_name = "full|normal", default_value = "full",
          value_parser = ["full", "normal"])]
    pub journal_sync: String,
    /// Resend lines the journal has in doubt (they may arrive twice)
    #[arg(long)]
    pub resend_ambiguous: bool,
    /// Summarise the journal given with --journal; send nothing
    #[arg(long, requires = "journal", conflicts_with_all = ["input", "resend_ambiguous"])]
    pub status: bool,
    /// Seconds between progress lines when stderr is not a terminal (0: none)
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub progress_every: u64,
    #[command(flatten)]
    pub dsn: DsnArg,
    #[command(flatten)]
    pub layers: LayerArgs,
    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TypesArgs {
    /// Print a JSON array instead of one kind per line
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn raw_takes_an_optional_file() {
        let cli = Cli::try_parse_from(["outbound", "send", "--raw", "-t"]).unwrap();
        let Command::Send(args) = cli.command else {
            panic!("not send")
        };
        assert_eq!(args.raw.as_deref(), Some(std::path::Path::new("-")));
        assert!(args.recipients_from_headers);

        let cli = Cli::try_parse_from(["outbound", "send", "--raw", "m.eml"]).unwrap();
        let Command::Send(args) = cli.command else {
            panic!("not send")
        };
        assert_eq!(args.raw.as_deref(), Some(std::path::Path::new("m.eml")));
    }

    #[test]
    fn raw_conflicts_with_bodies_and_t_needs_raw() {
        assert!(Cli::try_parse_from(["outbound", "send", "--raw", "-", "--text", "x"]).is_err());
        // (clap skips `requires` when a conflicting flag is present; `send` checks that case.)
        assert!(Cli::try_parse_from(["outbound", "send", "-t", "--to", "a@example.com"]).is_err());
        assert!(Cli::try_parse_from(["outbound", "send", "--dsn", ""]).is_err());
    }
}
