//! Runs a bulk send: reads the input on a thread, sends with `concurrency` workers through
//! any [`Transport`], and keeps the journal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::input::{is_blank, line_hash, BulkLine, LineHash, LineReader, RawLine, MAX_LINE_BYTES};
use super::journal::{
    Journal, JournalError, JournalSync, JournalWriter, LineRecord, LineState, Mark, Outcome,
};
use crate::{Error, ErrorKind, Message, Receipt, Transport};

/// How many in-doubt and malformed lines a [`Summary`] lists (the counts are always exact).
pub const LISTED: usize = 1000;

/// Lines a sending task marks in flight per commit unless told otherwise.
pub const DEFAULT_BATCH: usize = 64;

/// What a run does besides sending.
#[derive(Debug, Clone)]
pub struct BulkOptions {
    /// Messages sent at the same time (at least 1).
    pub concurrency: usize,
    /// Lines each sending task marks in flight with one journal commit (at least 1). A task
    /// sends one batch while the next one's mark is committed, so a crash leaves at most
    /// `concurrency × 2 × batch` lines in doubt.
    pub batch: usize,
    /// The journal file; `None` sends without one (nothing is resumable).
    pub journal: Option<PathBuf>,
    /// How hard journal commits are pushed to the disk.
    pub sync: JournalSync,
    /// Resend lines the journal has in doubt (in flight when a run stopped, or ambiguous).
    /// They may then arrive twice.
    pub resend_ambiguous: bool,
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            concurrency: 4,
            batch: DEFAULT_BATCH,
            sync: JournalSync::Full,
            journal: None,
            resend_ambiguous: false,
        }
    }
}

/// Why a run could not happen at all (per-line problems are in the [`Summary`] instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BulkError {
    /// The journal could not be used, or belongs to another input.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The input could not be read.
    #[error("cannot read the input {path}: {source}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A line the run did not send because its delivery status is unknown, or whose send this
/// run found ambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDoubt {
    /// The line number.
    pub line: u64,
    /// The Message-ID it went out with (look for it at the recipients).
    pub message_id: Option<String>,
    /// `ambiguous` (the transport could not tell) or `interrupted` (a run stopped while it
    /// was in flight).
    pub reason: String,
}

/// What happened to one line, as the run reports it to an [`Observer`].
#[derive(Debug)]
#[non_exhaustive]
pub enum LineEvent<'a> {
    /// Delivered now.
    Delivered {
        /// The line number.
        line: u64,
        /// The receipt.
        receipt: &'a Receipt,
    },
    /// Failed now; nothing was delivered.
    Failed {
        /// The line number.
        line: u64,
        /// Why.
        error: &'a Error,
    },
    /// Its delivery status is unknown (now, or left so by an earlier run).
    InDoubt {
        /// The line.
        line: &'a InDoubt,
    },
    /// Not a valid line.
    Malformed {
        /// The line number.
        line: u64,
        /// Why.
        detail: &'a str,
    },
    /// Delivered by an earlier run; skipped.
    AlreadyDelivered {
        /// The line number.
        line: u64,
    },
}

