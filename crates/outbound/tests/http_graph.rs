#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Microsoft Graph against a local HTTP server (wiremock) playing both the Entra ID token
//! endpoint and Graph.
//!
//! Request shape checked against Microsoft's published API reference:
//! - user: sendMail, `POST /v1.0/users/{id | userPrincipalName}/sendMail`, JSON
//!   `{"message": {...}, "saveToSentItems": bool}` or MIME (`Content-Type: text/plain`, body the
//!   Base64 of the MIME message), 202 Accepted:
//!   <https://learn.microsoft.com/en-us/graph/api/user-sendmail>
//! - message resource (subject, body {contentType, content}, from, toRecipients,
//!   ccRecipients, bccRecipients, replyTo, attachments, internetMessageHeaders — custom headers
//!   only, named `x-...` —, categories; at most 500 recipients):
//!   <https://learn.microsoft.com/en-us/graph/api/resources/message>
//! - fileAttachment (`@odata.type` `#microsoft.graph.fileAttachment`, name, contentType,
//!   contentBytes, isInline, contentId):
//!   <https://learn.microsoft.com/en-us/graph/api/resources/fileattachment>
//! - errors `{"error": {"code", "message"}}`: <https://learn.microsoft.com/en-us/graph/errors>
//! - throttling, 429 with `Retry-After`: <https://learn.microsoft.com/en-us/graph/throttling>
//! - client credentials token request, scope `https://graph.microsoft.com/.default`:
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use outbound::config::Settings;
use outbound::graph::{GraphTransport, HttpOptions, MAX_GRAPH_REQUEST_BYTES};
use outbound::oauth::{ClientCredentials, TokenCache};
use outbound::{Attachment, ErrorKind, Message, Transport};
use outbound_cli::Sysexits;
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{header as header_is, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "CANARY-client-secret-7q8w9e";
const MAILBOX: &str = "mailer@contoso.com";
const SEND_PATH: &str = "/v1.0/users/mailer@contoso.com/sendMail";

/// Answers token requests with `token-1`, `token-2`, ...
struct Tokens(Arc<AtomicUsize>);

impl Respond for Tokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": format!("CANARY-token-{n}")
        }))
    }
}

/// A server with a token endpoint; returns it and the count of token requests.
async fn server() -> (MockServer, Arc<AtomicUsize>) {
    let server = MockServer::start().await;
    let count = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(Tokens(count.clone()))
        .mount(&server)
        .await;
    (server, count)
}

fn tokens(server: &MockServer) -> TokenCache {
    TokenCache::new(
        ClientCredentials::microsoft_graph(TENANT, CLIENT_ID, SecretString::from(SECRET))
            .authority(server.uri())
            .build()
            .unwrap(),
    )
}

fn transport(server: &MockServer) -> GraphTransport {
    GraphTransport::builder(MAILBOX.parse().unwrap(), tokens(server))
        .base_url(server.uri())
        .build()
        .unwrap()
}

/// The same transport configured the way an operator does it, from Dify's variables, so
/// errors name them.
fn configured(server: &MockServer) -> std::sync::Arc<dyn Transport> {
    outbound_testkit::configured(&[
        ("MAIL_TYPE", "graph"),
        ("MAIL_DEFAULT_SEND_FROM", MAILBOX),
        ("MICROSOFT_OAUTH2_CLIENT_ID", CLIENT_ID),
        ("MICROSOFT_OAUTH2_CLIENT_SECRET", SECRET),
        ("MICROSOFT_OAUTH2_TENANT_ID", TENANT),
        ("MICROSOFT_OAUTH2_AUTHORITY", &server.uri()),
        ("MICROSOFT_GRAPH_API_URL", &server.uri()),
    ])
}

async fn accept_send(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(202).insert_header("request-id", "req-1"))
        .mount(server)
        .await;
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn sends(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/v1.0/"))
        .collect()
}

