//! `tracing` events from the library reach Python's `logging`.
//!
//! A `tracing` layer forwards every event whose target starts with `outbound` to the Python
//! logger named after its target (`outbound::smtp::wire` logs to `outbound.smtp.wire`, a child
//! of `outbound`). Python has no TRACE level: the SMTP dialogue (TRACE, target
//! `outbound::smtp::wire`, AUTH lines already redacted by the library) logs at DEBUG, so
//! `logging.getLogger("outbound").setLevel(logging.DEBUG)` shows it.
//!
//! Asking Python whether a level is enabled needs the GIL; so the effective level of the
//! `outbound` logger is read whenever Python calls into the package (the GIL is held then)
//! and kept in an atomic that the layer reads from any thread.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Python's level numbers.
const DEBUG: u8 = 10;
const INFO: u8 = 20;
const WARNING: u8 = 30;
const ERROR: u8 = 40;

/// The lowest Python level the `outbound` logger lets through (WARNING until first read).
static THRESHOLD: AtomicU8 = AtomicU8::new(WARNING);

fn python_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => ERROR,
        Level::WARN => WARNING,
        Level::INFO => INFO,
        Level::DEBUG | Level::TRACE => DEBUG,
    }
}

/// Re-reads the `outbound` logger's effective level (call with the GIL held).
pub(crate) fn refresh_level(py: Python<'_>) {
    let level = py
        .import("logging")
        .and_then(|m| m.call_method1("getLogger", ("outbound",)))
        .and_then(|l| l.call_method0("getEffectiveLevel"))
        .and_then(|v| v.extract::<i64>());
    if let Ok(level) = level {
        THRESHOLD.store(level.clamp(0, 255) as u8, Ordering::Relaxed);
    }
}

/// Installs the forwarding layer as the process's `tracing` subscriber (once; a host that
/// installed its own subscriber first keeps it).
pub(crate) fn install() {
    let subscriber = tracing_subscriber::registry().with(PythonLogging);
    let _ = tracing::subscriber::set_global_default(subscriber);
    Python::try_attach(refresh_level);
}

struct PythonLogging;

fn ours(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("outbound")
}

impl<S: Subscriber> Layer<S> for PythonLogging {
    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if ours(metadata) {
            // The level can change at any time: ask every time.
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        ours(metadata) && python_level(metadata.level()) >= THRESHOLD.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        let level = python_level(metadata.level());
        let logger = metadata.target().replace("::", ".");
        let line = text.finish();
        // Not at all during interpreter shutdown.
        Python::try_attach(|py| {
            let _ = py
                .import("logging")
                .and_then(|m| m.call_method1("getLogger", (logger,)))
                .and_then(|l| l.call_method1("log", (level, line)));
        });
    }
}

/// "message key=value key=value".
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else if self.message.is_empty() {
            self.fields.trim_start().to_string()
        } else {
            format!("{}{}", self.message, self.fields)
        }
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}
