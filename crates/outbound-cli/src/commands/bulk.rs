//! `outbound bulk`: many messages from JSON Lines through the configured transport, with a
//! progress bar (or plain periodic lines), a summary, and an optional journal
//! (`outbound::bulk` does the work; this module parses flags and prints).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outbound::bulk::{
    BulkError, BulkOptions, BulkRun, Journal, JournalError, JournalStatus, JournalSync, LineEvent,
    Observer, Summary,
};
use outbound::{Error, ErrorKind};
use serde_json::{json, Value};

use crate::cli::BulkArgs;
use crate::exit::{self, Failure};
use crate::load;
use crate::output;

/// Retries per message when nothing configures them (as for `send`).
const BULK_DEFAULT_RETRIES: u32 = 2;

/// Failures printed one by one before only the summary counts them.
const PRINTED_FAILURES: u64 = 100;

pub async fn run(args: BulkArgs) -> u8 {
    if args.status {
        return status(&args);
    }
    match bulk(&args).await {
        Ok(code) => code,
        Err(failure) => {
            if args.json {
                output::json(&json!({
                    "status": "failed",
                    "error": output::error_object(&failure),
                    "exit_code": failure.code(),
                }));
            }
            output::err(&failure);
            failure.code()
        }
    }
}

async fn bulk(args: &BulkArgs) -> Result<u8, Failure> {
    let Some(input) = &args.input else {
        return Err(Failure::Usage("--input FILE.jsonl is required".into()));
    };
    let mut loaded = load::load(args.dsn.dsn.as_deref())?;
    for note in loaded.notes() {
        output::err(format_args!("note: {note}"));
    }
    if loaded.configured() {
        load::apply_layer_flags(&mut loaded, &args.layers, BULK_DEFAULT_RETRIES)?;
    } else {
        output::err(
            "no transport configured (set MAILER_DSN or MAIL_TYPE; see `outbound config`); \
             messages are written to ./outbox instead of being sent",
        );
    }
    let transport = loaded.build()?;
    let options = BulkOptions {
        concurrency: usize::from(args.concurrency),
        batch: usize::from(args.batch),
        sync: if args.journal_sync == "normal" {
            JournalSync::Normal
        } else {
            JournalSync::Full
        },
        journal: args.journal.clone(),
        resend_ambiguous: args.resend_ambiguous,
    };
    let runner = BulkRun::new(transport.clone(), options);
    if args.journal.is_some() && runner.resends_in_flight() && !args.resend_ambiguous {
        tracing::info!("lines left in flight are resent at once (idempotent transport)");
    }
    let progress = Arc::new(Progress::new(
        Duration::from_secs(args.progress_every),
        input,
    ));
    let result = runner.run(input, progress.clone()).await;
    transport.close().await;
    progress.finish();
    let summary = result.map_err(bulk_failure)?;
    let code = summary.worst().map_or(exit::OK, exit::for_kind);
    report(&summary, &transport.describe(), code, args.json);
    Ok(code)
}

/// Setup errors: a changed or foreign input is invalid input (65); SQLite trouble (a full
/// disk) or another run holding the journal is temporary (75).
fn bulk_failure(err: BulkError) -> Failure {
    let kind = match &err {
        BulkError::Journal(
            JournalError::Sqlite { .. }
            | JournalError::WriterStopped(_)
            | JournalError::Busy { .. },
        ) => ErrorKind::Transient,
        _ => ErrorKind::InvalidMessage,
    };
    Failure::Error(Error::new(kind, err.to_string()))
}

/// The progress display: a bar with rate and ETA on a terminal, else a line every
/// `every` on stderr. Also prints each malformed, failed and in-doubt line.
struct Progress {
    bar: Option<ProgressBar>,
    input: std::path::PathBuf,
    every: Duration,
    last: Mutex<Instant>,
    started: Instant,
    total: AtomicU64,
    settled: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    doubt: AtomicU64,
}