/// Everything the JSON form can carry: one HTML body, recipients, reply-to, attachments,
/// X- headers, tags.
fn json_message() -> Message {
    Message::builder()
        .from("Mailer <mailer@contoso.com>")
        .to("Bob <bob@example.com>")
        .to("carol@example.com")
        .cc("Dave <dave@example.com>")
        .bcc("eve@example.com")
        .reply_to("Support <support@contoso.com>")
        .subject("Invoice für März")
        .html("<p>Your invoice is attached.</p><img src=\"cid:logo\">")
        .attach(Attachment::from_bytes(
            "invoice.pdf",
            b"%PDF-1.4 fake".to_vec(),
        ))
        .attach(Attachment::from_bytes("logo.png", vec![0x89, b'P', b'N', b'G']).inline("logo"))
        .header("X-Campaign", "spring")
        .header("X-Customer", "cus-42")
        .tag("invoice")
        .message_id("invoice-42@contoso.com")
        .build()
        .unwrap()
}

/// Compared with user: sendMail and the message / fileAttachment resources.
#[tokio::test]
async fn json_form_matches_the_sendmail_reference() {
    let (server, token_requests) = server().await;
    accept_send(&server).await;
    let graph = transport(&server);
    let receipt = graph.send(&json_message()).await.unwrap();
    assert_eq!(receipt.transport, "graph");
    assert_eq!(receipt.message_id, "<invoice-42@contoso.com>");
    assert_eq!(receipt.accepted.len(), 4);
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);

    let all = server.received_requests().await.unwrap();
    let token_req = &all[0];
    let form: HashMap<String, String> = url::form_urlencoded::parse(&token_req.body)
        .into_owned()
        .collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "https://graph.microsoft.com/.default");
    assert_eq!(form["client_id"], CLIENT_ID);

    let requests = sends(&server).await;
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), SEND_PATH);
    assert_eq!(header(req, "authorization"), Some("Bearer CANARY-token-1"));
    assert_eq!(header(req, "content-type"), Some("application/json"));
    assert_eq!(
        header(req, "user-agent"),
        Some(format!("outbound/{}", env!("CARGO_PKG_VERSION")).as_str())
    );

    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let expected = json!({
        "message": {
            "subject": "Invoice für März",
            "body": {
                "contentType": "HTML",
                "content": "<p>Your invoice is attached.</p><img src=\"cid:logo\">"
            },
            "toRecipients": [
                {"emailAddress": {"address": "bob@example.com", "name": "Bob"}},
                {"emailAddress": {"address": "carol@example.com"}}
            ],
            "ccRecipients": [{"emailAddress": {"address": "dave@example.com", "name": "Dave"}}],
            "bccRecipients": [{"emailAddress": {"address": "eve@example.com"}}],
            "replyTo": [{"emailAddress": {"address": "support@contoso.com", "name": "Support"}}],
            "attachments": [
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": "invoice.pdf",
                    "contentType": "application/pdf",
                    "contentBytes": "JVBERi0xLjQgZmFrZQ==",
                    "isInline": false
                },
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": "logo.png",
                    "contentType": "image/png",
                    "contentBytes": "iVBORw==",
                    "isInline": true,
                    "contentId": "logo"
                }
            ],
            "internetMessageHeaders": [
                {"name": "X-Campaign", "value": "spring"},
                {"name": "X-Customer", "value": "cus-42"}
            ],
            "categories": ["invoice"]
        },
        "saveToSentItems": false
    });
    for (field, value) in expected["message"].as_object().unwrap() {
        assert_eq!(&body["message"][field], value, "message.{field}");
    }
    assert_eq!(body, expected, "no field beyond the reference's");
    let shown = format!("{graph:?} {}", graph.describe());
    assert!(!shown.contains("CANARY"), "a secret leaked: {shown}");
}