/// Hears about the run as it goes (for progress bars and logs). Called from the sending
/// tasks; keep it quick.
pub trait Observer: Send + Sync {
    /// The run starts; `lines` is the input's line count when known (with a journal).
    fn started(&self, _lines: Option<u64>) {}
    /// One line is settled.
    fn line(&self, _event: &LineEvent<'_>) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// The totals of a run.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Summary {
    /// Lines read (not counting empty ones).
    pub lines: u64,
    /// Delivered by this run.
    pub delivered: u64,
    /// Delivered by an earlier run, skipped.
    pub already_delivered: u64,
    /// Failed by this run, per error kind (nothing was delivered; a re-run retries them).
    pub failed: BTreeMap<&'static str, u64>,
    /// Lines whose delivery status is unknown: ambiguous in this run, or left in doubt by an
    /// earlier one and not resent.
    pub in_doubt: u64,
    /// The first [`LISTED`] of them.
    pub in_doubt_lines: Vec<InDoubt>,
    /// Lines an earlier run left in flight that this run resent at once (idempotent
    /// transports: the same key) or because it was asked to.
    pub resent: u64,
    /// Malformed lines.
    pub malformed: u64,
    /// The first [`LISTED`] malformed lines and why.
    pub malformed_lines: Vec<(u64, String)>,
    /// Recipients refused while others of the same message were accepted.
    pub rejected_recipients: u64,
    /// Set when the run stopped early because every further send would fail the same way
    /// (configuration, authentication, TLS); the lines not reached stay pending.
    pub aborted: Option<Error>,
    /// Lines already queued for sending when the run stopped early, and not sent.
    pub not_sent: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Summary {
    /// Failed lines, all kinds together.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// The worst outcome, for an exit code: what no re-run can fix comes first
    /// (configuration, authentication, TLS, permanent refusal, invalid input), then what is
    /// unknown (ambiguous), then what a re-run retries (transient, timeout, network).
    /// `None` when everything was delivered.
    pub fn worst(&self) -> Option<ErrorKind> {
        const ORDER: [ErrorKind; 9] = [
            ErrorKind::Config,
            ErrorKind::Auth,
            ErrorKind::Tls,
            ErrorKind::Permanent,
            ErrorKind::InvalidMessage,
            ErrorKind::Ambiguous,
            ErrorKind::Transient,
            ErrorKind::Timeout,
            ErrorKind::Network,
        ];
        let present = |k: ErrorKind| {
            self.failed.get(k.as_str()).is_some_and(|&n| n > 0)
                || self.aborted.as_ref().is_some_and(|e| e.kind() == k)
                || (k == ErrorKind::InvalidMessage && self.malformed > 0)
                || (k == ErrorKind::Ambiguous && self.in_doubt > 0)
        };
        ORDER.into_iter().find(|&k| present(k)).or_else(|| {
            // A kind added later: still a failure.
            (self.failed_total() > 0).then_some(ErrorKind::Transient)
        })
    }
}

/// A bulk run. See [`crate::bulk`] for the input, the journal and what a re-run does.
///
/// ```
/// use std::sync::Arc;
/// use outbound::bulk::{BulkOptions, BulkRun, Quiet};
/// use outbound::dev::MemoryTransport;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let input = dir.path().join("in.jsonl");
/// std::fs::write(&input, concat!(
///     "{\"from\":\"app@example.com\",\"to\":\"ada@example.com\",\"text\":\"hi\"}\n",
///     "{\"to\": 5}\n",
/// ))?;
/// let memory = Arc::new(MemoryTransport::new());
/// let options = BulkOptions { journal: Some(dir.path().join("run.journal")), ..BulkOptions::default() };
/// let summary = BulkRun::new(memory.clone(), options.clone()).run(&input, Arc::new(Quiet)).await?;
/// assert_eq!((summary.delivered, summary.malformed), (1, 1));
/// // Again with the same journal: nothing is sent twice.
/// let again = BulkRun::new(memory.clone(), options).run(&input, Arc::new(Quiet)).await?;
/// assert_eq!((again.delivered, again.already_delivered), (0, 1));
/// assert_eq!(memory.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BulkRun {
    transport: Arc<dyn Transport>,
    options: BulkOptions,
}

enum Job {
    Send {
        line: u64,
        /// The line's hash, for its journal row (`None` without a journal).
        hash: Option<LineHash>,
        spec: Box<BulkLine>,
        resent: bool,
    },
    Malformed {
        line: u64,
        hash: Option<LineHash>,
        detail: String,
    },
    AlreadyDelivered {
        line: u64,
    },
    InDoubt {
        record: LineRecord,
        interrupted: bool,
    },
}

struct Shared {
    transport: Arc<dyn Transport>,
    writer: Option<JournalWriter>,
    summary: Mutex<Summary>,
    stop: AtomicBool,
    observer: Arc<dyn Observer>,
    run_id: String,
    default_domain: Option<String>,
    base_dir: PathBuf,
}

impl BulkRun {
    /// A run through `transport` (built with the layers wanted: retry, rate, failover).
    pub fn new(transport: Arc<dyn Transport>, options: BulkOptions) -> Self {
        BulkRun { transport, options }
    }

    /// Whether lines found in flight are resent at once: the transport deduplicates by an
    /// idempotency key derived from the Message-ID and content, which a re-run reproduces
    /// exactly (Resend).
    pub fn resends_in_flight(&self) -> bool {
        self.options.resend_ambiguous || self.transport.kind() == "resend"
    }

