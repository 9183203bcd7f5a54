//! The `resend` kind: RESEND_API_KEY and RESEND_API_URL, `resend://KEY@default` DSNs
//! (also `resend+api://`; any host other than `default` means `https://HOST[:PORT][/PATH]`;
//! `?api_url=` sets the whole base URL, the only way to give a plain-http loopback URL).

use std::sync::Arc;

use super::http::{api_key, base_url, http_options, key_dsn};
use super::settings::Settings;
use crate::http::resend::ResendTransport;
use crate::{Error, Transport};

pub(crate) fn resend_dsn(url: &url::Url, settings: &mut Settings) -> Result<(), Error> {
    key_dsn(url, settings)
}

pub(crate) fn build_resend(settings: &Settings) -> Result<Arc<dyn Transport>, Error> {
    let key = api_key(settings, "RESEND_API_KEY", "resend")?;
    let mut builder = ResendTransport::builder(key).http_options(http_options(settings)?);
    if let Some(url) = base_url(settings, "RESEND_API_URL")? {
        builder = builder.base_url(url);
    }
    Ok(Arc::new(builder.build()?))
}
