//! The `file` kind: MAIL_FILE_DIR, `file:///path` DSNs (`file://./outbox` for a relative
//! path).

use std::path::PathBuf;
use std::sync::Arc;

use super::decode::decode_part;
use super::settings::{Settings, Value};
use crate::dev::FileTransport;
use crate::{Error, Transport};

pub(super) fn file_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let path = decode_part(url.path(), &format!("{} path", settings.dsn_source))?;
    let path = match url.host_str() {
        // `file://./outbox` or `file://outbox/sub`: a relative path written as a host.
        Some(host) if !host.is_empty() => format!("{host}{path}"),
        _ => path,
    };
    if !path.is_empty() {
        settings.set_named("dir", Value::Plain(path), settings.dsn_origin("path"));
    }
    Ok(())
}

pub(super) fn build_file(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    // Given, else the table's default (`./outbox`).
    let dir = settings.text_or_default("dir").unwrap_or(".");
    Ok(Arc::new(FileTransport::new(PathBuf::from(dir))))
}
