//! SendGrid: `POST /v3/mail/send` (202 Accepted, `X-Message-Id`), `GET /v3/scopes` to verify.
//!
//! API reference: <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>
//! (OpenAPI: `tsg_mail_v3` in github.com/twilio/sendgrid-oai),
//! scopes: <https://www.twilio.com/docs/sendgrid/api-reference/api-key-permissions/retrieve-a-list-of-scopes-for-which-this-user-has-access>.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use secrecy::SecretString;
use serde::Serialize;

use super::api_key::{ApiAccount, ApiKeyBuilder, KeySpec};
use super::{Provider, ProviderError, Request, Response};
use crate::message::PreparedMessage;
use crate::{Error, ErrorKind, Mailbox, Message, Receipt, Transport};

/// SendGrid accepts at most this many recipients per request: `to`, `cc` and `bcc` together.
pub const MAX_SENDGRID_RECIPIENTS: usize = 1000;

/// At most 10 categories, each at most 255 characters.
const MAX_CATEGORIES: usize = 10;
const MAX_CATEGORY_LEN: usize = 255;
/// `custom_args` may total at most 10,000 bytes.
const MAX_CUSTOM_ARGS_BYTES: usize = 10_000;
/// The whole email, attachments included, must be under 30 MB.
const MAX_REQUEST_BYTES: usize = 30 * 1024 * 1024;

/// Headers SendGrid does not let a sender set.
const FORBIDDEN_HEADERS: &[&str] = &[
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
];

const PROVIDER: Provider = Provider {
    name: "SendGrid",
    credentials_hint: "`api_key`",
    url_hint: "`base_url`",
};

/// Sends through the [SendGrid](https://sendgrid.com) v3 Mail Send API.
///
/// One personalization holds every recipient (`to`, `cc`, `bcc`; an address given twice is
/// sent once, as SendGrid requires); `from` and `reply_to` (or `reply_to_list` for several,
/// each address once, as SendGrid requires) with display names; `subject`; `content` with `text/plain` before `text/html` (the text is
/// derived from the HTML when only HTML is given); `attachments` with `disposition`
/// `attachment` or `inline` + `content_id`; `headers`; the message's
/// [tags](crate::Message::tags) as `categories`; its [metadata](crate::Message::metadata) as `custom_args`.
///
/// A message SendGrid would refuse for its limits is refused before sending, with the limit in
/// the error: more than [`MAX_SENDGRID_RECIPIENTS`] recipients, more than 10 categories, an
/// address with a non-ASCII local part (the API takes ASCII addresses only; domains are sent
/// in punycode), ...
///
/// ```
/// use outbound::sendgrid::SendGridTransport;
/// let sg = SendGridTransport::builder("SG.secret")
///     .base_url(SendGridTransport::EU_URL)
///     .build()?;
/// assert_eq!(outbound::Transport::describe(&sg), "sendgrid (https://api.eu.sendgrid.com)");
/// assert!(!format!("{sg:?}").contains("SG.secret"));
/// # Ok::<(), outbound::Error>(())
/// ```
pub struct SendGridTransport {
    account: ApiAccount,
}

/// Configures a [`SendGridTransport`].
pub type SendGridBuilder = ApiKeyBuilder<SendGridTransport>;

const SPEC: KeySpec = KeySpec {
    provider: "SendGrid",
    key_name: "the SendGrid API key (`api_key`)",
    key_prefix: "SG.",
    default_url: SendGridTransport::DEFAULT_URL,
    url_setting: "`base_url`",
};

impl SendGridBuilder {
    /// Builds the transport; fails with a config error for an unusable key or URL.
    pub fn build(self) -> Result<SendGridTransport, Error> {
        Ok(SendGridTransport {
            account: self.account()?,
        })
    }
}

impl fmt::Debug for SendGridTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGridTransport")
            .field("account", &self.account)
            .finish()
    }
}

#[derive(Debug, Serialize)]
struct MailSend {
    personalizations: Vec<Personalization>,
    from: Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<Address>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reply_to_list: Vec<Address>,
    subject: String,
    content: Vec<Content>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<SendAttachment>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    categories: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    custom_args: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct Personalization {
    to: Vec<Address>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cc: Vec<Address>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bcc: Vec<Address>,
}

#[derive(Debug, Serialize)]
struct Address {
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Debug, Serialize)]
struct Content {
    #[serde(rename = "type")]
    kind: &'static str,
    value: String,
}

