//! Library errors as the package's exceptions.
//!
//! The exception classes live in Python (`outbound/_errors.py`, so they can be subclassed and
//! typed); here each `outbound::Error` becomes a call to `_errors._from_native` with its kind,
//! codes and server text. The texts are the library's own, which never hold secrets.

use outbound::{Error, ServerCode};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The Python exception for `err`.
pub(crate) fn to_py(err: Error) -> PyErr {
    Python::attach(|py| match build(py, &err) {
        Ok(exc) => exc,
        // The errors module itself failed to load: still say what went wrong.
        Err(e) => {
            let _ = e;
            pyo3::exceptions::PyRuntimeError::new_err(err.to_string())
        }
    })
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("kind", err.kind().as_str())?;
    kwargs.set_item("message", err.to_string())?;
    kwargs.set_item("detail", err.message())?;
    kwargs.set_item("retryable", err.is_retryable())?;
    kwargs.set_item("server_text", err.server_text())?;
    kwargs.set_item("setting", err.setting())?;
    kwargs.set_item("retry_after", err.retry_after().map(|d| d.as_secs_f64()))?;
    match err.code() {
        Some(ServerCode::Smtp { code, enhanced }) => {
            kwargs.set_item("smtp_code", *code)?;
            kwargs.set_item("enhanced_code", enhanced.as_deref())?;
        }
        Some(ServerCode::Http {
            status,
            provider_code,
        }) => {
            kwargs.set_item("http_status", *status)?;
            kwargs.set_item("provider_code", provider_code.as_deref())?;
        }
        _ => {}
    }
    let exc = py
        .import("outbound._errors")?
        .getattr("_from_native")?
        .call((), Some(&kwargs))?;
    Ok(PyErr::from_value(exc))
}

/// A failure of the runtime itself (no threads could be started).
pub(crate) fn runtime_error(err: std::io::Error) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the I/O runtime: {err}"))
}
