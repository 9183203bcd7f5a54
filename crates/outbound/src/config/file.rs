//! The `file` kind: MAIL_FILE_DIR, `file:///path` DSNs (`file://./outbox` for a relative
//! path).

use std::path::PathBuf;
use std::sync::Arc;

use super::registry::{Key, DEFAULT_FROM, RATE, RETRIES};
use super::registry::{LIMITS, LIMITS_FAIL};
use super::{Settings, Value};
use crate::dev::FileTransport;
use crate::{Error, Transport};

pub(super) const FILE_KEYS: &[Key] = &[
    DEFAULT_FROM,
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
    Key {
        name: "dir",
        env: &["MAIL_FILE_DIR"],
        aliases: &["path", "directory"],
        secret: false,
        default: Some("./outbox"),
        help: "directory the .eml files are written to",
    },
];

pub(super) fn file_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    let path = super::dsn::decode_part(url.path(), &format!("{} path", settings.dsn_source))?;
    let path = match url.host_str() {
        // `file://./outbox` or `file://outbox/sub`: a relative path written as a host.
        Some(host) if !host.is_empty() => format!("{host}{path}"),
        _ => path,
    };
    if !path.is_empty() {
        settings.set("dir", Value::Plain(path), settings.dsn_origin("path"));
    }
    Ok(())
}

pub(super) fn build_file(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    let dir = settings.str("dir").unwrap_or("./outbox");
    Ok(Arc::new(FileTransport::new(PathBuf::from(dir))))
}
