//! `NativeTokenSource`: the library's OAuth2 token sources behind its process-wide,
//! single-flight [`TokenCache`], for `MicrosoftEmailOAuth`.

use std::sync::Arc;

use outbound::oauth::{AccessToken, ClientCredentials, RefreshTokenGrant, TokenCache};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use secrecy::{ExposeSecret, SecretString};

use crate::errors::{runtime_error, to_py};
use crate::{logging, runtime};

/// A cached token source.
#[pyclass(frozen, module = "outbound._native")]
pub(crate) struct NativeTokenSource {
    cache: TokenCache,
}

#[pymethods]
impl NativeTokenSource {
    /// Microsoft Entra ID client credentials: `{authority}/{tenant}/oauth2/v2.0/token`.
    #[staticmethod]
    #[pyo3(signature = (tenant, client_id, client_secret, scope, authority=None))]
    fn microsoft_client_credentials(
        tenant: &str,
        client_id: &str,
        client_secret: String,
        scope: &str,
        authority: Option<String>,
    ) -> PyResult<Self> {
        let mut builder = ClientCredentials::microsoft(
            tenant,
            client_id,
            SecretString::from(client_secret),
            scope,
        );
        if let Some(authority) = authority.filter(|a| !a.trim().is_empty()) {
            builder = builder.authority(authority);
        }
        Ok(NativeTokenSource {
            cache: TokenCache::shared(builder.build().map_err(to_py)?),
        })
    }

    /// A Microsoft refresh-token grant (delegated account); a rotated refresh token is kept
    /// by the source.
    #[staticmethod]
    #[pyo3(signature = (tenant, client_id, client_secret, refresh_token, scope, authority=None))]
    fn microsoft_refresh_token(
        tenant: &str,
        client_id: &str,
        client_secret: Option<String>,
        refresh_token: String,
        scope: &str,
        authority: Option<String>,
    ) -> PyResult<Self> {
        let mut builder = RefreshTokenGrant::microsoft(tenant, client_id)
            .refresh_token(SecretString::from(refresh_token))
            .scope(scope);
        if let Some(secret) = client_secret.filter(|s| !s.is_empty()) {
            builder = builder.client_secret(SecretString::from(secret));
        }
        if let Some(authority) = authority.filter(|a| !a.trim().is_empty()) {
            builder = builder.authority(authority);
        }
        Ok(NativeTokenSource {
            cache: TokenCache::new(builder.build().map_err(to_py)?),
        })
    }

    /// Redeems a Microsoft authorization code (the authorization-code flow's last step):
    /// the token dict, with `refresh_token` when the provider issued one.
    #[staticmethod]
    #[pyo3(signature = (tenant, client_id, client_secret, code, redirect_uri, scope, authority=None))]
    #[allow(clippy::too_many_arguments)]
    fn redeem_microsoft_code<'py>(
        py: Python<'py>,
        tenant: &str,
        client_id: &str,
        client_secret: Option<String>,
        code: String,
        redirect_uri: String,
        scope: &str,
        authority: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        logging::refresh_level(py);
        let mut builder = RefreshTokenGrant::microsoft(tenant, client_id).scope(scope);
        if let Some(secret) = client_secret.filter(|s| !s.is_empty()) {
            builder = builder.client_secret(SecretString::from(secret));
        }
        if let Some(authority) = authority.filter(|a| !a.trim().is_empty()) {
            builder = builder.authority(authority);
        }
        let code = SecretString::from(code);
        let (token, refresh) = py
            .detach(move || {
                runtime::block_on(async move { builder.redeem_code(&code, &redirect_uri).await })
            })
            .map_err(runtime_error)?
            .map_err(to_py)?;
        let d = token_dict(py, &Arc::new(token))?;
        d.set_item("refresh_token", refresh.as_ref().map(|r| r.expose_secret()))?;
        Ok(d)
    }

    /// A current token (the cached one, or one new request however many callers ask), as the
    /// dict the seeds print: `access_token`, `token_type`, `expires_in` (seconds left), `scope`.
    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        logging::refresh_level(py);
        let cache = self.cache.clone();
        let token = py
            .detach(move || runtime::block_on(async move { cache.get().await }))
            .map_err(runtime_error)?
            .map_err(to_py)?;
        token_dict(py, &token)
    }

    /// Forgets the current token (a server rejected it); the next `get` asks for a new one.
    fn invalidate(&self) -> bool {
        match self.cache.current() {
            Some(token) => self.cache.invalidate(&token),
            None => false,
        }
    }

    /// What the source is (token URL, client id, scope; no secrets).
    fn describe(&self) -> String {
        self.cache.describe().to_string()
    }

    fn __repr__(&self) -> String {
        format!("<outbound token source {}>", self.cache.describe())
    }
}

fn token_dict<'py>(py: Python<'py>, token: &Arc<AccessToken>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("access_token", token.secret().expose_secret())?;
    d.set_item("token_type", token.token_type())?;
    d.set_item("expires_in", token.remaining().map(|r| r.as_secs()))?;
    d.set_item("scope", token.scope())?;
    Ok(d)
}
