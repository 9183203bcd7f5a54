//! `NativeTransport`: one transport built by the library's configuration, kept for the life of
//! the Python object so its connection pool and token cache serve every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use outbound::config::Settings;
use outbound::{Receipt, Transport};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{runtime_error, to_py};
use crate::message::{AttachmentSpec, MessageSpec};
use crate::{logging, runtime};

/// The transport and the process it was built in. A forked child builds its own from the
/// same settings: the parent's pooled connections are the parent's (two processes writing to
/// one SMTP session would corrupt it), and are leaked, never closed, in the child.
struct Built {
    pid: u32,
    transport: Arc<dyn Transport>,
}

/// A transport built from settings (seeds' keys, a DSN, or Dify's variables).
#[pyclass(frozen, module = "outbound._native")]
pub(crate) struct NativeTransport {
    settings: Settings,
    built: Mutex<Built>,
}

impl NativeTransport {
    fn new(settings: Settings) -> PyResult<Self> {
        let transport = settings.build().map_err(to_py)?;
        Ok(NativeTransport {
            settings,
            built: Mutex::new(Built {
                pid: std::process::id(),
                transport,
            }),
        })
    }

    /// The transport of this process.
    fn transport(&self) -> PyResult<Arc<dyn Transport>> {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if built.pid != pid {
            let fresh = self.settings.build().map_err(to_py)?;
            let inherited = std::mem::replace(
                &mut *built,
                Built {
                    pid,
                    transport: fresh,
                },
            );
            std::mem::forget(inherited);
        }
        Ok(built.transport.clone())
    }
}

#[pymethods]
impl NativeTransport {
    /// `outbound::create_transport(kind, settings)`: the seeds' keys and Outbound's own.
    #[staticmethod]
    fn create(kind: &str, settings: Vec<(String, String)>) -> PyResult<Self> {
        Self::new(Settings::from_map(kind, settings).map_err(to_py)?)
    }

    /// A DSN (`smtp://user:pass@host:587`, `resend://KEY@default`, `failover(...)`), completed
    /// from `env` like `MAILER_DSN` (MAIL_DEFAULT_SEND_FROM, MAIL_RETRIES, MAIL_RATE).
    #[staticmethod]
    #[pyo3(signature = (dsn, env=None))]
    fn from_dsn(dsn: &str, env: Option<HashMap<String, String>>) -> PyResult<Self> {
        let env = env.unwrap_or_default();
        Self::new(Settings::from_dsn_with_env(dsn, "dsn", &env).map_err(to_py)?)
    }

    /// Dify's variables (MAIL_TYPE, SMTP_*, ... or MAILER_DSN) from a map; `None` when neither
    /// MAIL_TYPE nor MAILER_DSN is set.
    #[staticmethod]
    fn from_env(env: HashMap<String, String>) -> PyResult<Option<Self>> {
        match Settings::from_env_source(&env).map_err(to_py)? {
            Some(settings) => Self::new(settings).map(Some),
            None => Ok(None),
        }
    }

    /// The transport kind (`smtp`, `resend`, ...).
    #[getter]
    fn kind(&self) -> PyResult<&'static str> {
        Ok(self.transport()?.kind())
    }

    /// A one-line description without secrets.
    fn describe(&self) -> PyResult<String> {
        Ok(self.transport()?.describe())
    }

    /// Sends one message; returns the receipt as a dict. The GIL is released meanwhile.
    #[pyo3(signature = (*, to, subject, html=None, text=None, from_=None, cc=Vec::new(),
        bcc=Vec::new(), reply_to=Vec::new(), headers=Vec::new(), attachments=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn send<'py>(
        &self,
        py: Python<'py>,
        to: Vec<String>,
        subject: String,
        html: Option<String>,
        text: Option<String>,
        from_: Option<String>,
        cc: Vec<String>,
        bcc: Vec<String>,
        reply_to: Vec<String>,
        headers: Vec<(String, String)>,
        attachments: Vec<AttachmentSpec>,
    ) -> PyResult<Bound<'py, PyDict>> {
        logging::refresh_level(py);
        let transport = self.transport()?;
        let spec = MessageSpec {
            to,
            subject,
            html,
            text,
            from: from_,
            cc,
            bcc,
            reply_to,
            headers,
            attachments,
        };
        let outcome = py.detach(move || {
            runtime::block_on(async move {
                let message = spec.build()?;
                transport.send(&message).await
            })
        });
        let receipt = outcome.map_err(runtime_error)?.map_err(to_py)?;
        receipt_dict(py, &receipt)
    }

    /// Connects and authenticates (or checks the API key) without sending anything; raises
    /// the typed error on failure.
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        logging::refresh_level(py);
        let transport = self.transport()?;
        py.detach(move || runtime::block_on(async move { transport.verify().await }))
            .map_err(runtime_error)?
            .map_err(to_py)
    }

    /// Closes pooled connections politely (QUIT); the transport stays usable.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        logging::refresh_level(py);
        let transport = self.transport()?;
        py.detach(move || runtime::block_on(async move { transport.close().await }))
            .map_err(runtime_error)
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!("<outbound transport {}>", self.describe()?))
    }
}

fn receipt_dict<'py>(py: Python<'py>, r: &Receipt) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("transport", &r.transport)?;
    d.set_item("message_id", &r.message_id)?;
    d.set_item("provider_id", r.provider_id.as_deref())?;
    d.set_item("accepted", PyList::new(py, &r.accepted)?)?;
    let rejected = PyList::empty(py);
    for rej in &r.rejected {
        let item = PyDict::new(py);
        item.set_item("address", &rej.address)?;
        item.set_item("code", rej.code)?;
        item.set_item("enhanced_code", rej.enhanced.as_deref())?;
        item.set_item("text", &rej.text)?;
        rejected.append(item)?;
    }
    d.set_item("rejected", rejected)?;
    d.set_item("attempts", r.attempts)?;
    d.set_item("elapsed", r.elapsed.as_secs_f64())?;
    Ok(d)
}