    /// Sends every line of `input`, telling `observer` as lines settle.
    pub async fn run(
        &self,
        input: &Path,
        observer: Arc<dyn Observer>,
    ) -> Result<Summary, BulkError> {
        let started = Instant::now();
        let input_error = |source| BulkError::Input {
            path: input.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(input).map_err(input_error)?;
        let journal = match &self.options.journal {
            Some(path) => {
                let (path, input) = (path.clone(), input.to_path_buf());
                Some(
                    tokio::task::spawn_blocking(move || Journal::open(&path, &input))
                        .await
                        .map_err(|e| {
                            JournalError::WriterStopped(format!("the journal could not open: {e}"))
                        })??,
                )
            }
            None => None,
        };
        observer.started(journal.as_ref().and_then(Journal::lines));
        let run_id = match &journal {
            Some(j) => j.run_id().to_string(),
            None => unique_run_id(),
        };
        if let Some(j) = &journal {
            j.set_sync(self.options.sync)?;
        }
        // A new journal has no rows to read: every line is pending.
        let states = journal
            .as_ref()
            .filter(|j| !j.is_new())
            .map(Journal::reader)
            .transpose()?;
        let concurrency = self.options.concurrency.max(1);
        let writer = journal
            .map(|j| j.into_writer_for(concurrency))
            .transpose()?;
        let shared = Arc::new(Shared {
            transport: self.transport.clone(),
            writer,
            summary: Mutex::new(Summary::default()),
            stop: AtomicBool::new(false),
            observer,
            run_id,
            default_domain: default_domain(self.transport.as_ref()),
            base_dir: input
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        });

        let batch = self.options.batch.max(1);
        // Room for every task's next batch, so a task finds a full one waiting.
        let (tx, rx) = mpsc::channel::<Job>(concurrency * batch * 2);
        let resend_in_flight = self.resends_in_flight();
        let resend_ambiguous = self.options.resend_ambiguous;
        let reader_shared = shared.clone();
        let reader = tokio::task::spawn_blocking(move || {
            read_input(
                file,
                states,
                tx,
                &reader_shared,
                resend_in_flight,
                resend_ambiguous,
            )
        });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (shared, rx) = (shared.clone(), rx.clone());
            workers.spawn(async move { work(&shared, &rx, batch).await });
        }
        while workers.join_next().await.is_some() {}
        let read = reader.await.unwrap_or_else(|e| {
            Err(std::io::Error::other(format!(
                "the input reader failed: {e}"
            )))
        });
        let Ok(shared) = Arc::try_unwrap(shared) else {
            return Err(
                JournalError::WriterStopped("a sending task is still running".into()).into(),
            );
        };
        if let Some(writer) = shared.writer {
            writer.finish().await?;
        }
        read.map_err(input_error)?;
        let mut summary = shared
            .summary
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

fn unique_run_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The domain of the sender the transport supplies when a line has no `from` (for the
/// Message-IDs it derives), found by preparing a probe that is never sent.
fn default_domain(transport: &dyn Transport) -> Option<String> {
    let probe = Message::builder()
        .to("probe@example.invalid")
        .text("probe")
        .build()
        .ok()?;
    let prepared = transport.prepare(&probe).ok()?;
    let email = prepared.sender().ascii_email();
    let (_, domain) = email.rsplit_once('@')?;
    super::input::is_id_domain(domain).then(|| domain.to_string())
}

/// Reads the input on a blocking thread, decides per line what to do from the journal, and
/// queues the jobs (a bounded queue: memory stays flat however long the file).
fn read_input(
    file: std::fs::File,
    mut states: Option<super::journal::StateReader>,
    tx: mpsc::Sender<Job>,
    shared: &Shared,
    resend_in_flight: bool,
    resend_ambiguous: bool,
) -> std::io::Result<()> {
    let mut reader = LineReader::new(
        std::io::BufReader::with_capacity(256 * 1024, file),
        MAX_LINE_BYTES,
    );
    let journaled = shared.writer.is_some();
    let mut lines = 0;
    while let Some((line, raw)) = reader.next_line()? {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        lines = line;
        let record = match states.as_mut() {
            Some(s) => s.get(line).map_err(std::io::Error::other)?,
            None => None,
        };
        let state = record.as_ref().map(|r| r.state);
        let mut resent = false;
        match state {
            Some(LineState::Blank) => continue,
            Some(LineState::Delivered) => {
                if tx.blocking_send(Job::AlreadyDelivered { line }).is_err() {
                    break;
                }
                continue;
            }
            Some(LineState::InFlight) if !resend_in_flight => {
                let job = Job::InDoubt {
                    record: record.unwrap_or_else(|| blank_record(line)),
                    interrupted: true,
                };
                if tx.blocking_send(job).is_err() {
                    break;
                }
                continue;
            }
            Some(LineState::Ambiguous) if !resend_ambiguous => {
                let job = Job::InDoubt {
                    record: record.unwrap_or_else(|| blank_record(line)),
                    interrupted: false,
                };
                if tx.blocking_send(job).is_err() {
                    break;
                }
                continue;
            }
            Some(LineState::InFlight | LineState::Ambiguous) => resent = true,
            _ => {}
        }
        let hash = journaled.then(|| line_hash(&raw));
        let job = match raw {
            RawLine::TooLong(len) => Job::Malformed {
                line,
                hash,
                detail: format!("the line is {len} bytes, more than the {MAX_LINE_BYTES} allowed"),
            },
            RawLine::Text(bytes) if is_blank(&bytes) => {
                shared.record(line, hash, Outcome::Blank);
                continue;
            }
            RawLine::Text(bytes) => match BulkLine::parse(&bytes) {
                Ok(spec) => Job::Send {
                    line,
                    hash,
                    spec: Box::new(spec),
                    resent,
                },
                Err(e) => Job::Malformed {
                    line,
                    hash,
                    detail: format!("not a message description: {e}"),
                },
            },
        };
        if tx.blocking_send(job).is_err() {
            return Ok(());
        }
    }
    // The whole input was read: a re-run checks its line count.
    if let Some(w) = &shared.writer {
        if let Err(e) = w.input_read(lines) {
            shared.abort(Error::new(ErrorKind::Transient, e.to_string()));
        }
    }
    Ok(())
}

fn blank_record(line: u64) -> LineRecord {
    LineRecord {
        line,
        state: LineState::InFlight,
        message_id: None,
        kind: None,
        code: None,
        detail: None,
        provider_id: None,
        sends: 0,
    }
}

impl Shared {
    fn summary(&self) -> std::sync::MutexGuard<'_, Summary> {
        self.summary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a line's outcome in the journal (if there is one). `hash` is given for a line
    /// never marked in flight (malformed, blank, failed while prepared): its row may not
    /// exist yet.
    fn record(&self, line: u64, hash: Option<LineHash>, outcome: Outcome) {
        if let Some(w) = &self.writer {
            let recorded = match hash {
                Some(hash) => w.record_line(line, hash, outcome),
                None => w.record(line, outcome),
            };
            if let Err(e) = recorded {
                self.abort(Error::new(ErrorKind::Transient, e.to_string()));
            }
        }
    }

    fn abort(&self, error: Error) {
        self.stop.store(true, Ordering::Relaxed);
        let mut s = self.summary();
        if s.aborted.is_none() {
            tracing::error!(error = %error, "bulk run stops: every further send would fail");
            s.aborted = Some(error);
        }
    }

    fn in_doubt(&self, entry: InDoubt) {
        self.observer.line(&LineEvent::InDoubt { line: &entry });
        let mut s = self.summary();
        s.in_doubt += 1;
        if s.in_doubt_lines.len() < LISTED {
            s.in_doubt_lines.push(entry);
        }
    }

    fn message_id(&self, line: u64, spec: &BulkLine) -> Option<String> {
        let domain = spec.from_domain().or(self.default_domain.as_deref())?;
        Some(format!("bulk.{}.{line}@{domain}", self.run_id))
    }
}

/// Kinds after which every further send would fail the same way: stop instead of trying
/// every line.
fn stops_the_run(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Config | ErrorKind::Auth | ErrorKind::Tls)
}

async fn handle(shared: &Shared, job: Job) {
    match job {
        Job::AlreadyDelivered { line } => {
            let mut s = shared.summary();
            s.lines += 1;
            s.already_delivered += 1;
            drop(s);
            shared.observer.line(&LineEvent::AlreadyDelivered { line });
        }
        Job::Malformed { line, hash, detail } => {
            shared.record(
                line,
                hash,
                Outcome::Malformed {
                    detail: detail.clone(),
                },
            );
            shared.observer.line(&LineEvent::Malformed {
                line,
                detail: &detail,
            });
            let mut s = shared.summary();
            s.lines += 1;
            s.malformed += 1;
            if s.malformed_lines.len() < LISTED {
                s.malformed_lines.push((line, detail));
            }
        }
        Job::InDoubt {
            record,
            interrupted,
        } => {
            shared.summary().lines += 1;
            let reason = if interrupted {
                "interrupted".to_string()
            } else {
                record.kind.clone().unwrap_or_else(|| "ambiguous".into())
            };
            if interrupted {
                shared.record(
                    record.line,
                    None,
                    Outcome::Ambiguous {
                        kind: "interrupted",
                        detail: "a run stopped while the line was being sent; it may have been \
                                 delivered"
                            .into(),
                    },
                );
            }
            shared.in_doubt(InDoubt {
                line: record.line,
                message_id: record.message_id,
                reason,
            });
        }
        Job::Send {
            line,
            hash,
            spec,
            resent,
        } => send_batch(shared, vec![(line, hash, spec, resent)]).await,
    }
}

type Queue = tokio::sync::Mutex<mpsc::Receiver<Job>>;

/// A line ready to go: its number, the prepared message, whether it is a resend.
type Ready = (u64, crate::message::PreparedMessage, bool);

/// A line to prepare: its number, its hash (with a journal), what it says, whether it is a
/// resend.
type ToSend = (u64, Option<LineHash>, Box<BulkLine>, bool);

/// A batch that takes a task less than this to send is too small: its commit would cost more
/// than its lines are worth, so the next batch is twice as big (up to `--batch`). A crash
/// then leaves in doubt about what a task sends in this time, and never more than its two
/// batches.
const BATCH_TIME: Duration = Duration::from_millis(20);

/// One sending task. It keeps two batches: the one it sends, and the next one, whose
/// in-flight mark is being committed meanwhile (so the commit's `fsync` overlaps the sends).
///
/// With a journal the batch starts at one line and doubles, up to `max_batch`, each time the
/// task sent a batch in less than [`BATCH_TIME`] or finished sending it before the next
/// one's mark was committed. A slow transport (a rate cap, a server's round trips across a
/// network) keeps it small, so few lines are in doubt after a crash; a fast one grows it
/// until each commit carries enough lines to be worth its `fsync`, since commits, not lines,
/// are what the journal costs.
async fn work(shared: &Shared, rx: &Queue, max_batch: usize) {
    let mut batch = if shared.writer.is_some() {
        1
    } else {
        max_batch
    };
    let mut current: Vec<Ready> = Vec::new();
    loop {
        let (jobs, closed) = take(rx, batch, current.is_empty()).await;
        let mut sends = Vec::new();
        for job in jobs {
            match job {
                Job::Send {
                    line,
                    hash,
                    spec,
                    resent,
                } => sends.push((line, hash, spec, resent)),
                other => handle(shared, other).await,
            }
        }
        let (mut next, marks) = prepare_all(shared, sends);
        let mark = match (&shared.writer, next.is_empty()) {
            (Some(w), false) => Some(w.begin_in_flight(marks)),
            _ => None,
        };
        let sent_any = !current.is_empty();
        let sending = Instant::now();
        send_all(shared, current.drain(..)).await;
        let quick = sending.elapsed() < BATCH_TIME;
        if let Some(mark) = mark {
            // Durable before a byte of their content goes out.
            let committed = async {
                let mut mark = mark?;
                if sent_any && (quick || !mark.is_committed()) {
                    batch = (batch * 2).min(max_batch);
                }
                mark.committed().await
            };
            if let Err(e) = committed.await {
                shared.summary().not_sent += next.len() as u64;
                shared.abort(Error::new(ErrorKind::Transient, e.to_string()));
                next.clear();
            }
        }
        current = next;
        if closed && current.is_empty() {
            return;
        }
    }
}

/// Up to `batch` jobs: waits for the first only when `wait` (nothing else to do). Also says
/// whether the queue is finished.
async fn take(rx: &Queue, batch: usize, wait: bool) -> (Vec<Job>, bool) {
    let mut rx = rx.lock().await;
    let mut jobs = Vec::with_capacity(batch);
    if wait {
        match rx.recv().await {
            Some(job) => jobs.push(job),
            None => return (jobs, true),
        }
    }
    while jobs.len() < batch {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(mpsc::error::TryRecvError::Empty) => return (jobs, false),
            Err(mpsc::error::TryRecvError::Disconnected) => return (jobs, true),
        }
    }
    (jobs, false)
}

/// Prepares lines to send; with a journal, also their in-flight marks.
fn prepare_all(shared: &Shared, lines: Vec<ToSend>) -> (Vec<Ready>, Vec<Mark>) {
    let mut ready = Vec::with_capacity(lines.len());
    let mut marks = Vec::new();
    for (line, hash, spec, resent) in lines {
        if shared.stop.load(Ordering::Relaxed) {
            shared.summary().not_sent += 1;
            continue;
        }
        shared.summary().lines += 1;
        let id = shared.message_id(line, &spec);
        let prepared = spec
            .to_message(id.as_deref(), &shared.base_dir)
            .map_err(Error::from)
            .and_then(|m| shared.transport.prepare(&m));
        match prepared {
            Ok(p) => {
                if let Some(hash) = hash {
                    marks.push(Mark {
                        line,
                        hash,
                        message_id: p.message_id().to_string(),
                    });
                }
                ready.push((line, p, resent));
            }
            // Never marked: with a journal, its failure makes its row.
            Err(error) => failed(shared, line, hash, &error),
        }
    }
    (ready, marks)
}

/// Prepares a batch, marks it in flight with one commit, then sends it.
async fn send_batch(shared: &Shared, lines: Vec<ToSend>) {
    let (ready, marks) = prepare_all(shared, lines);
    if ready.is_empty() {
        return;
    }
    if let Some(w) = &shared.writer {
        if let Err(e) = w.in_flight_all(marks).await {
            shared.summary().not_sent += ready.len() as u64;
            shared.abort(Error::new(ErrorKind::Transient, e.to_string()));
            return;
        }
    }
    send_all(shared, ready.into_iter()).await;
}

async fn send_all(shared: &Shared, ready: impl Iterator<Item = Ready>) {
    for (line, prepared, resent) in ready {
        if shared.stop.load(Ordering::Relaxed) {
            // Marked but never sent: pending again, not in doubt.
            shared.record(line, None, Outcome::Unsent);
            shared.summary().not_sent += 1;
            continue;
        }
        if resent {
            shared.summary().resent += 1;
        }
        send_one(shared, line, &prepared).await;
    }
}

async fn send_one(shared: &Shared, line: u64, prepared: &crate::message::PreparedMessage) {
    match shared.transport.send_prepared(prepared).await {
        Ok(receipt) => {
            shared.record(
                line,
                None,
                Outcome::Delivered {
                    provider_id: receipt.provider_id.clone(),
                },
            );
            shared.observer.line(&LineEvent::Delivered {
                line,
                receipt: &receipt,
            });
            let mut s = shared.summary();
            s.delivered += 1;
            s.rejected_recipients += receipt.rejected.len() as u64;
        }
        Err(error) if error.kind() == ErrorKind::Ambiguous => {
            shared.record(
                line,
                None,
                Outcome::Ambiguous {
                    kind: "ambiguous",
                    detail: error.to_string(),
                },
            );
            shared.in_doubt(InDoubt {
                line,
                message_id: Some(prepared.message_id().to_string()),
                reason: "ambiguous".into(),
            });
        }
        Err(error) => failed(shared, line, None, &error),
    }
}

/// A line failed. `hash` is given for a line that was never marked in flight (it failed
/// while being prepared), whose row may not exist yet.
fn failed(shared: &Shared, line: u64, hash: Option<LineHash>, error: &Error) {
    let kind = error.kind();
    let outcome = Outcome::Failed {
        kind: kind.as_str(),
        code: error
            .smtp_code()
            .or_else(|| error.http_status())
            .map(u32::from),
        detail: error.to_string(),
    };
    shared.record(line, hash, outcome);
    shared.observer.line(&LineEvent::Failed { line, error });
    *shared.summary().failed.entry(kind.as_str()).or_default() += 1;
    if stops_the_run(kind) {
        shared.abort(error.replicate());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dev::MemoryTransport;

    fn write(dir: &Path, lines: &[&str]) -> PathBuf {
        let p = dir.join("in.jsonl");
        std::fs::write(&p, lines.join("\n")).unwrap();
        p
    }

    fn line(n: usize) -> String {
        format!(
            r#"{{"from":"app@example.com","to":"u{n}@example.com","subject":"n{n}","text":"hello {n}"}}"#
        )
    }

    #[tokio::test]
    async fn malformed_lines_are_counted_and_the_run_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let good = line(1);
        let input = write(
            dir.path(),
            &[
                &good,
                "{oops",
                "",
                r#"{"to":"a@example.com","subjet":"x"}"#,
                r#"{"to":"bad address","text":"x","from":"a@example.com"}"#,
                &line(2),
            ],
        );
        let memory = Arc::new(MemoryTransport::new());
        let s = BulkRun::new(memory.clone(), BulkOptions::default())
            .run(&input, Arc::new(Quiet))
            .await
            .unwrap();
        assert_eq!(s.delivered, 2);
        assert_eq!(s.malformed, 2);
        assert_eq!(
            s.malformed_lines.iter().map(|l| l.0).collect::<Vec<_>>(),
            [2, 4]
        );
        assert_eq!(
            s.failed["invalid_message"], 1,
            "line 5 parses but is not a valid message"
        );
        assert_eq!(s.lines, 5, "the empty line is not counted");
        assert_eq!(s.worst(), Some(ErrorKind::InvalidMessage));
        assert_eq!(memory.messages().len(), 2);
    }

    /// A transport that, before each send, counts the lines the journal has in flight.
    #[derive(Debug)]
    struct InFlightProbe {
        inner: MemoryTransport,
        journal: PathBuf,
        delay: Duration,
        most: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait]
    impl Transport for InFlightProbe {
        async fn send_prepared(
            &self,
            message: &crate::message::PreparedMessage,
        ) -> Result<Receipt, Error> {
            let n = super::super::journal::lines_in_flight(&self.journal);
            self.most.fetch_max(n, Ordering::Relaxed);
            tokio::time::sleep(self.delay).await;
            self.inner.send_prepared(message).await
        }
        async fn verify(&self) -> Result<(), Error> {
            Ok(())
        }
        fn kind(&self) -> &'static str {
            "memory"
        }
    }