#[tokio::test]
async fn json_form_text_body_other_from_and_save_to_sent_items() {
    let (server, _) = server().await;
    accept_send(&server).await;
    let graph = GraphTransport::builder(MAILBOX.parse().unwrap(), tokens(&server))
        .base_url(server.uri())
        .save_to_sent_items(true)
        .build()
        .unwrap();
    let msg = Message::builder()
        .from("Alice <alice@contoso.com>")
        .to("bob@example.com")
        .subject("Hi")
        .text("plain words")
        .build()
        .unwrap();
    graph.send(&msg).await.unwrap();
    let body: Value = serde_json::from_slice(&sends(&server).await[0].body).unwrap();
    assert_eq!(body["saveToSentItems"], true);
    assert_eq!(
        body["message"]["body"],
        json!({"contentType": "Text", "content": "plain words"})
    );
    assert_eq!(
        body["message"]["from"],
        json!({"emailAddress": {"address": "alice@contoso.com", "name": "Alice"}}),
        "a From other than the mailbox is sent as `from` (needs SendAs)"
    );
}

/// Text and HTML together cannot be said in JSON: the MIME form, Base64, `text/plain`.
#[tokio::test]
async fn mime_form_for_text_and_html_with_bcc_header() {
    let (server, _) = server().await;
    accept_send(&server).await;
    let graph = transport(&server);
    let msg = Message::builder()
        .to("Bob <bob@example.com>")
        .cc("dave@example.com")
        .bcc("eve@example.com")
        .subject("Both bodies")
        .text("plain version")
        .html("<p>html version</p>")
        .header("List-Unsubscribe", "<mailto:u@contoso.com>")
        .message_id("both-1@contoso.com")
        .build()
        .unwrap();
    graph.send(&msg).await.unwrap();
    let req = &sends(&server).await[0];
    assert_eq!(req.url.path(), SEND_PATH);
    assert_eq!(header(req, "content-type"), Some("text/plain"));
    let mime = base64::engine::general_purpose::STANDARD
        .decode(&req.body)
        .expect("the body is Base64");
    let parsed = mailparse::parse_mail(&mime).unwrap();
    let h = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|x| x.get_key().eq_ignore_ascii_case(name))
            .map(|x| x.get_value())
    };
    assert!(
        h("From").unwrap().contains(MAILBOX),
        "the mailbox is the sender"
    );
    assert!(h("To").unwrap().contains("bob@example.com"));
    assert!(h("Cc").unwrap().contains("dave@example.com"));
    assert_eq!(
        h("Bcc").as_deref(),
        Some("eve@example.com"),
        "Exchange takes recipients from the MIME headers"
    );
    assert_eq!(h("Subject").as_deref(), Some("Both bodies"));
    assert_eq!(h("Message-ID").as_deref(), Some("<both-1@contoso.com>"));
    assert_eq!(
        h("List-Unsubscribe").as_deref(),
        Some("<mailto:u@contoso.com>")
    );
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let parts: Vec<String> = parsed
        .subparts
        .iter()
        .map(|p| p.get_body().unwrap())
        .collect();
    assert!(parts[0].contains("plain version"));
    assert!(parts[1].contains("html version"));
}

/// The MIME form with a binary attachment given before an inline image (issue 19: rendering
/// failed, "an attachment's place in the message was lost").
#[tokio::test]
async fn mime_form_with_a_binary_attachment_and_an_inline_image() {
    let (server, _) = server().await;
    accept_send(&server).await;
    let graph = transport(&server);
    let pdf: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 256) as u8).collect();
    let png: Vec<u8> = (0..300u32).map(|i| (255 - i % 256) as u8).collect();
    let msg = Message::builder()
        .to("bob@example.com")
        .subject("Invoice")
        .text("Your invoice is attached.")
        .html("<img src=\"cid:logo\"><p>Your invoice is attached.</p>")
        .attach(Attachment::from_bytes("invoice.pdf", pdf.clone()))
        .attach(Attachment::from_bytes("logo.png", png.clone()).inline("logo"))
        .build()
        .unwrap();
    graph.send(&msg).await.unwrap();
    let req = &sends(&server).await[0];
    assert_eq!(header(req, "content-type"), Some("text/plain"));
    let mime = base64::engine::general_purpose::STANDARD
        .decode(&req.body)
        .expect("the body is Base64");
    let parsed = mailparse::parse_mail(&mime).unwrap();
    let part = |mimetype: &str| {
        parsed
            .parts()
            .find(|p| p.ctype.mimetype == mimetype)
            .unwrap_or_else(|| panic!("no {mimetype} part"))
    };
    let image = part("image/png");
    assert_eq!(image.get_body_raw().unwrap(), png);
    assert_eq!(
        image
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case("Content-ID"))
            .map(|h| h.get_value())
            .as_deref(),
        Some("<logo>")
    );
    let invoice = part("application/pdf");
    assert_eq!(invoice.get_body_raw().unwrap(), pdf);
    assert_eq!(
        invoice
            .get_content_disposition()
            .params
            .get("filename")
            .map(String::as_str),
        Some("invoice.pdf")
    );
}