impl Progress {
    fn new(every: Duration, input: &std::path::Path) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {pos}/{len} {per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            input: input.to_path_buf(),
            every,
            last: Mutex::new(Instant::now()),
            started: Instant::now(),
            total: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            doubt: AtomicU64::new(0),
        }
    }

    fn say(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(format!("outbound: {text}")),
            None => output::err(text),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn plain_line(&self) {
        let settled = self.settled.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let total = match self.total.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!("/{n}"),
        };
        output::err(format_args!(
            "progress: {settled}{total} lines, {} delivered, {} failed, {} in doubt, {:.0} lines/s",
            self.delivered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.doubt.load(Ordering::Relaxed),
            settled as f64 / secs
        ));
    }
}

impl Observer for Progress {
    fn started(&self, lines: Option<u64>) {
        self.total.store(lines.unwrap_or(0), Ordering::Relaxed);
        let Some(bar) = &self.bar else { return };
        match lines {
            Some(n) => bar.set_length(n),
            // The bar's length and ETA need the line count: counted beside the run (a
            // newline scan, far faster than sending).
            None => {
                let (bar, input) = (bar.clone(), self.input.clone());
                std::thread::spawn(move || {
                    if let Ok(n) = count_lines(&input) {
                        bar.set_length(n);
                    }
                });
            }
        }
    }

    fn line(&self, event: &LineEvent<'_>) {
        self.settled.fetch_add(1, Ordering::Relaxed);
        match event {
            LineEvent::Delivered { .. } => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            LineEvent::Failed { line, error } => {
                let printed = self.failed.fetch_add(1, Ordering::Relaxed);
                if printed < PRINTED_FAILURES {
                    self.say(format!(
                        "line {line}: failed ({}): {error}",
                        error.kind().as_str()
                    ));
                }
            }
            LineEvent::InDoubt { line } => {
                self.doubt.fetch_add(1, Ordering::Relaxed);
                self.say(format!(
                    "line {}: in doubt ({}), not resent: {}",
                    line.line,
                    line.reason,
                    line.message_id
                        .as_deref()
                        .unwrap_or("no Message-ID recorded")
                ));
            }
            LineEvent::Malformed { line, detail } => {
                self.say(format!("line {line}: malformed: {detail}"));
            }
            _ => {}
        }
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                if bar.length().is_none() {
                    bar.set_message(format!(
                        "{} delivered",
                        self.delivered.load(Ordering::Relaxed)
                    ));
                }
            }
            None if !self.every.is_zero() => {
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= self.every {
                    *last = Instant::now();
                    drop(last);
                    self.plain_line();
                }
            }
            None => {}
        }
    }
}

fn report(summary: &Summary, transport: &str, code: u8, json: bool) {
    let secs = summary.elapsed.as_secs_f64();
    if json {
        output::json(&json!({
            "status": if code == exit::OK { "sent" } else { "incomplete" },
            "transport": transport,
            "lines": summary.lines,
            "delivered": summary.delivered,
            "already_delivered": summary.already_delivered,
            "failed": summary.failed,
            "in_doubt": summary.in_doubt,
            "in_doubt_lines": summary.in_doubt_lines.iter().map(|d| json!({
                "line": d.line, "message_id": d.message_id, "reason": d.reason,
            })).collect::<Vec<_>>(),
            "resent": summary.resent,
            "malformed": summary.malformed,
            "malformed_lines": summary.malformed_lines.iter().map(|(line, detail)| json!({
                "line": line, "error": detail,
            })).collect::<Vec<_>>(),
            "rejected_recipients": summary.rejected_recipients,
            "not_sent": summary.not_sent,
            "aborted": summary.aborted.as_ref().map(|e| output::error_object(&Failure::Error(e.replicate_for_cli()))),
            "elapsed_ms": summary.elapsed.as_millis() as u64,
            "exit_code": code,
        }));
        return;
    }
    let failed = summary.failed_total();
    output::out(format_args!(
        "{} delivered, {} already delivered, {failed} failed, {} in doubt, {} malformed \
         ({} lines in {secs:.1} s via {transport})",
        summary.delivered,
        summary.already_delivered,
        summary.in_doubt,
        summary.malformed,
        summary.lines,
    ));
    if failed > 0 {
        let kinds: Vec<String> = summary
            .failed
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        output::out(format_args!(
            "failed by kind: {} (nothing was delivered; run again to retry)",
            kinds.join(", ")
        ));
    }
    if summary.resent > 0 {
        output::out(format_args!(
            "resent {} line(s) an earlier run left in flight",
            summary.resent
        ));
    }
    if summary.in_doubt > 0 {
        output::out(format_args!(
            "in doubt (may have been delivered; not resent: check, or run again with \
             --resend-ambiguous):"
        ));
        for d in &summary.in_doubt_lines {
            output::out(format_args!(
                "  line {} {} ({})",
                d.line,
                d.message_id.as_deref().unwrap_or("-"),
                d.reason
            ));
        }
    }
    if let Some(err) = &summary.aborted {
        output::err(format_args!(
            "stopped early; the lines not sent stay pending for a re-run: {err}"
        ));
    }
}

