//! [`Configured`]: the layer the configuration puts around every transport it builds, so that
//! errors name settings the way the operator wrote them.
//!
//! Transports name their own settings (`` `host` ``, `` `default_from` ``); they know nothing
//! of environment variables. An error about a setting carries its name
//! ([`Error::setting`]), and this layer rewrites it to where the value came from, or would
//! come from: `SMTP_SERVER`, ``MAILER_DSN host``, ``setting `server` ``.

use std::sync::Arc;

use async_trait::async_trait;

use super::settings::Settings;
use crate::layer::Layer;
use crate::message::PreparedMessage;
use crate::oauth::{AccessToken, CacheKey, TokenSource};
use crate::{Error, Message, Receipt, Transport};

/// A transport built from [`Settings`], explaining its errors in their terms.
#[derive(Debug)]
pub(crate) struct Configured {
    inner: Arc<dyn Transport>,
    settings: Settings,
}

impl Configured {
    pub(crate) fn new(inner: Arc<dyn Transport>, settings: Settings) -> Self {
        Configured { inner, settings }
    }
}

/// Only what it changes: errors of sending, preparing and verifying are explained in the
/// configuration's terms; the rest forwards through the layer core.
#[async_trait]
impl Layer for Configured {
    type Inner = dyn Transport;

    fn inner(&self) -> &Self::Inner {
        &*self.inner
    }

    async fn send_prepared(&self, message: &PreparedMessage) -> Result<Receipt, Error> {
        self.inner
            .send_prepared(message)
            .await
            .map_err(|e| self.settings.explain(e))
    }

    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        self.inner
            .prepare(message)
            .map_err(|e| self.settings.explain(e))
    }

    async fn verify(&self) -> Result<(), Error> {
        self.inner
            .verify()
            .await
            .map_err(|e| self.settings.explain(e))
    }
}

/// A token source built from [`Settings`], explaining its errors in their terms (the same job
/// as [`Configured`], for `outbound token` and every token a transport asks for).
pub(crate) struct ConfiguredTokens<S> {
    inner: S,
    settings: Settings,
}

impl<S> ConfiguredTokens<S> {
    pub(crate) fn new(inner: S, settings: &Settings) -> Self {
        ConfiguredTokens {
            inner,
            settings: settings.clone(),
        }
    }
}

#[async_trait]
impl<S: TokenSource> TokenSource for ConfiguredTokens<S> {
    async fn fetch(&self) -> Result<AccessToken, Error> {
        self.inner
            .fetch()
            .await
            .map_err(|e| self.settings.explain(e))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn cache_key(&self) -> CacheKey {
        self.inner.cache_key()
    }
}
