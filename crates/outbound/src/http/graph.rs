//! Microsoft Graph: `POST /v1.0/users/{sender}/sendMail` with an app-only token, in JSON or
//! MIME form; `GET /v1.0/users/{sender}` to verify.
//!
//! API reference: <https://learn.microsoft.com/en-us/graph/api/user-sendmail>,
//! the message resource (custom headers must start with `x-`, at most 500 recipients):
//! <https://learn.microsoft.com/en-us/graph/api/resources/message>,
//! the fileAttachment resource: <https://learn.microsoft.com/en-us/graph/api/resources/fileattachment>,
//! throttling (429 with `Retry-After`): <https://learn.microsoft.com/en-us/graph/throttling>,
//! errors (`{"error":{"code":..,"message":..}}`): <https://learn.microsoft.com/en-us/graph/errors>.

use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use reqwest::Method;
use serde::Serialize;

use super::{HttpClient, HttpOptions, Provider, ProviderError, Request, Response};
use crate::message::PreparedMessage;
use crate::oauth::{with_fresh_token, Attempt, TokenCache};
use crate::{Error, ErrorKind, Mailbox, Message, Receipt, Transport};

/// Graph refuses `sendMail` requests larger than 4 MB (larger attachments need an upload
/// session); checked before sending.
pub const MAX_GRAPH_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The JSON form carries at most this many custom (`X-`) headers; a message with more is sent
/// in MIME form.
pub const MAX_GRAPH_HEADERS: usize = 5;

/// Exchange Online delivers one message to at most 500 recipients (to, cc and bcc together).
const MAX_RECIPIENTS: usize = 500;

const PROVIDER: Provider = Provider {
    name: "Microsoft Graph",
    credentials_hint: "`client_id`, `client_secret`, `tenant_id` and the app's Mail.Send \
                       permission",
    url_hint: "`base_url`",
};

/// Sends through Microsoft Graph `sendMail` as one mailbox, with an app-only token from a
/// [`TokenCache`] (client credentials, scope [`MICROSOFT_GRAPH_SCOPE`](crate::oauth::MICROSOFT_GRAPH_SCOPE)).
///
/// The **JSON form** is used when it can say everything the message says: one body (HTML or
/// text), recipients, reply-to, attachments (inline ones with `contentId`), at most
/// [`MAX_GRAPH_HEADERS`] extra headers all named `X-...` with ASCII values, and the message's
/// tags as Outlook `categories` (metadata has no Graph equivalent and is not sent). Otherwise —
/// text *and* HTML, other headers, a raw RFC 5322 message — the **MIME form** is used: the
/// rendered message, Base64-encoded, as `text/plain`. Exchange reads the recipients from the
/// MIME headers, so Bcc recipients are added as a `Bcc:` header (Exchange removes it before
/// delivery); in MIME form Graph always saves to Sent Items (it has no parameter for it).
///
/// `saveToSentItems` is off unless [`GraphBuilder::save_to_sent_items`] turns it on. Requests
/// over [`MAX_GRAPH_REQUEST_BYTES`] are refused before sending. When Graph answers 401, the token
/// is invalidated in the cache and the request retried once with a new one.
///
/// ```
/// use outbound::graph::GraphTransport;
/// use outbound::oauth::{StaticToken, TokenCache};
/// use secrecy::SecretString;
/// let tokens = TokenCache::new(StaticToken::new(SecretString::from("token")));
/// let graph = GraphTransport::builder("mailer@contoso.com".parse()?, tokens)
///     .base_url("http://127.0.0.1:9")
///     .save_to_sent_items(true)
///     .build()?;
/// assert_eq!(outbound::Transport::describe(&graph),
///     "graph (http://127.0.0.1:9, as mailer@contoso.com)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct GraphTransport {
    http: HttpClient,
    tokens: TokenCache,
    base_url: url::Url,
    mailbox: Mailbox,
    save_to_sent_items: bool,
}

/// Configures a [`GraphTransport`].
pub struct GraphBuilder {
    tokens: TokenCache,
    mailbox: Mailbox,
    base_url: Option<String>,
    save_to_sent_items: bool,
    options: HttpOptions,
}