    async fn most_in_flight(lines: usize, delay: Duration) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<String> = (1..=lines).map(line).collect();
        let refs: Vec<&str> = text.iter().map(String::as_str).collect();
        let input = write(dir.path(), &refs);
        let jp = dir.path().join("j.sqlite");
        let probe = Arc::new(InFlightProbe {
            inner: MemoryTransport::new(),
            journal: jp.clone(),
            delay,
            most: Default::default(),
        });
        let options = BulkOptions {
            concurrency: 2,
            batch: 64,
            sync: JournalSync::Normal,
            journal: Some(jp),
            resend_ambiguous: false,
        };
        let summary = BulkRun::new(probe.clone(), options)
            .run(&input, Arc::new(Quiet))
            .await
            .unwrap();
        assert_eq!(summary.delivered, lines as u64);
        probe.most.load(Ordering::Relaxed)
    }

    /// The batch starts at one line and grows only when sending is quick (or outpaces the
    /// journal): a slow transport (25 ms a message, more than `BATCH_TIME`) keeps at most
    /// `concurrency × 2` lines in flight (a task's current line and its next), a fast one
    /// lets the batch grow towards `--batch`.
    #[tokio::test]
    async fn the_batch_grows_only_when_sending_outpaces_the_journal() {
        let slow = most_in_flight(24, Duration::from_millis(25)).await;
        assert!(
            (1..=4).contains(&slow),
            "{slow} lines in flight at once with 2 slow tasks (at most 2 x 2 x 1)"
        );
        let fast = most_in_flight(3000, Duration::ZERO).await;
        assert!(
            fast > 4 && fast <= 2 * 2 * 64,
            "{fast} lines in flight at once with 2 fast tasks (between 2 x 2 x 1 and 2 x 2 x 64)"
        );
    }

