//! `outbound send`: builds one message from flags (or takes a raw RFC 5322 message), sends it
//! through the configured transport, and reports the receipt or the error.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use outbound::{Attachment, Error, ErrorKind, Message, Receipt};
use serde_json::json;

use crate::cli::SendArgs;
use crate::exit::{self, Failure};
use crate::load;
use crate::output;

/// What is known about the attempt so far, for the report (also on failure).
#[derive(Debug, Default)]
struct Context {
    transport: Option<&'static str>,
    description: Option<String>,
    message_id: Option<String>,
    fallback: bool,
}

/// Retries `outbound send` makes when nothing configures them: a few, within the retry
/// policy's 60 s.
const SEND_DEFAULT_RETRIES: u32 = 2;

pub async fn run(args: SendArgs) -> u8 {
    let json = args.json;
    let mut ctx = Context::default();
    match send(&args, &mut ctx).await {
        Ok(receipt) => {
            report_sent(&receipt, &ctx, json);
            exit::OK
        }
        Err(failure) => {
            report_failure(&failure, &ctx, json);
            failure.code()
        }
    }
}

async fn send(args: &SendArgs, ctx: &mut Context) -> Result<Receipt, Failure> {
    let headers = args
        .header
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let inline = args
        .inline
        .iter()
        .map(|i| parse_inline(i))
        .collect::<Result<Vec<_>, _>>()?;
    check_usage(args)?;

    let mut loaded = load::load(args.dsn.dsn.as_deref())?;
    for note in loaded.notes() {
        output::err(format_args!("note: {note}"));
    }
    ctx.fallback = !loaded.configured();
    if loaded.configured() {
        load::apply_layer_flags(&mut loaded, &args.layers, SEND_DEFAULT_RETRIES)?;
    }
    let transport = loaded.build()?;
    ctx.transport = Some(transport.kind());
    ctx.description = Some(transport.describe());

    let mut budget = InputBudget::new(transport.size_limit())?;
    let message = build_message(args, headers, inline, &mut budget)?;
    // Prepared once: the id reported is the one every attempt and every transport sends.
    let prepared = transport.prepare(&message)?;
    ctx.message_id = Some(prepared.message_id().to_string());
    tracing::debug!(
        transport = %transport.describe(),
        message_id = prepared.message_id(),
        recipients = message.recipients().count(),
        "sending"
    );
    let result = transport.send_prepared(&prepared).await;
    // QUIT on pooled connections, after a failure too (RFC 5321 §4.1.1.10).
    transport.close().await;
    let receipt = result?;
    tracing::info!(
        message_id = %receipt.message_id,
        accepted = receipt.accepted.len(),
        rejected = receipt.rejected.len(),
        attempts = receipt.attempts,
        elapsed_ms = receipt.elapsed.as_millis() as u64,
        "sent"
    );
    Ok(receipt)
}

fn build_message(
    args: &SendArgs,
    headers: Vec<(String, String)>,
    inline: Vec<(String, &Path)>,
    budget: &mut InputBudget,
) -> Result<Message, Failure> {
    let mut builder = Message::builder();
    if let Some(from) = &args.from {
        builder = builder.from(from);
    }
    for to in &args.to {
        builder = builder.to(to);
    }
    for cc in &args.cc {
        builder = builder.cc(cc);
    }
    for bcc in &args.bcc {
        builder = builder.bcc(bcc);
    }
    if let Some(raw) = &args.raw {
        let bytes = budget.read(raw, "--raw")?;
        builder = builder
            .raw(bytes)
            .recipients_from_headers(args.recipients_from_headers);
        return Ok(builder.build()?);
    }
    for reply_to in &args.reply_to {
        builder = builder.reply_to(reply_to);
    }
    if let Some(subject) = &args.subject {
        builder = builder.subject(subject);
    }
    if let Some(html) = &args.html {
        builder = builder.html(html);
    }
    if let Some(path) = &args.html_file {
        builder = builder.html(read_text(
            budget.read(path, "--html-file")?,
            path,
            "--html-file",
        )?);
    }
    if let Some(text) = &args.text {
        builder = builder.text(text);
    }
    if let Some(path) = &args.text_file {
        builder = builder.text(read_text(
            budget.read(path, "--text-file")?,
            path,
            "--text-file",
        )?);
    }
    for path in &args.attach {
        builder = builder.attach(Attachment::named_after(
            path,
            budget.read_shared(path, "--attach")?,
        ));
    }
    for (cid, path) in inline {
        builder = builder.attach(
            Attachment::named_after(path, budget.read_shared(path, "--inline")?).inline(cid),
        );
    }
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    Ok(builder.build()?)
}

