//! The one HTTP client setup of Outbound, used by the HTTP providers and the token requests:
//! reqwest with rustls against the system roots (HTTP/2 where the server offers it by ALPN,
//! else HTTP/1.1), connect and total timeouts ([`HttpOptions`]), a `User-Agent` of
//! `outbound/<version>`, no redirects (a redirected API call is a wrong URL, for the caller to
//! report), and [`Client::send`], which reads the whole answer (at most
//! [`MAX_RESPONSE_BYTES`]) and classifies a failure without one ([`classify`](super::classify)).

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use super::body::{SentFlag, TrackedBody};
use super::classify::{transport_error, Attempt};
use super::options::HttpOptions;
use crate::Error;

/// The `User-Agent` of every HTTP request: `outbound/<version>`.
pub(crate) const USER_AGENT: &str = concat!("outbound/", env!("CARGO_PKG_VERSION"));

/// Largest answer read into memory; anything longer is cut (answers are small JSON).
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How long an idle connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`Client`] treats connections, beyond its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setup {
    /// Keep idle connections for reuse (60 s). Off for rare requests (a token request comes
    /// about once an hour), so a client is never tied to a runtime that has since been shut
    /// down.
    pub keep_idle: bool,
    /// Connect directly, whatever the proxy settings say (for a loopback server).
    pub no_proxy: bool,
}

impl Default for Setup {
    /// Reuse connections; honour the proxy settings.
    fn default() -> Self {
        Setup {
            keep_idle: true,
            no_proxy: false,
        }
    }
}

/// A request to send.
pub(crate) struct Request {
    pub method: Method,
    pub url: url::Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body bytes and content type.
    pub body: Option<(Bytes, &'static str)>,
    /// Whether sending the request twice cannot deliver twice (a GET, an idempotency key, a
    /// token request).
    pub idempotent: bool,
}

impl Request {
    pub(crate) fn get(url: url::Url) -> Self {
        Request {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: None,
            idempotent: true,
        }
    }

    pub(crate) fn post(url: url::Url, body: Bytes, content_type: &'static str) -> Self {
        Request {
            method: Method::POST,
            url,
            headers: Vec::new(),
            body: Some((body, content_type)),
            idempotent: false,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// `Authorization: Bearer <secret>`, marked sensitive so it is never logged by the stack.
    pub(crate) fn bearer(self, secret: &SecretString) -> Result<Self, Error> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret()))
            .map_err(|_| {
                Error::config(
                    "the API key or token contains characters not allowed in an HTTP header \
                     (spaces, line breaks or non-ASCII)",
                )
            })?;
        value.set_sensitive(true);
        Ok(self.header(reqwest::header::AUTHORIZATION, value))
    }

    /// Why repeating the request cannot deliver twice, or `None` when it could.
    fn idempotent_because(&self) -> Option<&'static str> {
        if !self.idempotent {
            None
        } else if self.body.is_none() {
            Some("it sends nothing")
        } else if self
            .headers
            .iter()
            .any(|(name, _)| name.as_str() == "idempotency-key")
        {
            Some("it carries an idempotency key")
        } else {
            Some("it delivers no message")
        }
    }
}

/// An answer, whatever its status.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body, at most [`MAX_RESPONSE_BYTES`].
    pub body: Bytes,
    /// More than [`MAX_RESPONSE_BYTES`] came; `body` holds the first that many.
    pub truncated: bool,
    /// The body broke off (classified like a request without an answer); `body` holds what
    /// arrived. The status already tells the outcome, so most callers ignore it.
    pub broke_off: Option<Error>,
}

impl Response {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One reqwest client, reused for every request of a transport or token source.
#[derive(Clone)]
pub(crate) struct Client {
    client: reqwest::Client,
    options: HttpOptions,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("options", &self.options)
            .finish()
    }
}

/// The system roots, offering HTTP/2 and HTTP/1.1 by ALPN.
fn tls_config() -> rustls::ClientConfig {
    super::tls::https_config(&[b"h2", b"http/1.1"])
}

impl Client {
    /// A client that keeps connections for reuse.
    pub(crate) fn new(options: HttpOptions) -> Result<Self, Error> {
        Client::with_setup(options, Setup::default())
    }

    pub(crate) fn with_setup(options: HttpOptions, setup: Setup) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config())
            .user_agent(USER_AGENT)
            .connect_timeout(options.connect_timeout())
            .timeout(options.timeout())
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true);
        builder = if setup.keep_idle {
            builder.pool_idle_timeout(POOL_IDLE_TIMEOUT)
        } else {
            builder.pool_max_idle_per_host(0)
        };
        if setup.no_proxy {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| {
            Error::config(format!("could not set up the HTTP client: {e}")).with_source(e)
        })?;
        Ok(Client { client, options })
    }

    /// Sends a request to `peer` (named in messages and logs) and reads the whole answer
    /// (whatever its status). Fails only when no answer came; see
    /// [`classify`](super::classify) for how that failure is classified.
    pub(crate) async fn send(
        &self,
        peer: &(dyn fmt::Display + Sync),
        req: Request,
    ) -> Result<Response, Error> {
        let started = Instant::now();
        let sent = SentFlag::default();
        let method = req.method.clone();
        let url = req.url.clone();
        let idempotent = req.idempotent_because();
        let attempt = |body_sent: bool| Attempt {
            peer,
            method: &method,
            url: &url,
            body_sent,
            idempotent,
            options: self.options,
        };
        let mut builder = self.client.request(req.method, req.url);
        for (name, value) in req.headers {
            builder = builder.header(name, value);
        }
        if let Some((body, content_type)) = req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(reqwest::Body::wrap(TrackedBody::new(body, sent.clone())));
        } else {
            // Nothing to deliver: a GET is "sent" as soon as it could be processed.
            sent.set();
        }
        tracing::debug!(peer = %peer, %method, %url, "HTTP request");
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = transport_error(&attempt(sent.is_set()), e);
                tracing::debug!(peer = %peer, %method, %url, error = %err,
                    elapsed_ms = started.elapsed().as_millis() as u64, "HTTP request failed");
                return Err(err);
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let (body, truncated, broke_off) = read_body(response).await;
        tracing::debug!(peer = %peer, %method, %url, status,
            elapsed_ms = started.elapsed().as_millis() as u64, "HTTP response");
        Ok(Response {
            status,
            headers,
            body,
            truncated,
            broke_off: broke_off.map(|e| transport_error(&attempt(true), e)),
        })
    }
}