#[derive(Debug, Serialize)]
struct SendAttachment {
    content: String,
    #[serde(rename = "type")]
    content_type: String,
    filename: String,
    disposition: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_id: Option<String>,
}

fn address(m: &Mailbox) -> Address {
    let (name, email) = super::api_mailbox(m);
    Address { email, name }
}

/// Refuses an address with no ASCII form, in any field: SendGrid's API takes ASCII addresses
/// only. A domain has one (punycode, which [`address`] sends); a local part does not.
fn ascii_addresses_only(from: &Mailbox, message: &Message) -> Result<(), Error> {
    let fields = [
        ("to", message.to()),
        ("cc", message.cc()),
        ("bcc", message.bcc()),
        ("reply_to", message.reply_to()),
    ];
    let all = std::iter::once(("from", from)).chain(
        fields
            .into_iter()
            .flat_map(|(field, list)| list.iter().map(move |m| (field, m))),
    );
    for (field, m) in all {
        if !m.ascii_email().is_ascii() {
            return Err(invalid(format!(
                "the `{field}` address {} has a non-ASCII local part (before the @), and \
                 SendGrid accepts ASCII addresses only (an internationalized domain is sent in \
                 punycode; a local part cannot be): use an ASCII address, or an SMTP server \
                 that offers SMTPUTF8",
                m.email()
            )));
        }
    }
    Ok(())
}

/// The addresses of `list` not yet in `seen` (compared case-insensitively, the domain in
/// punycode), each once: the first spelling and name are kept.
fn once_each(list: &[Mailbox], seen: &mut Vec<String>, what: &str) -> Vec<Address> {
    list.iter()
        .filter(|m| {
            let key = m.ascii_email().to_ascii_lowercase();
            if seen.contains(&key) {
                tracing::debug!(address = %key, "{what} given twice; SendGrid gets it once");
                false
            } else {
                seen.push(key);
                true
            }
        })
        .map(address)
        .collect()
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidMessage, message)
}

impl SendGridTransport {
    /// `https://api.sendgrid.com` (global users and subusers).
    pub const DEFAULT_URL: &'static str = "https://api.sendgrid.com";
    /// `https://api.eu.sendgrid.com` (EU regional subusers).
    pub const EU_URL: &'static str = "https://api.eu.sendgrid.com";

    /// Starts configuring a transport with an API key (`SG....`).
    pub fn builder(api_key: impl Into<SecretString>) -> SendGridBuilder {
        ApiKeyBuilder::new(&SPEC, api_key.into())
    }

    /// The request body for `message`, exactly as [`Transport::send_prepared`] sends it.
    pub(crate) fn request_body(&self, prepared: &PreparedMessage) -> Result<Vec<u8>, Error> {
        let body = self.build_body(prepared)?;
        serde_json::to_vec(&body)
            .map_err(|e| invalid(format!("could not encode the message as JSON: {e}")))
    }

    fn build_body(&self, prepared: &PreparedMessage) -> Result<MailSend, Error> {
        let message = prepared.message();
        if message.raw().is_some() {
            return Err(invalid(
                "the sendgrid transport cannot send a raw RFC 5322 message (the v3 API takes \
                 fields, not MIME); use smtp or graph for raw messages",
            ));
        }
        let from = prepared.sender();
        ascii_addresses_only(from, message)?;
        let total = message.recipients().count();
        if total > MAX_SENDGRID_RECIPIENTS {
            return Err(invalid(format!(
                "SendGrid accepts at most {MAX_SENDGRID_RECIPIENTS} recipients per message (to, \
                 cc and bcc together); this message has {total}: split it into several messages"
            )));
        }
        if message.to().is_empty() {
            return Err(invalid(
                "SendGrid requires at least one `to` recipient (cc or bcc alone are not \
                 accepted)",
            ));
        }
        if message.subject().is_empty() {
            return Err(invalid(
                "SendGrid requires a subject; the message's subject is empty",
            ));
        }
        // An address may appear once per personalization across to, cc and bcc.
        let mut seen: Vec<String> = Vec::new();
        let personalization = Personalization {
            to: once_each(message.to(), &mut seen, "recipient"),
            cc: once_each(message.cc(), &mut seen, "recipient"),
            bcc: once_each(message.bcc(), &mut seen, "recipient"),
        };

        let mut content = Vec::new();
        if let Some(text) = message.text_or_derived().filter(|t| !t.is_empty()) {
            content.push(Content {
                kind: "text/plain",
                value: text,
            });
        }
        if let Some(html) = message.html().filter(|h| !h.is_empty()) {
            content.push(Content {
                kind: "text/html",
                value: html.to_string(),
            });
        }
        if content.is_empty() {
            return Err(invalid("SendGrid requires a non-empty body (text or html)"));
        }

        let mut headers = BTreeMap::new();
        for (name, value) in message.headers() {
            if FORBIDDEN_HEADERS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(name))
            {
                return Err(invalid(format!(
                    "SendGrid does not allow setting header `{name}`"
                )));
            }
            if headers
                .keys()
                .any(|k: &String| k.eq_ignore_ascii_case(name))
            {
                return Err(invalid(format!(
                    "header `{name}` is given twice; SendGrid takes headers as a JSON object, \
                     so each name can appear once"
                )));
            }
            headers.insert(name.clone(), value.clone());
        }

