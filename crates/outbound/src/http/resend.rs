//! Resend: `POST /emails` with an `Idempotency-Key`, `GET /domains` to verify.
//!
//! API reference: <https://resend.com/docs/api-reference/emails/send-email>,
//! errors: <https://resend.com/docs/api-reference/errors>,
//! idempotency: <https://resend.com/docs/dashboard/emails/idempotency-keys>.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde::Serialize;

use super::api_key::{ApiAccount, ApiKeyBuilder, KeySpec};
use super::{Provider, ProviderError, Request, Response};
use crate::message::PreparedMessage;
use crate::{Error, ErrorKind, Mailbox, Message, Receipt, Transport};

/// Resend accepts at most this many `to` addresses per email.
pub const MAX_RESEND_TO: usize = 50;

/// Resend's limit for a whole email, attachments included after Base64 encoding.
const MAX_REQUEST_BYTES: usize = 40 * 1024 * 1024;

/// Tag names and values: ASCII letters, digits, `_` and `-`, at most 256 characters.
const MAX_TAG_LEN: usize = 256;

const PROVIDER: Provider = Provider {
    name: "Resend",
    credentials_hint: "`api_key`",
    url_hint: "`base_url`",
};

/// Sends through the [Resend](https://resend.com) API.
///
/// Every message field Resend accepts is sent: `from` (with display name), `to` (at most
/// [`MAX_RESEND_TO`]), `cc`, `bcc`, `reply_to`, `subject`, `html`, `text` (derived from the HTML
/// when only HTML is given), `headers`, `attachments` (inline parts with `content_id`), and
/// `tags` (each of the message's [tags](Message::tags) as `{name: tag, value: "true"}`, each
/// [metadata](Message::metadata) entry as `{name: key, value: value}`).
///
/// Every send carries an `Idempotency-Key` derived from the Message-ID and the request body, so
/// the same [`Message`] sent again (a retry after a timeout) gets the same key and Resend sends
/// it at most once within 24 hours. That is why a timeout after the request went out is
/// [`ErrorKind::Timeout`] (retryable) here, not `Ambiguous`.
///
/// ```
/// use outbound::resend::ResendTransport;
/// let resend = ResendTransport::builder("re_123456789")
///     .base_url("http://127.0.0.1:8025")
///     .build()?;
/// assert_eq!(resend.describe_url(), "http://127.0.0.1:8025/");
/// assert!(!format!("{resend:?}").contains("re_123456789"));
/// # Ok::<(), outbound::Error>(())
/// ```
pub struct ResendTransport {
    account: ApiAccount,
}

/// Configures a [`ResendTransport`].
pub type ResendBuilder = ApiKeyBuilder<ResendTransport>;

const SPEC: KeySpec = KeySpec {
    provider: "Resend",
    key_name: "the Resend API key (`api_key`)",
    key_prefix: "re_",
    default_url: ResendTransport::DEFAULT_URL,
    url_setting: "`base_url`",
};

impl ResendBuilder {
    /// Builds the transport; fails with a config error for an unusable key or URL.
    pub fn build(self) -> Result<ResendTransport, Error> {
        Ok(ResendTransport {
            account: self.account()?,
        })
    }
}

impl fmt::Debug for ResendTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResendTransport")
            .field("account", &self.account)
            .finish()
    }
}

/// The JSON body of `POST /emails`.
#[derive(Debug, Serialize)]
struct SendEmail {
    from: String,
    to: Vec<String>,
    subject: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cc: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bcc: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reply_to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<SendAttachment>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<Tag>,
}

#[derive(Debug, Serialize)]
struct SendAttachment {
    filename: String,
    content: String,
    content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct Tag {
    name: String,
    value: String,
}

impl ResendTransport {
    /// `https://api.resend.com`.
    pub const DEFAULT_URL: &'static str = "https://api.resend.com";

    /// Starts configuring a transport with an API key (`re_...`).
    pub fn builder(api_key: impl Into<SecretString>) -> ResendBuilder {
        ApiKeyBuilder::new(&SPEC, api_key.into())
    }

    /// The base URL requests go to.
    pub fn describe_url(&self) -> &str {
        self.account.base_url.as_str()
    }