#[tokio::test]
async fn headers_graph_json_cannot_take_go_as_mime() {
    let (server, _) = server().await;
    accept_send(&server).await;
    let graph = transport(&server);
    let mut b = Message::builder()
        .to("bob@example.com")
        .subject("s")
        .text("t");
    for i in 0..6 {
        b = b.header(format!("X-H{i}"), "v");
    }
    graph.send(&b.build().unwrap()).await.unwrap();
    let one_non_x = Message::builder()
        .to("bob@example.com")
        .subject("s")
        .text("t")
        .header("Auto-Submitted", "auto-generated")
        .build()
        .unwrap();
    graph.send(&one_non_x).await.unwrap();
    let five_x = Message::builder()
        .to("bob@example.com")
        .subject("s")
        .text("t")
        .header("X-A", "1")
        .header("X-B", "2")
        .header("X-C", "3")
        .header("X-D", "4")
        .header("X-E", "5")
        .build()
        .unwrap();
    graph.send(&five_x).await.unwrap();
    let types: Vec<String> = sends(&server)
        .await
        .iter()
        .map(|r| header(r, "content-type").unwrap().to_string())
        .collect();
    assert_eq!(types, ["text/plain", "text/plain", "application/json"]);
}

#[tokio::test]
async fn raw_message_goes_as_mime() {
    let (server, _) = server().await;
    accept_send(&server).await;
    let graph = transport(&server);
    let raw = b"From: mailer@contoso.com\r\nTo: bob@example.com\r\nBcc: eve@example.com\r\nSubject: raw\r\n\r\nraw body\r\n";
    let msg = Message::builder()
        .raw(raw.to_vec())
        .recipients_from_headers(true)
        .build()
        .unwrap();
    graph.send(&msg).await.unwrap();
    let req = &sends(&server).await[0];
    assert_eq!(header(req, "content-type"), Some("text/plain"));
    let mime = base64::engine::general_purpose::STANDARD
        .decode(&req.body)
        .unwrap();
    let text = String::from_utf8(mime).unwrap();
    assert!(text.starts_with("Bcc: eve@example.com\r\n"), "{text}");
    assert!(text.contains("\r\n\r\nraw body"), "{text}");

    // A raw message whose headers name someone not among the recipients is refused:
    // Graph would deliver to them.
    let msg = Message::builder()
        .raw(raw.to_vec())
        .to("other@example.com")
        .build()
        .unwrap();
    let err = graph.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(err.to_string().contains("bob@example.com"), "{err}");
}