    #[tokio::test]
    async fn a_rerun_sends_only_what_was_not_delivered_and_ids_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (1..=20).map(line).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let input = write(dir.path(), &refs);
        let jp = dir.path().join("j.sqlite");
        let options = BulkOptions {
            concurrency: 3,
            batch: 2,
            sync: JournalSync::Normal,
            journal: Some(jp.clone()),
            resend_ambiguous: false,
        };
        let memory = Arc::new(MemoryTransport::new());
        let first = BulkRun::new(memory.clone(), options.clone())
            .run(&input, Arc::new(Quiet))
            .await
            .unwrap();
        assert_eq!(first.delivered, 20);
        assert_eq!(first.worst(), None);
        let ids: Vec<String> = Journal::all_records(&jp)
            .unwrap()
            .into_iter()
            .map(|r| r.message_id.unwrap())
            .collect();
        assert!(
            ids[0].starts_with("<bulk.") && ids[0].ends_with(".1@example.com>"),
            "{}",
            ids[0]
        );

        // As a crash leaves it: line 5 in flight, line 6 failed, line 7 pending. (Opening
        // the journal makes its rows from the log.)
        drop(Journal::open(&jp, &input).unwrap());
        let conn = rusqlite::Connection::open(&jp).unwrap();
        conn.execute_batch(
            "UPDATE lines SET state = 'in_flight' WHERE line = 5;
             UPDATE lines SET state = 'failed', kind = 'transient' WHERE line = 6;
             UPDATE lines SET state = 'pending' WHERE line = 7;",
        )
        .unwrap();
        drop(conn);
        let again = BulkRun::new(memory.clone(), options.clone())
            .run(&input, Arc::new(Quiet))
            .await
            .unwrap();
        assert_eq!((again.delivered, again.already_delivered), (2, 17));
        assert_eq!(again.in_doubt, 1);
        assert_eq!(again.in_doubt_lines[0].line, 5);
        assert_eq!(again.in_doubt_lines[0].reason, "interrupted");
        assert_eq!(again.worst(), Some(ErrorKind::Ambiguous));
        let sent = memory.messages();
        assert_eq!(sent.len(), 22);
        // The resent lines kept their Message-IDs.
        let resent: Vec<&str> = sent[20..]
            .iter()
            .map(|m| m.receipt.message_id.as_str())
            .collect();
        assert!(
            resent.contains(&ids[5].as_str()) && resent.contains(&ids[6].as_str()),
            "{resent:?}"
        );
        let records = Journal::all_records(&jp).unwrap();
        assert_eq!(records[4].state, LineState::Ambiguous);
        assert_eq!(records[5].sends, 2);

