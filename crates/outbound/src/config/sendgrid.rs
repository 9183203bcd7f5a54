//! The `sendgrid` kind: SENDGRID_API_KEY and SENDGRID_API_URL, `sendgrid://KEY@default` DSNs
//! (also `sendgrid+api://`; `sendgrid://KEY@api.eu.sendgrid.com` for the EU region).

use std::sync::Arc;

use super::http::{api_key, base_url, http_options, key_dsn};
use super::settings::Settings;
use crate::http::sendgrid::SendGridTransport;
use crate::{Error, Transport};

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
