//! `outbound._native`: the compiled core of the Python package `outbound`.
//!
//! A thin layer over the `outbound` library: transports built by the library's own
//! configuration (`create_transport`, `from_dsn`, Dify's variables), messages built by its
//! `Message` builder, tokens from its cached, single-flight token sources. The seeds' API
//! (`MailMessage`, `MailSenderFactory`, `SMTPClient`, ...) is Python in `python/outbound/`.
//!
//! What a Python host needs is here: the GIL is released while a send waits on the network,
//! one tokio runtime is shared and recreated after `fork()`, and `tracing` events reach
//! Python's `logging` under the logger `outbound` (see `src/logging.rs`).

mod errors;
mod logging;
mod message;
mod runtime;
mod tokens;
mod transport;

use pyo3::prelude::*;

/// The module Python imports as `outbound._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install();
    m.add_class::<transport::NativeTransport>()?;
    m.add_class::<tokens::NativeTokenSource>()?;
    m.add_function(wrap_pyfunction!(supported_types, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_pid, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// The transport kinds this build supports (`outbound::supported_types`).
#[pyfunction]
fn supported_types() -> Vec<&'static str> {
    outbound::supported_types()
}

/// The process id the shared runtime was created in (0 before first use); tests use it to
/// see that a forked child got a runtime of its own.
#[pyfunction]
fn runtime_pid() -> u32 {
    runtime::owner_pid()
}