        let mut categories: Vec<String> = Vec::new();
        for tag in message.tags() {
            if tag.chars().count() > MAX_CATEGORY_LEN {
                return Err(invalid(format!(
                    "tag {tag:?} is longer than SendGrid's {MAX_CATEGORY_LEN} characters for a \
                     category"
                )));
            }
            if !categories.contains(tag) {
                categories.push(tag.clone());
            }
        }
        if categories.len() > MAX_CATEGORIES {
            return Err(invalid(format!(
                "SendGrid accepts at most {MAX_CATEGORIES} categories (tags) per message; this \
                 message has {}",
                categories.len()
            )));
        }
        let custom_args = message.metadata().clone();
        let args_size: usize = custom_args.iter().map(|(k, v)| k.len() + v.len()).sum();
        if args_size > MAX_CUSTOM_ARGS_BYTES {
            return Err(invalid(format!(
                "the message's metadata is {args_size} bytes; SendGrid's custom_args may total \
                 at most {MAX_CUSTOM_ARGS_BYTES} bytes"
            )));
        }

        let attachments = message
            .attachments()
            .iter()
            .map(|a| SendAttachment {
                content: base64::engine::general_purpose::STANDARD.encode(a.content()),
                content_type: a.content_type().to_string(),
                filename: a.filename().to_string(),
                disposition: if a.is_inline() {
                    "inline"
                } else {
                    "attachment"
                },
                content_id: a.content_id().map(str::to_string),
            })
            .collect();

        // And once in reply_to_list: SendGrid refuses the request otherwise ("Each email
        // address in the reply_to_list should be unique").
        let mut reply_to_list = once_each(message.reply_to(), &mut Vec::new(), "reply-to");
        let reply_to = match reply_to_list.len() {
            1 => reply_to_list.pop(),
            _ => None,
        };