#[tokio::test]
async fn the_4_mb_limit_is_checked_before_sending() {
    let (server, token_requests) = server().await;
    accept_send(&server).await;
    let graph = transport(&server);
    let big = vec![7u8; 3 * 1024 * 1024 + 1]; // 4 MB + a little after Base64
    let msg = Message::builder()
        .to("bob@example.com")
        .subject("big")
        .text("see attachment")
        .attach(Attachment::from_bytes("big.bin", big))
        .build()
        .unwrap();
    let err = graph.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert_eq!(err.exit_code(), 65);
    assert!(
        err.to_string().contains("4 MB")
            && err
                .to_string()
                .contains(&MAX_GRAPH_REQUEST_BYTES.to_string()),
        "{err}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
    assert_eq!(token_requests.load(Ordering::SeqCst), 0, "not even a token");

    let mut b = Message::builder().subject("s").text("t");
    for i in 0..501 {
        b = b.to(format!("r{i}@example.com"));
    }
    let err = graph.send(&b.build().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("at most 500 recipients"), "{err}");
}

/// A 401 invalidates the token in the cache and the request is retried once with a new one.
#[tokio::test]
async fn a_401_refreshes_the_token_and_retries_once() {
    let (server, token_requests) = server().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .and(header_is("authorization", "Bearer CANARY-token-1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "code": "InvalidAuthenticationToken",
            "message": "Lifetime validation failed, the token is expired."}})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .and(header_is("authorization", "Bearer CANARY-token-2"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let graph = transport(&server);
    graph.send(&json_message()).await.unwrap();
    assert_eq!(token_requests.load(Ordering::SeqCst), 2);
    let auths: Vec<String> = sends(&server)
        .await
        .iter()
        .map(|r| header(r, "authorization").unwrap().to_string())
        .collect();
    assert_eq!(auths, ["Bearer CANARY-token-1", "Bearer CANARY-token-2"]);
}

#[tokio::test]
async fn a_second_401_is_an_auth_error_after_exactly_two_attempts() {
    let (server, token_requests) = server().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "code": "InvalidAuthenticationToken",
            "message": "Access token validation failure. Invalid audience."}})))
        .mount(&server)
        .await;
    let err = transport(&server).send(&json_message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(sends(&server).await.len(), 2);
    assert_eq!(token_requests.load(Ordering::SeqCst), 2);
}

struct Case {
    status: u16,
    code: &'static str,
    message: &'static str,
    headers: &'static [(&'static str, &'static str)],
    kind: ErrorKind,
    says: &'static str,
}

/// Statuses and `{"error":{"code","message"}}` bodies as Graph sends them.
#[tokio::test]
async fn error_mapping() {
    let cases = [
        Case {
            status: 400,
            code: "ErrorInvalidRecipients",
            message: "At least one recipient isn't valid., Recipient 'bob@' isn't resolved.",
            headers: &[],
            kind: ErrorKind::InvalidMessage,
            says: "rejected the message as invalid",
        },
        Case {
            status: 400,
            code: "BadRequest",
            message: "Invalid base64 string for MIME content.",
            headers: &[],
            kind: ErrorKind::Permanent,
            says: "rejected the request (HTTP 400)",
        },
        Case {
            status: 403,
            code: "ErrorAccessDenied",
            message: "Access is denied. Check credentials and try again.",
            headers: &[],
            kind: ErrorKind::Auth,
            says: "Mail.Send application permission",
        },
        Case {
            status: 403,
            code: "ErrorSendAsDenied",
            message: "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.",
            headers: &[],
            kind: ErrorKind::Auth,
            says: "ErrorSendAsDenied",
        },
        Case {
            status: 404,
            code: "ErrorInvalidUser",
            message: "The requested user 'mailer@contoso.com' is invalid.",
            headers: &[],
            kind: ErrorKind::Config,
            says: "MAIL_DEFAULT_SEND_FROM",
        },
        Case {
            status: 401,
            code: "MailboxNotEnabledForRESTAPI",
            message: "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            headers: &[],
            kind: ErrorKind::Config,
            says: "cannot send through Graph",
        },
        Case {
            status: 413,
            code: "RequestEntityTooLarge",
            message: "The request is too large.",
            headers: &[],
            kind: ErrorKind::Permanent,
            says: "too large",
        },
        Case {
            status: 422,
            code: "UnprocessableEntity",
            message: "The request could not be processed.",
            headers: &[],
            kind: ErrorKind::Permanent,
            says: "rejected the request (HTTP 422)",
        },
        Case {
            status: 429,
            code: "ApplicationThrottled",
            message: "Application is over its MailboxConcurrency limit.",
            headers: &[("retry-after", "2")],
            kind: ErrorKind::Transient,
            says: "retry after 2 s",
        },
        Case {
            status: 500,
            code: "InternalServerError",
            message: "An internal server error occurred.",
            headers: &[],
            kind: ErrorKind::Transient,
            says: "can be retried",
        },
        Case {
            status: 503,
            code: "ServiceUnavailable",
            message: "Service unavailable.",
            headers: &[("retry-after", "2")],
            kind: ErrorKind::Transient,
            says: "after 2 s",
        },
    ];
    for case in cases {
        let (server, _) = server().await;
        let mut template = ResponseTemplate::new(case.status).set_body_json(json!({"error": {
            "code": case.code, "message": case.message,
            "innerError": {"date": "2026-11-21T10:00:00", "request-id": "r", "client-request-id": "c"}}}));
        for (name, value) in case.headers {
            template = template.insert_header(*name, *value);
        }
        Mock::given(method("POST"))
            .and(path(SEND_PATH))
            .respond_with(template)
            .mount(&server)
            .await;
        let err = configured(&server).send(&json_message()).await.unwrap_err();
        let label = format!("{} {}", case.status, case.code);
        assert_eq!(err.kind(), case.kind, "{label}: {err}");
        assert_eq!(err.exit_code(), case.kind.exit_code(), "{label}");
        assert_eq!(
            err.code(),
            Some(&outbound::ServerCode::Http {
                status: case.status,
                provider_code: Some(case.code.to_string())
            }),
            "{label}"
        );
        assert_eq!(err.server_text(), Some(case.message), "{label}");
        assert!(
            err.to_string().contains(case.says),
            "{label}: `{err}` should say `{}`",
            case.says
        );
        if case.status == 429 || case.status == 503 {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(2)), "{label}");
        }
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("CANARY"), "{label}: secret leaked: {shown}");
    }
}

