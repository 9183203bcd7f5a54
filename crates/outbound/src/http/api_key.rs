//! What the API-key providers (Resend, SendGrid) share: one builder, and the account a built
//! transport sends with. Each provider only says what differs ([`KeySpec`]).

use std::fmt;
use std::marker::PhantomData;

use secrecy::{ExposeSecret, SecretString};

use super::{HttpClient, HttpOptions};
use crate::Error;

/// What differs between API-key providers.
pub(crate) struct KeySpec {
    /// The provider's name, e.g. `Resend`.
    pub provider: &'static str,
    /// The key in errors, e.g. ``the Resend API key (`api_key`)``.
    pub key_name: &'static str,
    /// The prefix real keys have (`re_`, `SG.`); another key only gets a warning.
    pub key_prefix: &'static str,
    /// The base URL when none is given.
    pub default_url: &'static str,
    /// The setting that overrides it, named in errors.
    pub url_setting: &'static str,
}

/// Configures an API-key transport ([`ResendBuilder`](super::ResendBuilder),
/// [`SendGridBuilder`](super::SendGridBuilder)); `build()` checks the key and URL.
pub struct ApiKeyBuilder<T> {
    spec: &'static KeySpec,
    api_key: SecretString,
    base_url: Option<String>,
    options: HttpOptions,
    transport: PhantomData<fn() -> T>,
}

impl<T> ApiKeyBuilder<T> {
    pub(crate) fn new(spec: &'static KeySpec, api_key: SecretString) -> Self {
        ApiKeyBuilder {
            spec,
            api_key,
            base_url: None,
            options: HttpOptions::default(),
            transport: PhantomData,
        }
    }

    /// The API base URL (default: the provider's public API); `http://` only to loopback.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Timeouts.
    pub fn http_options(mut self, options: HttpOptions) -> Self {
        self.options = options;
        self
    }

    /// Checks the key and the URL and opens the HTTP client.
    pub(crate) fn account(self) -> Result<ApiAccount, Error> {
        let spec = self.spec;
        super::check_header_secret(&self.api_key, spec.key_name)?;
        let base_url = super::parse_base_url(
            self.base_url.as_deref().unwrap_or(spec.default_url),
            spec.url_setting,
        )
        .map_err(|e| e.for_setting("base_url"))?;
        if !self.api_key.expose_secret().starts_with(spec.key_prefix) {
            tracing::warn!(
                "the {} API key does not start with `{}`; {} keys usually do",
                spec.provider,
                spec.key_prefix,
                spec.provider
            );
        }
        Ok(ApiAccount {
            http: HttpClient::new(self.options)?,
            api_key: self.api_key,
            base_url,
        })
    }
}

impl<T> fmt::Debug for ApiKeyBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyBuilder")
            .field("provider", &self.spec.provider)
            .field("api_key", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("options", &self.options)
            .finish()
    }
}

/// The account a built API-key transport sends with.
pub(crate) struct ApiAccount {
    pub http: HttpClient,
    pub api_key: SecretString,
    pub base_url: url::Url,
}

impl fmt::Debug for ApiAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiAccount")
            .field("api_key", &"[redacted]")
            .field("base_url", &self.base_url.as_str())
            .finish()
    }
}