/// Reads at most [`MAX_RESPONSE_BYTES`] (and whether more came); a body that breaks off keeps
/// what arrived, with the error.
async fn read_body(mut response: reqwest::Response) -> (Bytes, bool, Option<reqwest::Error>) {
    let mut buf = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BYTES.saturating_sub(buf.len());
                if chunk.len() > room {
                    buf.extend_from_slice(&chunk[..room]);
                    return (Bytes::from(buf), true, None);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return (Bytes::from(buf), false, None),
            Err(e) => {
                tracing::debug!(error = %e, "the response body broke off");
                return (Bytes::from(buf), false, Some(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Was the doc test of the public `outbound::http::USER_AGENT`.
    #[test]
    fn user_agent() {
        assert!(USER_AGENT.starts_with("outbound/"));
    }

    #[test]
    fn offers_http2_by_alpn() {
        let config = tls_config();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(Client::new(HttpOptions::default()).is_ok());
        let rare = Setup {
            keep_idle: false,
            no_proxy: true,
        };
        assert!(Client::with_setup(HttpOptions::default(), rare).is_ok());
    }

    /// A loopback server that reads the request, then answers `answer` (or, if `None`, holds
    /// the connection open without answering).
    async fn server(answer: Option<Vec<u8>>) -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = stream.read(&mut buf).await;
                    match answer {
                        Some(a) => {
                            let _ = stream.write_all(&a).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        url::Url::parse(&format!("http://127.0.0.1:{port}/x?secret=q")).unwrap()
    }

    fn quick() -> Client {
        let options = HttpOptions::default().with_timeout(Duration::from_millis(300));
        Client::new(options).unwrap()
    }

    fn post(url: &url::Url) -> Request {
        Request::post(url.clone(), Bytes::from_static(b"{}"), "application/json")
    }

    #[tokio::test]
    async fn refused_is_network() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/emails")).unwrap();
        let err = quick().send(&"Test", post(&url)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Network, "{err}");
        assert!(
            err.message()
                .contains(&format!("could not reach Test for POST {url}")),
            "{err}"
        );
        assert!(err.message().contains("safe to retry"), "{err}");
    }

    #[tokio::test]
    async fn no_answer_after_sending_depends_on_idempotency() {
        let url = server(None).await;
        let err = quick().send(&"Test", post(&url)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
        assert!(
            err.message().contains("did not answer within 0.3 s"),
            "{err}"
        );
        assert!(!err.message().contains("secret=q"), "no query: {err}");

        let keyed = post(&url).header(
            HeaderName::from_static("idempotency-key"),
            HeaderValue::from_static("k"),
        );
        let keyed = Request {
            idempotent: true,
            ..keyed
        };
        let err = quick().send(&"Test", keyed).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(err.message().contains("idempotency key"), "{err}");

        let token = Request {
            idempotent: true,
            ..post(&url)
        };
        let err = quick()
            .send(&"the token endpoint", token)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(
            err.message()
                .starts_with("the token endpoint did not answer within 0.3 s after POST"),
            "{err}"
        );
        assert!(err.message().contains("it delivers no message"), "{err}");

        let err = quick().send(&"Test", Request::get(url)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(err.message().contains("it sends nothing"), "{err}");
    }

    #[tokio::test]
    async fn answers_are_read_whole_or_cut() {
        let url = server(Some(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 2\r\n\r\nno"
                .to_vec(),
        ))
        .await;
        let r = quick().send(&"Test", post(&url)).await.unwrap();
        assert_eq!(r.status, 503);
        assert!(!r.is_success());
        assert_eq!(&r.body[..], b"no");
        assert!(!r.truncated && r.broke_off.is_none());
        assert_eq!(
            super::super::wait_from_headers(&r.headers),
            Some(Duration::from_secs(2))
        );

        let big = MAX_RESPONSE_BYTES + 10;
        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {big}\r\n\r\n").into_bytes();
        answer.resize(answer.len() + big, b'a');
        let r = quick()
            .send(&"Test", post(&server(Some(answer)).await))
            .await;
        let r = r.unwrap();
        assert!(r.truncated);
        assert_eq!(r.body.len(), MAX_RESPONSE_BYTES);

        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\"".to_vec();
        let r = quick()
            .send(&"Test", Request::get(server(Some(cut)).await))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"{\"id\"");
        let err = r.broke_off.unwrap();
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
        assert!(err.message().contains("broke off"), "{err}");
    }
}