#[tokio::test]
async fn timeout_after_sending_is_ambiguous() {
    let (server, _) = server().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(202).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let graph = GraphTransport::builder(MAILBOX.parse().unwrap(), tokens(&server))
        .base_url(server.uri())
        .http_options(HttpOptions::default().with_timeout(Duration::from_millis(600)))
        .build()
        .unwrap();
    let err = graph.send(&json_message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
}

#[tokio::test]
async fn verify_gets_a_token_and_looks_the_mailbox_up() {
    let (server, token_requests) = server().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/mailer@contoso.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd",
            "mail": MAILBOX, "userPrincipalName": MAILBOX})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/mailer@contoso.com"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "code": "Authorization_RequestDenied",
            "message": "Insufficient privileges to complete the operation."}})))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/mailer@contoso.com"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {
            "code": "Request_ResourceNotFound",
            "message": "Resource 'mailer@contoso.com' does not exist or one of its queried reference-property objects are not present."}})))
        .with_priority(3)
        .mount(&server)
        .await;
    let graph = configured(&server);
    graph.verify().await.unwrap();
    graph
        .verify()
        .await
        .expect("403: the token works, the app just may not read users");
    let err = graph.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("MAIL_DEFAULT_SEND_FROM"), "{err}");
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "the token is cached"
    );
    for r in sends(&server).await {
        assert_eq!(r.method.as_str(), "GET");
        assert_eq!(r.url.query(), Some("$select=id,mail,userPrincipalName"));
        assert!(r.body.is_empty());
    }
}