        Ok(MailSend {
            personalizations: vec![personalization],
            from: address(from),
            reply_to,
            reply_to_list,
            subject: message.subject().to_string(),
            content,
            attachments,
            headers,
            categories,
            custom_args,
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

/// `{"errors":[{"message":"...","field":"from.email","help":"..."}],"id":"..."}`.
fn parse_error(response: &Response) -> ProviderError {
    let json = response.json();
    let errors: Vec<&serde_json::Value> = json
        .as_ref()
        .and_then(|j| j.get("errors"))
        .and_then(|e| e.as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let field_of = |e: &serde_json::Value| {
        e.get("field")
            .and_then(|f| f.as_str())
            .filter(|f| !f.is_empty() && *f != "null")
            .map(str::to_string)
    };
    let texts: Vec<String> = errors
        .iter()
        .filter_map(|e| {
            let message = e.get("message").and_then(|m| m.as_str())?;
            let mut t = message.to_string();
            if let Some(field) = field_of(e) {
                t.push_str(&format!(" (field {field})"));
            }
            if let Some(help) = e
                .get("help")
                .and_then(|h| h.as_str())
                .filter(|h| !h.is_empty())
            {
                t.push_str(&format!(" (help: {help})"));
            }
            Some(t)
        })
        .collect();
    let code = errors.iter().find_map(|e| field_of(e));
    let all_text = texts.join("; ");
    let lower = all_text.to_ascii_lowercase();
    let kind = if lower.contains("credits exceeded") || lower.contains("quota") {
        // SendGrid answers an exhausted plan as 401 "Maximum credits exceeded".
        Some(ErrorKind::Permanent)
    } else if matches!(response.status, 400 | 422) && code.is_some() {
        Some(ErrorKind::InvalidMessage)
    } else {
        None
    };
    let message =
        (kind == Some(ErrorKind::Permanent) && !matches!(response.status, 413)).then(|| {
            "SendGrid's sending credits or quota are used up; retrying now will not help"
                .to_string()
        });
    ProviderError {
        code,
        text: (!all_text.is_empty()).then_some(all_text),
        kind,
        message,
    }
}

#[async_trait]
impl Transport for SendGridTransport {
    async fn send_prepared(&self, prepared: &PreparedMessage) -> Result<Receipt, Error> {
        let body = self.request_body(prepared)?;
        if body.len() > MAX_REQUEST_BYTES {
            return Err(invalid(format!(
                "the message is {} bytes as a SendGrid request; SendGrid accepts at most 30 MB \
                 per email, attachments included",
                body.len()
            )));
        }
        let message_id = prepared.message_id();
        let envelope = prepared.envelope();
        let url = super::endpoint(&self.account.base_url, "/v3/mail/send");
        let req = Request::post(url.clone(), Bytes::from(body), "application/json")
            .bearer(&self.account.api_key)?;
        tracing::debug!(%message_id, "sending through SendGrid");
        let response = self.account.http.send(&PROVIDER, req).await?;
        if !response.is_success() {
            return Err(self.error_for(&reqwest::Method::POST, &url, &response));
        }
        if response.status != 202 {
            tracing::debug!(
                status = response.status,
                "SendGrid answered a success other than 202"
            );
        }
        let provider_id = response
            .headers
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut receipt = Receipt::new("sendgrid", message_id, envelope.to.clone());
        if let Some(id) = provider_id {
            receipt = receipt.with_provider_id(id);
        }
        Ok(receipt)
    }

    /// `GET /v3/scopes`: the key must be valid and hold the `mail.send` scope.
    async fn verify(&self) -> Result<(), Error> {
        let url = super::endpoint(&self.account.base_url, "/v3/scopes");
        let req = Request::get(url.clone()).bearer(&self.account.api_key)?;
        let response = self.account.http.send(&PROVIDER, req).await?;
        if !response.is_success() {
            return Err(self.error_for(&reqwest::Method::GET, &url, &response));
        }
        let scopes: Vec<String> = response
            .json()
            .and_then(|j| j.get("scopes").cloned())
            .and_then(|s| serde_json::from_value(s).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "SendGrid's answer to GET {} has no `scopes` list: is `base_url` \
                         the SendGrid API?",
                        super::redact_url(&url)
                    ),
                )
            })?;
        if scopes.iter().any(|s| s == "mail.send") {
            return Ok(());
        }
        let mut shown: Vec<&str> = scopes.iter().map(String::as_str).take(20).collect();
        if scopes.len() > shown.len() {
            shown.push("...");
        }
        Err(Error::new(
            ErrorKind::Auth,
            format!(
                "the SendGrid API key is valid but lacks the `mail.send` scope (it has: {}); \
                 give the key Mail Send permission",
                if shown.is_empty() {
                    "none".to_string()
                } else {
                    shown.join(", ")
                }
            ),
        ))
    }

    /// The API's request limit (attachments count after Base64 encoding).
    fn size_limit(&self) -> Option<u64> {
        Some(MAX_REQUEST_BYTES as u64)
    }

    fn kind(&self) -> &'static str {
        "sendgrid"
    }

    fn describe(&self) -> String {
        format!(
            "sendgrid ({})",
            self.account.base_url.as_str().trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Message;

    /// Was the doc test of the public `request_body`.
    #[test]
    fn content_is_text_then_html() -> Result<(), Error> {
        let sg = SendGridTransport::builder("SG.x").build()?;
        let msg = Message::builder()
            .from("a@example.com")
            .to("b@example.com")
            .subject("Hi")
            .html("<p>Hello</p>")
            .build()?;
        let json: serde_json::Value =
            serde_json::from_slice(&sg.request_body(&sg.prepare(&msg)?)?).unwrap();
        assert_eq!(json["content"][0]["type"], "text/plain");
        assert_eq!(json["content"][1]["type"], "text/html");
        Ok(())
    }
}
