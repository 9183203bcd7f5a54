//! The `sendgrid` kind: SENDGRID_API_KEY and SENDGRID_API_URL, `sendgrid://KEY@default` DSNs
//! (also `sendgrid+api://`; `sendgrid://KEY@api.eu.sendgrid.com` for the EU region).

use std::sync::Arc;

use super::http::{api_key, base_url, http_options, key_dsn, CONNECT_TIMEOUT, TIMEOUT};
use super::registry::{Key, DEFAULT_FROM, RATE, RETRIES};
use super::registry::{LIMITS, LIMITS_FAIL};
use super::Settings;
use crate::http::sendgrid::SendGridTransport;
use crate::{Error, Transport};

/// Settings of the `sendgrid` kind.
pub(crate) const SENDGRID_KEYS: &[Key] = &[
    DEFAULT_FROM,
    RETRIES,
    RATE,
    LIMITS,
    LIMITS_FAIL,
    Key {
        name: "api_key",
        env: &["SENDGRID_API_KEY"],
        aliases: &["key"],
        secret: true,
        default: None,
        help: "SendGrid API key (SG....) with the mail.send scope",
    },
    Key {
        name: "api_url",
        env: &["SENDGRID_API_URL"],
        aliases: &["url", "base_url"],
        secret: false,
        default: Some(SendGridTransport::DEFAULT_URL),
        help: "SendGrid API base URL (EU regional subusers: https://api.eu.sendgrid.com)",
    },
    TIMEOUT,
    CONNECT_TIMEOUT,
];

pub(crate) fn sendgrid_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    key_dsn(url, settings)
}

pub(crate) fn build_sendgrid(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    let key = api_key(settings, "SENDGRID_API_KEY", "sendgrid")?;
    let mut builder = SendGridTransport::builder(key).http_options(http_options(settings)?);
    if let Some(url) = base_url(settings, "SENDGRID_API_URL")? {
        builder = builder.base_url(url);
    }
    Ok(Arc::new(builder.build()?))
}