#[tokio::test]
async fn token_errors_surface_with_their_kind() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            "error_codes": [7000215]})))
        .mount(&server)
        .await;
    let graph = transport(&server);
    let err = graph.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let err = graph.send(&json_message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(!format!("{err} {err:?}").contains(SECRET));
    assert!(
        sends(&server).await.is_empty(),
        "no sendMail without a token"
    );
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn configuration_from_dify_variables_and_dsn() {
    let (server, _) = server().await;
    accept_send(&server).await;
    let uri = server.uri();
    let vars = env(&[
        ("MAIL_TYPE", "graph"),
        ("MAIL_DEFAULT_SEND_FROM", MAILBOX),
        ("MICROSOFT_OAUTH2_CLIENT_ID", CLIENT_ID),
        ("MICROSOFT_OAUTH2_CLIENT_SECRET", SECRET),
        ("MICROSOFT_OAUTH2_TENANT_ID", TENANT),
        ("MICROSOFT_OAUTH2_AUTHORITY", &uri),
        ("MICROSOFT_GRAPH_API_URL", &uri),
        ("MICROSOFT_GRAPH_SAVE_TO_SENT_ITEMS", "true"),
    ]);
    let settings = Settings::from_env_source(&vars).unwrap().unwrap();
    let t = settings.build().unwrap();
    assert_eq!(t.kind(), "graph");
    assert_eq!(t.describe(), format!("graph ({uri}, as {MAILBOX})"));
    let msg = Message::builder()
        .to("bob@example.com")
        .subject("s")
        .text("t")
        .build()
        .unwrap();
    t.send(&msg).await.unwrap();
    let body: Value = serde_json::from_slice(&sends(&server).await[0].body).unwrap();
    assert_eq!(body["saveToSentItems"], true);
    assert!(!format!("{t:?} {settings:?}").contains(SECRET));

    // The SMTP_* spellings from the seeds work too.
    let vars = env(&[
        ("MAIL_TYPE", "graph"),
        ("MAIL_DEFAULT_SEND_FROM", MAILBOX),
        ("SMTP_CLIENT_ID", CLIENT_ID),
        ("SMTP_CLIENT_SECRET", SECRET),
        ("SMTP_TENANT_ID", TENANT),
        ("MICROSOFT_OAUTH2_AUTHORITY", &uri),
        ("MICROSOFT_GRAPH_API_URL", &uri),
    ]);
    Settings::from_env_source(&vars)
        .unwrap()
        .unwrap()
        .build()
        .unwrap()
        .send(&msg)
        .await
        .unwrap();

    // Conflicting spellings: a config error naming both.
    let vars = env(&[
        ("MAIL_TYPE", "graph"),
        ("MAIL_DEFAULT_SEND_FROM", MAILBOX),
        ("SMTP_CLIENT_ID", "aaa"),
        ("MICROSOFT_OAUTH2_CLIENT_ID", "bbb"),
    ]);
    let err = Settings::from_env_source(&vars).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = err.to_string();
    assert!(
        text.contains("SMTP_CLIENT_ID") && text.contains("MICROSOFT_OAUTH2_CLIENT_ID"),
        "{text}"
    );

    // The mailbox is required.
    let vars = env(&[
        ("MAIL_TYPE", "graph"),
        ("MICROSOFT_OAUTH2_CLIENT_ID", CLIENT_ID),
        ("MICROSOFT_OAUTH2_CLIENT_SECRET", SECRET),
        ("MICROSOFT_OAUTH2_TENANT_ID", TENANT),
    ]);
    let err = Settings::from_env_source(&vars)
        .unwrap()
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("MAIL_DEFAULT_SEND_FROM"), "{err}");
    let vars = env(&[("MAIL_TYPE", "graph"), ("MAIL_DEFAULT_SEND_FROM", MAILBOX)]);
    let err = Settings::from_env_source(&vars)
        .unwrap()
        .unwrap()
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("MICROSOFT_OAUTH2_CLIENT_ID"),
        "{err}"
    );

    // DSN: graph://CLIENT_ID:SECRET@TENANT?from=...
    let secret_enc = SECRET.replace('-', "%2D");
    let t = outbound::from_dsn(&format!(
        "graph://{CLIENT_ID}:{secret_enc}@{TENANT}?from={MAILBOX}&authority={uri}&api_url={uri}"
    ))
    .unwrap();
    t.send(&msg).await.unwrap();
    assert_eq!(sends(&server).await.len(), 3);
    let t = outbound::create_transport(
        "graph",
        [
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("tenant_id", TENANT),
            ("default_from", MAILBOX),
        ],
    )
    .unwrap();
    assert_eq!(
        t.describe(),
        format!("graph (https://graph.microsoft.com, as {MAILBOX})")
    );
    assert!(!format!("{t:?}").contains(SECRET));
}