        // Asked to, a run resends the line in doubt, with the same id.
        let forced = BulkRun::new(
            memory.clone(),
            BulkOptions {
                resend_ambiguous: true,
                ..options
            },
        )
        .run(&input, Arc::new(Quiet))
        .await
        .unwrap();
        assert_eq!(
            (forced.delivered, forced.resent, forced.in_doubt),
            (1, 1, 0)
        );
        assert_eq!(memory.messages()[22].receipt.message_id, ids[4]);
    }

    #[tokio::test]
    async fn a_changed_input_is_refused_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (line(1), line(2));
        let input = write(dir.path(), &[&a, &b]);
        let options = BulkOptions {
            journal: Some(dir.path().join("j.sqlite")),
            ..BulkOptions::default()
        };
        let memory = Arc::new(MemoryTransport::new());
        let run = BulkRun::new(memory.clone(), options);
        run.run(&input, Arc::new(Quiet)).await.unwrap();
        let c = line(3);
        write(dir.path(), &[&a, &c]);
        let err = run.run(&input, Arc::new(Quiet)).await.unwrap_err();
        assert!(
            matches!(
                err,
                BulkError::Journal(JournalError::InputChanged { line: 2, .. })
            ),
            "{err}"
        );
        assert_eq!(memory.messages().len(), 2);
    }

    #[tokio::test]
    async fn the_worst_outcome_orders_kinds() {
        let mut s = Summary::default();
        assert_eq!(s.worst(), None);
        s.failed.insert("transient", 3);
        assert_eq!(s.worst(), Some(ErrorKind::Transient));
        s.in_doubt = 1;
        assert_eq!(s.worst(), Some(ErrorKind::Ambiguous));
        s.failed.insert("permanent", 1);
        assert_eq!(s.worst(), Some(ErrorKind::Permanent));
        s.aborted = Some(Error::new(ErrorKind::Auth, "535"));
        assert_eq!(s.worst(), Some(ErrorKind::Auth));
    }
}