    /// The request body and its idempotency key for `message`, exactly as [`Transport::send`]
    /// would send them (useful to inspect or log what goes out).
    ///
    /// ```
    /// use outbound::{Message, resend::ResendTransport};
    /// let resend = ResendTransport::builder("re_123").build()?;
    /// let msg = Message::builder().from("Ada <ada@example.com>").to("bob@example.com")
    ///     .subject("Hi").text("hello").build()?;
    /// let (body, key) = resend.request_body(&msg)?;
    /// let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    /// assert_eq!(json["from"], "Ada <ada@example.com>");
    /// assert_eq!(key, resend.request_body(&msg)?.1, "the key is stable across retries");
    /// # Ok::<(), outbound::Error>(())
    /// ```
    pub fn request_body(&self, message: &Message) -> Result<(Vec<u8>, String), Error> {
        self.request_for(&self.prepare(message)?)
    }

    /// The request body and idempotency key for a prepared message.
    fn request_for(&self, prepared: &PreparedMessage) -> Result<(Vec<u8>, String), Error> {
        let body = self.build_body(prepared)?;
        let bytes = serde_json::to_vec(&body).map_err(|e| {
            Error::new(
                ErrorKind::InvalidMessage,
                format!("could not encode the message as JSON: {e}"),
            )
        })?;
        let key = idempotency_key(prepared.message_id(), &bytes);
        Ok((bytes, key))
    }

    fn build_body(&self, prepared: &PreparedMessage) -> Result<SendEmail, Error> {
        let message = prepared.message();
        if message.raw().is_some() {
            return Err(invalid(
                "the resend transport cannot send a raw RFC 5322 message (Resend's API takes \
                 fields, not MIME); use smtp or graph for raw messages",
            ));
        }
        let from = prepared.sender();
        if message.to().is_empty() {
            return Err(invalid(
                "Resend requires at least one `to` recipient (cc or bcc alone are not accepted)",
            ));
        }
        if message.to().len() > MAX_RESEND_TO {
            return Err(invalid(format!(
                "Resend accepts at most {MAX_RESEND_TO} `to` recipients per email; this message \
                 has {}: split it into several messages",
                message.to().len()
            )));
        }
        let list = |v: &[Mailbox]| v.iter().map(super::mailbox_string).collect::<Vec<_>>();
        let mut headers = BTreeMap::new();
        for (name, value) in message.headers() {
            if headers
                .keys()
                .any(|k: &String| k.eq_ignore_ascii_case(name))
            {
                return Err(invalid(format!(
                    "header `{name}` is given twice; Resend takes headers as a JSON object, so \
                     each name can appear once"
                )));
            }
            headers.insert(name.clone(), value.clone());
        }
        let attachments = message
            .attachments()
            .iter()
            .map(|a| SendAttachment {
                filename: a.filename().to_string(),
                content: base64::engine::general_purpose::STANDARD.encode(a.content()),
                content_type: a.content_type().to_string(),
                content_id: a.content_id().map(str::to_string),
            })
            .collect();
        let mut tags = Vec::new();
        for tag in message.tags() {
            check_tag_part(tag, "tag")?;
            tags.push(Tag {
                name: tag.clone(),
                value: "true".to_string(),
            });
        }
        for (name, value) in message.metadata() {
            check_tag_part(name, "metadata key")?;
            check_tag_part(value, &format!("metadata value of `{name}`"))?;
            tags.push(Tag {
                name: name.clone(),
                value: value.clone(),
            });
        }
        Ok(SendEmail {
            from: super::mailbox_string(from),
            to: list(message.to()),
            subject: message.subject().to_string(),
            cc: list(message.cc()),
            bcc: list(message.bcc()),
            reply_to: list(message.reply_to()),
            html: message.html().map(str::to_string),
            text: message.text_or_derived(),
            headers,
            attachments,
            tags,
        })
    }

    fn error_for(&self, method: &reqwest::Method, url: &url::Url, response: &Response) -> Error {
        super::status_error(
            &PROVIDER,
            method,
            url,
            response,
            parse_error(response),
            &[&self.account.api_key],
        )
    }
}

/// The key for one message: the same [`Message`] (same Message-ID, same content) always gets
/// the same key; any difference in content gives another.
fn idempotency_key(message_id: &str, body: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(message_id.as_bytes());
    ctx.update(b"\0");
    ctx.update(body);
    format!("outbound-{}", super::hex(ctx.finish().as_ref()))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidMessage, message)
}

fn check_tag_part(value: &str, what: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= MAX_TAG_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {value:?} cannot be sent to Resend: tag names and values may only contain \
             ASCII letters, digits, `_` and `-`, 1 to {MAX_TAG_LEN} characters"
        )))
    }
}