impl fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBuilder")
            .field("tokens", &self.tokens)
            .field("mailbox", &self.mailbox)
            .field("base_url", &self.base_url)
            .field("save_to_sent_items", &self.save_to_sent_items)
            .finish()
    }
}

impl GraphBuilder {
    /// The Graph base URL (default [`GraphTransport::DEFAULT_URL`]; national clouds have their
    /// own, e.g. `https://graph.microsoft.us`); `http://` only to loopback.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Whether the sent message is kept in the mailbox's Sent Items (default `false`).
    pub fn save_to_sent_items(mut self, yes: bool) -> Self {
        self.save_to_sent_items = yes;
        self
    }

    /// Timeouts.
    pub fn http_options(mut self, options: HttpOptions) -> Self {
        self.options = options;
        self
    }

    /// Builds the transport (no request is made).
    pub fn build(self) -> Result<GraphTransport, Error> {
        let base_url = super::parse_base_url(
            self.base_url
                .as_deref()
                .unwrap_or(GraphTransport::DEFAULT_URL),
            "`base_url`",
        )
        .map_err(|e| e.for_setting("base_url"))?;
        Ok(GraphTransport {
            http: HttpClient::new(self.options)?,
            tokens: self.tokens,
            base_url,
            mailbox: self.mailbox,
            save_to_sent_items: self.save_to_sent_items,
        })
    }
}