/// `--status --journal PATH`.
fn status(args: &BulkArgs) -> u8 {
    let Some(path) = &args.journal else {
        output::err("--status needs --journal PATH");
        return exit::USAGE;
    };
    let status = match Journal::status(path) {
        Ok(s) => s,
        Err(e) => {
            let failure = bulk_failure(BulkError::Journal(e));
            if args.json {
                output::json(&json!({
                    "status": "failed",
                    "error": output::error_object(&failure),
                    "exit_code": failure.code(),
                }));
            }
            output::err(&failure);
            return failure.code();
        }
    };
    if args.json {
        output::json(&status_json(&status));
    } else {
        print_status(&status);
    }
    exit::OK
}

fn status_json(status: &JournalStatus) -> Value {
    json!({
        "input": status.input,
        "created": status.created,
        "lines": status.lines,
        "states": status.states,
        "failed_by_kind": status.failed_by_kind,
        "in_doubt": status.in_doubt.iter().map(|r| json!({
            "line": r.line, "state": r.state.as_str(), "message_id": r.message_id,
            "reason": r.kind, "sends": r.sends,
        })).collect::<Vec<_>>(),
        "malformed": status.malformed.iter().map(|r| json!({
            "line": r.line, "error": r.detail,
        })).collect::<Vec<_>>(),
    })
}

fn print_status(status: &JournalStatus) {
    match status.lines {
        Some(lines) => output::out(format_args!("journal for {} ({lines} lines)", status.input)),
        None => output::out(format_args!(
            "journal for {} (not read to the end yet: lines not reached are pending)",
            status.input
        )),
    }
    for (state, n) in &status.states {
        output::out(format_args!("  {state}: {n}"));
    }
    if !status.failed_by_kind.is_empty() {
        let kinds: Vec<String> = status
            .failed_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        output::out(format_args!("failed by kind: {}", kinds.join(", ")));
    }
    if !status.in_doubt.is_empty() {
        output::out("in doubt:");
        for r in &status.in_doubt {
            output::out(format_args!(
                "  line {} {} ({})",
                r.line,
                r.message_id.as_deref().unwrap_or("-"),
                r.kind.as_deref().unwrap_or(r.state.as_str())
            ));
        }
    }
    for r in &status.malformed {
        output::out(format_args!(
            "malformed line {}: {}",
            r.line,
            r.detail.as_deref().unwrap_or("")
        ));
    }
}

/// The number of lines in `path` (a last line without a newline counts).
fn count_lines(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// Errors are not `Clone`; the summary keeps the one that stopped the run, and the report
/// needs an owned copy of its kind, codes and text.
trait ReplicateForCli {
    fn replicate_for_cli(&self) -> Error;
}

impl ReplicateForCli for Error {
    fn replicate_for_cli(&self) -> Error {
        let mut out = Error::new(self.kind(), self.message());
        if let Some(code) = self.code() {
            out = out.with_code(code.clone());
        }
        if let Some(text) = self.server_text() {
            out = out.with_server_text(text);
        }
        out
    }
}