/// `{"statusCode":429,"name":"rate_limit_exceeded","message":"..."}`; `type` is accepted for
/// `name` (the resend-local emulator answers that way).
fn parse_error(response: &Response) -> ProviderError {
    let json = response.json();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let code = field("name").or_else(|| field("type"));
    let text = field("message");
    let kind = match (response.status, code.as_deref()) {
        (_, Some("daily_quota_exceeded" | "monthly_quota_exceeded")) => Some(ErrorKind::Permanent),
        (_, Some("rate_limit_exceeded")) => Some(ErrorKind::Transient),
        (409, Some("concurrent_idempotent_requests")) => Some(ErrorKind::Transient),
        (409, _) => Some(ErrorKind::Permanent),
        (
            400 | 422,
            Some(
                "validation_error"
                | "invalid_from_address"
                | "invalid_attachment"
                | "missing_required_field"
                | "invalid_parameter",
            ),
        ) => Some(ErrorKind::InvalidMessage),
        _ => None,
    };
    let message = match code.as_deref() {
        Some(q @ ("daily_quota_exceeded" | "monthly_quota_exceeded")) => Some(format!(
            "Resend {} sending quota is used up ({q}); retrying now will not help — wait for \
             the quota to reset or raise it",
            if q.starts_with("daily") {
                "daily"
            } else {
                "monthly"
            }
        )),
        Some("concurrent_idempotent_requests") => Some(
            "Resend is still processing an earlier request with the same idempotency key; \
             retry shortly"
                .to_string(),
        ),
        Some("invalid_idempotent_request") => Some(
            "Resend saw the same idempotency key with a different request body within 24 hours; \
             the message was changed after a first attempt"
                .to_string(),
        ),
        _ => None,
    };
    ProviderError {
        code,
        text,
        kind,
        message,
    }
}

#[async_trait]
impl Transport for ResendTransport {
    async fn send_prepared(&self, prepared: &PreparedMessage) -> Result<Receipt, Error> {
        let (body, key) = self.request_for(prepared)?;
        if body.len() > MAX_REQUEST_BYTES {
            return Err(invalid(format!(
                "the message is {} bytes as a Resend request; Resend accepts at most 40 MB per \
                 email (attachments counted after Base64 encoding)",
                body.len()
            )));
        }
        let message_id = prepared.message_id();
        let envelope = prepared.envelope();
        let url = super::endpoint(&self.account.base_url, "/emails");
        let mut req = Request::post(url.clone(), Bytes::from(body), "application/json")
            .bearer(&self.account.api_key)?
            .header(
                HeaderName::from_static("idempotency-key"),
                HeaderValue::from_str(&key)
                    .map_err(|_| invalid("the idempotency key is not a valid header value"))?,
            );
        req.idempotent = true;
        tracing::debug!(%message_id, idempotency_key = %key, "sending through Resend");
        let response = self.account.http.send(&PROVIDER, req).await?;
        if !response.is_success() {
            return Err(self.error_for(&reqwest::Method::POST, &url, &response));
        }
        let id = response
            .json()
            .and_then(|j| j.get("id").and_then(|v| v.as_str()).map(str::to_string));
        if id.is_none() {
            tracing::warn!(
                status = response.status,
                "Resend accepted the email but its answer had no `id`"
            );
        }
        let mut receipt = Receipt::new("resend", message_id, envelope.to.clone());
        if let Some(id) = id {
            receipt = receipt.with_provider_id(id);
        }
        Ok(receipt)
    }

    /// `GET /domains`: sends nothing. A send-only key answers 401 `restricted_api_key`, which
    /// proves the key is valid, so it counts as success.
    async fn verify(&self) -> Result<(), Error> {
        let url = super::endpoint(&self.account.base_url, "/domains");
        let req = Request::get(url.clone()).bearer(&self.account.api_key)?;
        let response = self.account.http.send(&PROVIDER, req).await?;
        if response.is_success() {
            return Ok(());
        }
        let parsed = parse_error(&response);
        if response.status == 401 && parsed.code.as_deref() == Some("restricted_api_key") {
            tracing::info!("the Resend API key is valid and restricted to sending emails");
            return Ok(());
        }
        Err(self.error_for(&reqwest::Method::GET, &url, &response))
    }

    /// The API's request limit (attachments count after Base64 encoding).
    fn size_limit(&self) -> Option<u64> {
        Some(MAX_REQUEST_BYTES as u64)
    }

    fn kind(&self) -> &'static str {
        "resend"
    }

    fn describe(&self) -> String {
        format!(
            "resend ({})",
            self.account.base_url.as_str().trim_end_matches('/')
        )
    }
}