/// `Name: value` -> (`Name`, `value`). The name must be an RFC 5322 field name.
fn parse_header(input: &str) -> Result<(String, String), Failure> {
    let malformed = |why: &str| {
        Failure::Usage(format!(
            "--header {input:?} is malformed ({why}); expected 'Name: value', e.g. \
             --header 'X-Campaign: welcome'"
        ))
    };
    let Some((name, value)) = input.split_once(':') else {
        return Err(malformed("no `:`"));
    };
    if name.is_empty() {
        return Err(malformed("the name is empty"));
    }
    if !name.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(malformed("the name must be printable ASCII without spaces"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// `CID=FILE` -> (`CID`, `FILE`), split at the first `=` so the file name may contain one.
fn parse_inline(input: &str) -> Result<(String, &Path), Failure> {
    match input.split_once('=') {
        Some((cid, file)) if !cid.is_empty() && !file.is_empty() => {
            Ok((cid.to_string(), Path::new(file)))
        }
        _ => Err(Failure::Usage(format!(
            "--inline {input:?} is malformed; expected CID=FILE, e.g. --inline logo=logo.png \
             for <img src=\"cid:logo\">"
        ))),
    }
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// What clap cannot check: `-t` needs `--raw` (clap skips `requires` when a flag that
/// conflicts with `--raw` is present), and standard input can feed one flag at most.
fn check_usage(args: &SendArgs) -> Result<(), Failure> {
    if args.recipients_from_headers && args.raw.is_none() {
        return Err(Failure::Usage(
            "-t takes the recipients from a raw message's headers; it needs --raw FILE".into(),
        ));
    }
    let users: Vec<&str> = [
        ("--html-file", &args.html_file),
        ("--text-file", &args.text_file),
        ("--raw", &args.raw),
    ]
    .into_iter()
    .filter(|(_, p)| p.as_deref().is_some_and(is_stdin))
    .map(|(flag, _)| flag)
    .collect();
    if users.len() > 1 {
        return Err(Failure::Usage(format!(
            "standard input (`-`) can be read by one flag only, but {} all ask for it",
            users.join(" and ")
        )));
    }
    Ok(())
}

/// Reads a file, or standard input for `-`. Failure is invalid input (exit 65).
/// Largest message input when neither MAIL_MAX_SIZE nor the transport gives a limit (SMTP
/// servers announce theirs only after EHLO; 64 MiB is above every common one).
const DEFAULT_MAX_INPUT: u64 = 64 * 1024 * 1024;

/// What the files of one message (`--raw`, bodies from files, attachments) may add up to:
/// MAIL_MAX_SIZE, else the transport's own limit, else [`DEFAULT_MAX_INPUT`]. File sizes are
/// checked before anything is read, and only regular files (or `-`, standard input, read at
/// most to the limit) are accepted: `/dev/zero` or a FIFO must not fill the memory.
struct InputBudget {
    left: u64,
    limit: u64,
    origin: String,
}

impl InputBudget {
    fn new(transport_limit: Option<u64>) -> Result<Self, Failure> {
        use outbound::config::EnvSource;
        let (limit, origin) = match outbound::config::ProcessEnv.var("MAIL_MAX_SIZE") {
            Some(raw) => (
                parse_size(&raw).ok_or_else(|| {
                    Failure::Error(Error::config(format!(
                        "MAIL_MAX_SIZE is `{raw}`; expected a size in bytes, e.g. 10000000, \
                         25M or 1G"
                    )))
                })?,
                "MAIL_MAX_SIZE".to_string(),
            ),
            None => match transport_limit {
                Some(l) => (l, "the transport's limit".to_string()),
                None => (
                    DEFAULT_MAX_INPUT,
                    "the default; set MAIL_MAX_SIZE to change it".to_string(),
                ),
            },
        };
        Ok(InputBudget {
            left: limit,
            limit,
            origin,
        })
    }

    fn too_large(&self, flag: &str, what: &str, size: Option<u64>) -> Failure {
        let size = size.map(|s| format!(" ({s} bytes)")).unwrap_or_default();
        Failure::Error(Error::new(
            ErrorKind::InvalidMessage,
            format!(
                "{flag}: {what}{size} would make the message larger than {} bytes ({}); nothing \
                 was read",
                self.limit, self.origin
            ),
        ))
    }

    /// Reads `path` (a regular file, or `-` for standard input) within the budget.
    fn read(&mut self, path: &Path, flag: &str) -> Result<Vec<u8>, Failure> {
        match self.open(path, flag)? {
            None => self.read_within(std::io::stdin().lock(), flag, "standard input"),
            // A file that grows after the check is cut off at the limit and refused.
            Some((file, _, shown)) => self.read_within(file, flag, &shown),
        }
    }

    /// Like [`read`](Self::read), into shared bytes with one allocation: a `Vec` turned into
    /// the attachment's `Arc<[u8]>` would be copied once more (100 MB more at the peak, for a
    /// 100 MB file).
    fn read_shared(&mut self, path: &Path, flag: &str) -> Result<Arc<[u8]>, Failure> {
        let Some((mut file, len, shown)) = self.open(path, flag)? else {
            return self.read(path, flag).map(Arc::from);
        };
        let failed = |e: std::io::Error| {
            Failure::Error(Error::new(
                ErrorKind::InvalidMessage,
                format!("{flag}: cannot read {shown}: {e}"),
            ))
        };
        // `open` checked `len` against the budget, so it fits in memory's address space.
        let mut shared: Arc<[u8]> = std::iter::repeat_n(0u8, len as usize).collect();
        if let Some(buf) = Arc::get_mut(&mut shared) {
            file.read_exact(buf).map_err(failed)?; // a file that shrank meanwhile: refused
        }
        self.left -= len;
        // A file that grew after the check: its rest, within what is left, joined on.
        let rest = self.read_within(file, flag, &shown)?;
        if rest.is_empty() {
            return Ok(shared);
        }
        Ok(Arc::from([&shared[..], &rest[..]].concat()))
    }

    /// Opens a regular file within the budget (`None` for `-`, standard input), with its
    /// length and its name as shown in errors.
    fn open(
        &mut self,
        path: &Path,
        flag: &str,
    ) -> Result<Option<(std::fs::File, u64, String)>, Failure> {
        let unreadable = |what: &str, e: std::io::Error| {
            Failure::Error(Error::new(
                ErrorKind::InvalidMessage,
                format!("{flag}: cannot read {what}: {e}"),
            ))
        };
        if is_stdin(path) {
            return Ok(None);
        }
        let shown = format!("{:?}", path.display().to_string());
        let meta = std::fs::metadata(path).map_err(|e| unreadable(&shown, e))?;
        if !meta.is_file() {
            return Err(Failure::Error(Error::new(
                ErrorKind::InvalidMessage,
                format!(
                    "{flag}: {shown} is not a regular file (a directory, device or pipe); give a \
                     file{}",
                    if flag == "--attach" || flag == "--inline" {
                        ""
                    } else {
                        ", or `-` for standard input"
                    }
                ),
            )));
        }
        if meta.len() > self.left {
            return Err(self.too_large(flag, &shown, Some(meta.len())));
        }
        let file = std::fs::File::open(path).map_err(|e| unreadable(&shown, e))?;
        Ok(Some((file, meta.len(), shown)))
    }

    /// Reads at most what is left of the budget from `input`, refusing anything longer.
    fn read_within(
        &mut self,
        input: impl Read,
        flag: &str,
        what: &str,
    ) -> Result<Vec<u8>, Failure> {
        let mut buf = Vec::new();
        input
            .take(self.left.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| {
                Failure::Error(Error::new(
                    ErrorKind::InvalidMessage,
                    format!("{flag}: cannot read {what}: {e}"),
                ))
            })?;
        if buf.len() as u64 > self.left {
            return Err(self.too_large(flag, what, None));
        }
        self.left -= buf.len() as u64;
        Ok(buf)
    }
}

/// `10000000`, `25M`, `512K`, `1G` (binary multiples).
fn parse_size(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let (digits, mult) = match raw.chars().last()?.to_ascii_uppercase() {
        'K' => (&raw[..raw.len() - 1], 1u64 << 10),
        'M' => (&raw[..raw.len() - 1], 1 << 20),
        'G' => (&raw[..raw.len() - 1], 1 << 30),
        _ => (raw, 1),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|&n| n > 0)
}

fn read_text(bytes: Vec<u8>, path: &Path, flag: &str) -> Result<String, Failure> {
    String::from_utf8(bytes).map_err(|_| {
        Failure::Error(Error::new(
            ErrorKind::InvalidMessage,
            format!(
                "{flag}: {:?} is not UTF-8 text; convert it (e.g. with iconv) first",
                path.display().to_string()
            ),
        ))
    })
}

fn report_sent(receipt: &Receipt, ctx: &Context, json: bool) {
    let written_to = (receipt.transport == "file")
        .then_some(receipt.provider_id.as_deref())
        .flatten();
    if json {
        output::json(&json!({
            "status": "sent",
            "transport": receipt.transport,
            "message_id": receipt.message_id,
            "provider_id": receipt.provider_id,
            "recipients": output::recipients_object(receipt),
            "attempts": receipt.attempts,
            "elapsed_ms": receipt.elapsed.as_millis() as u64,
        }));
    } else {
        let description = ctx
            .description
            .clone()
            .unwrap_or_else(|| receipt.transport.clone());
        output::out(format_args!(
            "sent {} via {description} to {} recipient(s)",
            receipt.message_id,
            receipt.accepted.len()
        ));
        match (written_to, &receipt.provider_id) {
            (Some(path), _) => output::out(format_args!("wrote {path}")),
            (None, Some(id)) => output::out(format_args!("provider id: {id}")),
            (None, None) => {}
        }
    }
    for r in &receipt.rejected {
        let enhanced = r
            .enhanced
            .as_deref()
            .map(|e| format!(" {e}"))
            .unwrap_or_default();
        output::err(format_args!(
            "warning: {} was rejected: {}{enhanced} {}",
            r.address, r.code, r.text
        ));
    }
    if ctx.fallback {
        output::err(format_args!(
            "no transport configured (set MAILER_DSN or MAIL_TYPE; see `outbound config`); \
             wrote {} instead of sending",
            written_to.unwrap_or("the message to ./outbox")
        ));
    }
}

fn report_failure(failure: &Failure, ctx: &Context, json: bool) {
    if json {
        let kind = failure.error().map(outbound::Error::kind);
        // One final outcome: failed (resending is safe, or not) or ambiguous (it may have been
        // delivered: resending may deliver it twice).
        let ambiguous = kind == Some(ErrorKind::Ambiguous);
        output::json(&json!({
            "status": if ambiguous { "ambiguous" } else { "failed" },
            "transport": ctx.transport,
            "message_id": ctx.message_id,
            "resend_safe": kind.is_some_and(ErrorKind::is_retryable),
            "error": output::error_object(failure),
            "exit_code": failure.code(),
        }));
    } else {
        for line in failure_lines(failure, ctx) {
            output::err(line);
        }
    }
}

/// The human report of a failure, one `outbound: ` line each.
fn failure_lines(failure: &Failure, ctx: &Context) -> Vec<String> {
    let mut lines = vec![failure.to_string()];
    let Some(err) = failure.error() else {
        lines.push("see `outbound send --help`".into());
        return lines;
    };
    match err.kind() {
        ErrorKind::Ambiguous => lines.push(format!(
            "the delivery status of {} is unknown: it may have been delivered; check before \
             sending it again, or it may arrive twice",
            ctx.message_id.as_deref().unwrap_or("the message")
        )),
        ErrorKind::Config => lines
            .push("run `outbound config` to see the configuration and where it came from".into()),
        kind if kind.is_retryable() => {
            lines.push("nothing was delivered; it is safe to try again later".into())
        }
        _ => {}
    }
    if let Some(hint) = output::flag_hint(err) {
        lines.push(format!("hint: {hint}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_or_are_usage_errors() {
        assert_eq!(
            parse_header("X-Campaign:  welcome ").unwrap(),
            ("X-Campaign".to_string(), "welcome".to_string())
        );
        assert_eq!(parse_header("X-A:b:c").unwrap().1, "b:c");
        assert_eq!(parse_header("X-Empty:").unwrap().1, "");
        for bad in ["no colon", ": value", "X Campaign: v", "Näme: v", ""] {
            let err = parse_header(bad).unwrap_err();
            assert_eq!(err.code(), exit::USAGE, "{bad}");
        }
    }

    #[test]
    fn ambiguous_failures_say_the_delivery_status_is_unknown() {
        let ctx = Context {
            message_id: Some("<id@example.com>".into()),
            ..Context::default()
        };
        let err = Error::new(ErrorKind::Ambiguous, "connection lost after end of data");
        let lines = failure_lines(&Failure::Error(err), &ctx);
        assert!(lines[0].contains("delivery status unknown"), "{lines:?}");
        assert!(
            lines[1].contains("<id@example.com> is unknown"),
            "{lines:?}"
        );

        let err = Error::new(ErrorKind::Timeout, "greeting timed out");
        let lines = failure_lines(&Failure::Error(err), &ctx);
        assert!(lines[1].contains("safe to try again"), "{lines:?}");
        let err = Error::new(ErrorKind::Permanent, "550 no such user");
        assert_eq!(failure_lines(&Failure::Error(err), &ctx).len(), 1);
    }

    #[test]
    fn inline_splits_at_the_first_equals() {
        let (cid, path) = parse_inline("logo=img/a=b.png").unwrap();
        assert_eq!(cid, "logo");
        assert_eq!(path, Path::new("img/a=b.png"));
        for bad in ["logo.png", "=logo.png", "logo=", ""] {
            assert_eq!(parse_inline(bad).unwrap_err().code(), exit::USAGE, "{bad}");
        }
    }
}