impl fmt::Debug for GraphTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphTransport")
            .field("base_url", &self.base_url.as_str())
            .field("mailbox", &self.mailbox.email())
            .field("save_to_sent_items", &self.save_to_sent_items)
            .field("tokens", &self.tokens)
            .finish()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SendMail {
    message: GraphMessage,
    save_to_sent_items: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GraphMessage {
    subject: String,
    body: ItemBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<Recipient>,
    to_recipients: Vec<Recipient>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cc_recipients: Vec<Recipient>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bcc_recipients: Vec<Recipient>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reply_to: Vec<Recipient>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<FileAttachment>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    internet_message_headers: Vec<HeaderPair>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    categories: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemBody {
    content_type: &'static str,
    content: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: EmailAddress,
}

#[derive(Debug, Serialize)]
struct EmailAddress {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FileAttachment {
    #[serde(rename = "@odata.type")]
    odata_type: &'static str,
    name: String,
    content_type: String,
    content_bytes: String,
    is_inline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct HeaderPair {
    name: String,
    value: String,
}

fn recipient(m: &Mailbox) -> Recipient {
    let (name, address) = super::api_mailbox(m);
    Recipient {
        email_address: EmailAddress { address, name },
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidMessage, message)
}

/// How a message goes to Graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Json,
    Mime,
}

impl GraphTransport {
    /// `https://graph.microsoft.com`.
    pub const DEFAULT_URL: &'static str = "https://graph.microsoft.com";

    /// Starts configuring a transport that sends as `mailbox` (the `{id | userPrincipalName}`
    /// of `/users/{...}/sendMail`) with tokens from `tokens`.
    pub fn builder(mailbox: Mailbox, tokens: TokenCache) -> GraphBuilder {
        GraphBuilder {
            tokens,
            mailbox,
            base_url: None,
            save_to_sent_items: false,
            options: HttpOptions::default(),
        }
    }

    /// The mailbox messages are sent from.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// The request `send` would make for `message`: its content type (`application/json` or
    /// `text/plain` for the MIME form) and body. Nothing is sent.
    pub(crate) fn request_body(
        &self,
        prepared: &PreparedMessage,
    ) -> Result<(&'static str, Vec<u8>), Error> {
        let message = prepared.message();
        let total = message.recipients().count();
        if total > MAX_RECIPIENTS {
            return Err(invalid(format!(
                "Exchange Online accepts at most {MAX_RECIPIENTS} recipients per message (to, \
                 cc and bcc together); this message has {total}: split it into several messages"
            )));
        }
        let (content_type, body) = match self.form(message) {
            Form::Json => (
                "application/json",
                serde_json::to_vec(&self.json_body(message)?)
                    .map_err(|e| invalid(format!("could not encode the message as JSON: {e}")))?,
            ),
            Form::Mime => ("text/plain", self.mime_body(prepared)?),
        };
        if body.len() > MAX_GRAPH_REQUEST_BYTES {
            return Err(invalid(format!(
                "the message makes a Graph sendMail request of {} bytes; Graph accepts at most \
                 4 MB ({MAX_GRAPH_REQUEST_BYTES} bytes) per request, attachments counted after \
                 Base64 encoding: send large attachments through SMTP or make them smaller",
                body.len()
            )));
        }
        Ok((content_type, body))
    }

    /// JSON when it can express the message, MIME otherwise (see the type's docs).
    pub(crate) fn form(&self, message: &Message) -> Form {
        if message.raw().is_some() || (message.html().is_some() && message.text().is_some()) {
            return Form::Mime;
        }
        let headers = message.headers();
        let json_headers = headers.len() <= MAX_GRAPH_HEADERS
            && headers.iter().all(|(name, value)| {
                name.len() > 2 && name[..2].eq_ignore_ascii_case("x-") && value.is_ascii()
            });
        if json_headers {
            Form::Json
        } else {
            Form::Mime
        }
    }

    fn json_body(&self, message: &Message) -> Result<SendMail, Error> {
        let (content_type, content) = match (message.html(), message.text()) {
            (Some(html), _) => ("HTML", html.to_string()),
            (None, Some(text)) => ("Text", text.to_string()),
            (None, None) => return Err(crate::MessageError::NoBody.into()),
        };
        let from = message
            .from()
            .filter(|f| {
                !f.ascii_email()
                    .eq_ignore_ascii_case(&self.mailbox.ascii_email())
            })
            .map(recipient);
        let attachments = message
            .attachments()
            .iter()
            .map(|a| FileAttachment {
                odata_type: "#microsoft.graph.fileAttachment",
                name: a.filename().to_string(),
                content_type: a.content_type().to_string(),
                content_bytes: base64::engine::general_purpose::STANDARD.encode(a.content()),
                is_inline: a.is_inline(),
                content_id: a.content_id().map(str::to_string),
            })
            .collect();
        if !message.metadata().is_empty() {
            tracing::debug!("Graph has no equivalent of message metadata; it is not sent");
        }
        Ok(SendMail {
            message: GraphMessage {
                subject: message.subject().to_string(),
                body: ItemBody {
                    content_type,
                    content,
                },
                from,
                to_recipients: message.to().iter().map(recipient).collect(),
                cc_recipients: message.cc().iter().map(recipient).collect(),
                bcc_recipients: message.bcc().iter().map(recipient).collect(),
                reply_to: message.reply_to().iter().map(recipient).collect(),
                attachments,
                internet_message_headers: message
                    .headers()
                    .iter()
                    .map(|(name, value)| HeaderPair {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                categories: message.tags().to_vec(),
            },
            save_to_sent_items: self.save_to_sent_items,
        })
    }

    /// Base64 of the rendered message, with a `Bcc:` header for recipients that are not in
    /// its To/Cc headers (Exchange takes the recipients from the MIME headers).
    fn mime_body(&self, prepared: &PreparedMessage) -> Result<Vec<u8>, Error> {
        let rendered = prepared.bytes()?;
        let envelope = prepared.envelope();
        let header_end = rendered
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(rendered.len(), |p| p + 2);
        let parsed = mail_parser::MessageParser::default().parse_headers(&rendered[..header_end]);
        let mut in_headers: Vec<String> = Vec::new();
        if let Some(parsed) = &parsed {
            for list in [parsed.to(), parsed.cc(), parsed.bcc()]
                .into_iter()
                .flatten()
            {
                in_headers.extend(
                    list.iter()
                        .filter_map(|a| a.address())
                        .map(|a| a.to_ascii_lowercase()),
                );
            }
        }
        let envelope_lower: Vec<String> =
            envelope.to.iter().map(|a| a.to_ascii_lowercase()).collect();
        if let Some(extra) = in_headers
            .iter()
            .find(|h| !envelope_lower.iter().any(|e| e == *h || idn_eq(e, h)))
        {
            return Err(invalid(format!(
                "Graph sends a MIME message to the addresses in its To/Cc headers; `{extra}` \
                 is in the raw message's headers but not among the recipients given: add it to \
                 the recipients or take recipients from the headers"
            )));
        }
        let missing: Vec<&String> = envelope
            .to
            .iter()
            .filter(|e| {
                let e = e.to_ascii_lowercase();
                !in_headers.iter().any(|h| *h == e || idn_eq(&e, h))
            })
            .collect();
        let mut mime = Vec::with_capacity(rendered.len() + 64);
        if !missing.is_empty() {
            mime.extend_from_slice(b"Bcc: ");
            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            // Folded so no line exceeds the limit, one address per line.
            mime.extend_from_slice(list.join(",\r\n ").as_bytes());
            mime.extend_from_slice(b"\r\n");
        }
        mime.extend_from_slice(rendered);
        Ok(base64::engine::general_purpose::STANDARD
            .encode(&mime)
            .into_bytes())
    }

    fn url(&self, tail: Option<&str>) -> url::Url {
        let mut url = self.base_url.clone();
        let prefix: Vec<String> = self
            .base_url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.clear();
            segments.extend(prefix.iter().map(String::as_str));
            segments
                .push("v1.0")
                .push("users")
                .push(self.mailbox.email());
            if let Some(tail) = tail {
                segments.push(tail);
            }
        }
        url
    }

    /// Sends with a token; on 401 invalidates it and tries once more with a new one
    /// ([`with_fresh_token`], the helper SMTP's login uses too; not when the cache hands back
    /// the same token).
    async fn call(&self, mut make: impl FnMut() -> Request) -> Result<Response, Error> {
        let first = self.tokens.get().await?.secret().clone();
        with_fresh_token(&self.tokens, first, |token| {
            let req = make().bearer(&token);
            async move {
                let response = self.http.send(&PROVIDER, req?).await?;
                if response.status == 401 {
                    tracing::info!("Microsoft Graph rejected the access token (401)");
                    return Err(Attempt::Rejected(Ok(response)));
                }
                Ok(response)
            }
        })
        .await
    }

    fn error_for(&self, method: &Method, url: &url::Url, response: &Response) -> Error {
        super::status_error(
            &PROVIDER,
            method,
            url,
            response,
            self.parse_error(response),
            &[],
        )
    }

    /// `{"error":{"code":"ErrorSendAsDenied","message":"..."}}`.
    fn parse_error(&self, response: &Response) -> ProviderError {
        let json = response.json();
        let err = json.as_ref().and_then(|j| j.get("error"));
        let field = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let code = field("code");
        let text = field("message");
        let mailbox = self.mailbox.email();
        let (kind, message) = match (response.status, code.as_deref().unwrap_or("")) {
            (_, "MailboxNotEnabledForRESTAPI" | "MailboxNotHostedInExchangeOnline") => (
                Some(ErrorKind::Config),
                Some(format!(
                    "the mailbox {mailbox} cannot send through Graph (no Exchange Online \
                     mailbox, or REST is disabled for it): check `mailbox`"
                )),
            ),
            (404, _) => (
                Some(ErrorKind::Config),
                Some(format!(
                    "Microsoft Graph does not know the mailbox {mailbox} (HTTP 404): check \
                     `mailbox`, the tenant (`tenant_id`), and `base_url`"
                )),
            ),
            (403, "ErrorSendAsDenied") => (
                Some(ErrorKind::Auth),
                Some(format!(
                    "the app may not send as the message's From address from mailbox \
                     {mailbox} (ErrorSendAsDenied): send from {mailbox} or grant SendAs"
                )),
            ),
            (401 | 403, _) => (
                Some(ErrorKind::Auth),
                Some(format!(
                    "Microsoft Graph refused the app's token or permission (HTTP {}): the app \
                     needs the Mail.Send application permission with admin consent; check \
                     `client_id`, `client_secret` and `tenant_id`",
                    response.status
                )),
            ),
            (_, "ErrorQuotaExceeded" | "ErrorSubmissionQuotaExceeded") => (
                Some(ErrorKind::Permanent),
                Some(format!(
                    "the mailbox {mailbox} is over its quota or sending limit; retrying now will \
                     not help"
                )),
            ),
            (400 | 413 | 422, c)
                if c.starts_with("ErrorInvalid")
                    || c.starts_with("ErrorMimeContent")
                    || c == "ErrorMessageSizeExceeded"
                    || c == "ErrorRecipientLimitExceeded" =>
            {
                (Some(ErrorKind::InvalidMessage), None)
            }
            _ => (None, None),
        };
        ProviderError {
            code,
            text,
            kind,
            message,
        }
    }
}

/// Whether two addresses differ only in the domain's form (punycode vs Unicode).
fn idn_eq(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.rsplit_once('@')
            .map(|(l, d)| {
                let d = idna::domain_to_ascii(d).unwrap_or_else(|_| d.to_string());
                format!("{l}@{d}")
            })
            .unwrap_or_else(|| s.to_string())
    };
    norm(a) == norm(b)
}

#[async_trait]
impl Transport for GraphTransport {
    async fn send_prepared(&self, prepared: &PreparedMessage) -> Result<Receipt, Error> {
        let form = self.form(prepared.message());
        let (content_type, body) = self.request_body(prepared)?;
        let message_id = prepared.message_id();
        let envelope = prepared.envelope();
        let url = self.url(Some("sendMail"));
        let body = Bytes::from(body);
        tracing::debug!(%message_id, ?form, bytes = body.len(), "sending through Microsoft Graph");
        if form == Form::Mime && !self.save_to_sent_items {
            tracing::debug!(
                "MIME form: Graph saves the message to Sent Items (it takes no saveToSentItems \
                 parameter for MIME)"
            );
        }
        let response = self
            .call(|| Request::post(url.clone(), body.clone(), content_type))
            .await?;
        if !response.is_success() {
            return Err(self.error_for(&Method::POST, &url, &response));
        }
        if let Some(id) = response
            .headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
        {
            tracing::debug!(
                request_id = id,
                status = response.status,
                "Graph accepted the message"
            );
        }
        Ok(Receipt::new("graph", message_id, envelope.to.clone()))
    }

    /// Graph sends as its mailbox: a message without `from` is sent from it.
    fn prepare(&self, message: &Message) -> Result<PreparedMessage, Error> {
        Ok(message.prepare(Some(&self.mailbox))?)
    }

    /// Acquires a token and looks the mailbox up (`GET /v1.0/users/{mailbox}`). An app with
    /// only `Mail.Send` may not read users: a 403 there still proves the token works, so it
    /// counts as success (with a warning that the mailbox was not checked).
    async fn verify(&self) -> Result<(), Error> {
        let mut url = self.url(None);
        url.set_query(Some("$select=id,mail,userPrincipalName"));
        let response = self.call(|| Request::get(url.clone())).await?;
        if response.is_success() {
            return Ok(());
        }
        if response.status == 403 {
            tracing::warn!(
                mailbox = self.mailbox.email(),
                "the token works, but the app may not read users (User.Read.All), so the \
                 mailbox was not checked"
            );
            return Ok(());
        }
        Err(self.error_for(&Method::GET, &url, &response))
    }

    /// The API's request limit (attachments count after Base64 encoding).
    fn size_limit(&self) -> Option<u64> {
        Some(MAX_GRAPH_REQUEST_BYTES as u64)
    }

    fn kind(&self) -> &'static str {
        "graph"
    }

    fn describe(&self) -> String {
        format!(
            "graph ({}, as {})",
            self.base_url.as_str().trim_end_matches('/'),
            self.mailbox.email()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use secrecy::SecretString;

    use super::*;
    use crate::oauth::StaticToken;

    /// Was the doc test of the public `request_body`.
    #[test]
    fn json_form_unless_both_bodies() -> Result<(), Error> {
        let graph = GraphTransport::builder(
            "mailer@contoso.com".parse()?,
            TokenCache::new(StaticToken::new(SecretString::from("t"))),
        )
        .build()?;
        let simple = Message::builder()
            .to("a@example.com")
            .subject("Hi")
            .html("<p>Hi</p>")
            .build()?;
        assert_eq!(
            graph.request_body(&graph.prepare(&simple)?)?.0,
            "application/json"
        );
        let both = Message::builder()
            .to("a@example.com")
            .subject("Hi")
            .text("Hi")
            .html("<p>Hi</p>")
            .build()?;
        assert_eq!(graph.request_body(&graph.prepare(&both)?)?.0, "text/plain");
        Ok(())
    }
}
