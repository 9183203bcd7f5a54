#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SendGrid against a local HTTP server (wiremock) that records every request.
//!
//! Request shape checked against SendGrid's published API reference:
//! - Mail Send, `POST /v3/mail/send`, 202 Accepted:
//!   <https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>
//!   (and its OpenAPI, github.com/twilio/sendgrid-oai `spec/yaml/tsg_mail_v3.yaml`):
//!   personalizations[{to, cc, bcc}] (at most 1000 recipients in total), from {email, name},
//!   reply_to / reply_to_list, subject, content [{type, value}] with text/plain first,
//!   attachments [{content (Base64), type, filename, disposition, content_id}], headers,
//!   categories (at most 10, each at most 255 characters, unique), custom_args; base URLs
//!   `https://api.sendgrid.com` and `https://api.eu.sendgrid.com`.
//! - Errors `{"errors":[{"message","field","help"}]}` per status (400, 401, 403, 404, 405, 413,
//!   500) in the same OpenAPI document.
//! - Scopes, `GET /v3/scopes` -> `{"scopes":[...]}`:
//!   <https://www.twilio.com/docs/sendgrid/api-reference/api-key-permissions/retrieve-a-list-of-scopes-for-which-this-user-has-access>
//! - Rate limits (`X-RateLimit-Reset`, a Unix time):
//!   <https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits>

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbound::config::Settings;
use outbound::layer::DefaultSender;
use outbound::sendgrid::{HttpOptions, SendGridTransport, MAX_SENDGRID_RECIPIENTS};
use outbound::{Attachment, ErrorKind, Message, Transport, TransportExt};
use outbound_cli::Sysexits;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "SG.CANARY_sendgrid.key_0a1b2c";

/// The transport, with a default sender for messages without `from` (the layer
/// configuration adds for MAIL_DEFAULT_SEND_FROM).
fn transport(server: &MockServer) -> DefaultSender<SendGridTransport> {
    SendGridTransport::builder(KEY)
        .base_url(server.uri())
        .build()
        .unwrap()
        .with_default_sender("Fallback <fallback@example.com>".parse().unwrap())
}

/// The same transport configured the way an operator does it, from Dify's variables, so
/// errors name them.
fn configured(server: &MockServer) -> std::sync::Arc<dyn Transport> {
    outbound_testkit::configured(&[
        ("MAIL_TYPE", "sendgrid"),
        ("MAIL_DEFAULT_SEND_FROM", "Fallback <fallback@example.com>"),
        ("SENDGRID_API_KEY", KEY),
        ("SENDGRID_API_URL", &server.uri()),
    ])
}

/// A message that uses every field SendGrid accepts.
fn full_message() -> Message {
    Message::builder()
        .from("Ada Lovelace <ada@example.com>")
        .to("Bob <bob@example.com>")
        .to("carol@example.com")
        .cc("Dave <dave@example.com>")
        .bcc("eve@example.com")
        .reply_to("Support <support@example.com>")
        .subject("Invoice für März")
        .html("<p>Your invoice is attached.</p><img src=\"cid:logo\">")
        .text("Your invoice is attached.")
        .attach(Attachment::from_bytes(
            "invoice.pdf",
            b"%PDF-1.4 fake".to_vec(),
        ))
        .attach(Attachment::from_bytes("logo.png", vec![0x89, b'P', b'N', b'G']).inline("logo"))
        .header("X-Campaign", "spring")
        .header("List-Unsubscribe", "<mailto:unsubscribe@example.com>")
        .tag("invoice")
        .tag("billing")
        .metadata("customer_id", "cus-42")
        .metadata("plan", "pro")
        .message_id("invoice-42@example.com")
        .build()
        .unwrap()
}

fn body_of(req: &Request) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn ok_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202).insert_header("x-message-id", "sg-msg-0001"))
        .mount(&server)
        .await;
    server
}

/// Every field, compared with the Mail Send reference
/// (<https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send>).
#[tokio::test]
async fn request_shape_matches_the_mail_send_reference() {
    let server = ok_server().await;
    let receipt = transport(&server).send(&full_message()).await.unwrap();
    assert_eq!(receipt.transport, "sendgrid");
    assert_eq!(receipt.message_id, "<invoice-42@example.com>");
    assert_eq!(receipt.provider_id.as_deref(), Some("sg-msg-0001"));
    assert_eq!(receipt.accepted.len(), 4);

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), "/v3/mail/send");
    assert_eq!(
        header(req, "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(header(req, "content-type"), Some("application/json"));
    assert_eq!(
        header(req, "user-agent"),
        Some(format!("outbound/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(
        header(req, "idempotency-key"),
        None,
        "SendGrid has no idempotency keys"
    );

    let body = body_of(req);
    let expected = json!({
        "personalizations": [{
            "to": [
                {"email": "bob@example.com", "name": "Bob"},
                {"email": "carol@example.com"}
            ],
            "cc": [{"email": "dave@example.com", "name": "Dave"}],
            "bcc": [{"email": "eve@example.com"}]
        }],
        "from": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "reply_to": {"email": "support@example.com", "name": "Support"},
        "subject": "Invoice für März",
        "content": [
            {"type": "text/plain", "value": "Your invoice is attached."},
            {"type": "text/html", "value": "<p>Your invoice is attached.</p><img src=\"cid:logo\">"}
        ],
        "attachments": [
            {
                "content": "JVBERi0xLjQgZmFrZQ==",
                "type": "application/pdf",
                "filename": "invoice.pdf",
                "disposition": "attachment"
            },
            {
                "content": "iVBORw==",
                "type": "image/png",
                "filename": "logo.png",
                "disposition": "inline",
                "content_id": "logo"
            }
        ],
        "headers": {
            "List-Unsubscribe": "<mailto:unsubscribe@example.com>",
            "X-Campaign": "spring"
        },
        "categories": ["invoice", "billing"],
        "custom_args": {"customer_id": "cus-42", "plan": "pro"}
    });
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&body[field], value, "field `{field}`");
    }
    assert_eq!(body, expected, "no field beyond the reference's");
}

#[tokio::test]
async fn reply_to_list_duplicates_and_derived_text() {
    let server = ok_server().await;
    let msg = Message::builder()
        .from("a@example.com")
        .to("bob@example.com")
        .cc("BOB@example.com")
        .bcc("carol@example.com")
        .reply_to("r1@example.com")
        .reply_to("R Two <r2@example.com>")
        .subject("Hi")
        .html("<h1>Hello</h1>")
        .build()
        .unwrap();
    transport(&server).send(&msg).await.unwrap();
    let body = body_of(&server.received_requests().await.unwrap()[0]);
    assert!(body.get("reply_to").is_none());
    assert_eq!(
        body["reply_to_list"],
        json!([{"email": "r1@example.com"}, {"email": "r2@example.com", "name": "R Two"}])
    );
    let p = &body["personalizations"][0];
    assert_eq!(p["to"], json!([{"email": "bob@example.com"}]));
    assert!(
        p.get("cc").is_none(),
        "an address is sent once per personalization"
    );
    assert_eq!(p["bcc"], json!([{"email": "carol@example.com"}]));
    assert_eq!(body["content"][0]["type"], "text/plain");
    assert!(body["content"][0]["value"]
        .as_str()
        .unwrap()
        .contains("Hello"));
    assert_eq!(body["content"][1]["type"], "text/html");
    for absent in ["attachments", "headers", "categories", "custom_args"] {
        assert!(body.get(absent).is_none(), "`{absent}` should be omitted");
    }
}

/// SendGrid refuses a reply_to_list with an address twice ("Each email address in the
/// reply_to_list should be unique"; the OpenAPI says `uniqueItems`): like to/cc/bcc, each
/// address goes once, compared case-insensitively, the first spelling and name kept; when
/// only one is left it goes as `reply_to`.
#[tokio::test]
async fn reply_to_duplicates_are_sent_once() {
    let server = ok_server().await;
    let sg = transport(&server);
    let msg = Message::builder()
        .from("a@example.com")
        .to("bob@example.com")
        .reply_to("r1@example.com")
        .reply_to("R Two <r2@example.com>")
        .reply_to("Again <R1@Example.COM>")
        .reply_to("r2@example.com")
        .subject("Hi")
        .text("hi")
        .build()
        .unwrap();
    sg.send(&msg).await.unwrap();
    let msg = Message::builder()
        .from("a@example.com")
        .to("bob@example.com")
        .reply_to("Support <support@example.com>")
        .reply_to("SUPPORT@example.com")
        .subject("Hi")
        .text("hi")
        .build()
        .unwrap();
    sg.send(&msg).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let body = body_of(&requests[0]);
    assert!(body.get("reply_to").is_none());
    assert_eq!(
        body["reply_to_list"],
        json!([{"email": "r1@example.com"}, {"email": "r2@example.com", "name": "R Two"}])
    );
    let body = body_of(&requests[1]);
    assert!(body.get("reply_to_list").is_none());
    assert_eq!(
        body["reply_to"],
        json!({"email": "support@example.com", "name": "Support"})
    );
}

/// SendGrid's API takes ASCII addresses only: an internationalized domain goes in punycode,
/// but a non-ASCII local part has no ASCII form, so such a message is refused before
/// sending, naming the address, whichever field holds it.
#[tokio::test]
async fn a_non_ascii_local_part_is_refused_before_sending_in_every_field() {
    let server = ok_server().await;
    let sg = transport(&server);
    let base = || {
        Message::builder()
            .from("app@example.com")
            .to("ada@example.com")
            .subject("Hi")
            .text("hi")
    };
    let cases: [(&str, Message); 5] = [
        (
            "from",
            base().from("José <josé@example.com>").build().unwrap(),
        ),
        ("to", base().to("josé@example.com").build().unwrap()),
        ("cc", base().cc("josé@example.com").build().unwrap()),
        ("bcc", base().bcc("josé@example.com").build().unwrap()),
        (
            "reply_to",
            base().reply_to("josé@example.com").build().unwrap(),
        ),
    ];
    for (field, msg) in cases {
        let err = sg.send(&msg).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{field}: {err}");
        assert_eq!(err.exit_code(), 65, "{field}");
        let text = err.to_string();
        assert!(text.contains("josé@example.com"), "{field}: {text}");
        assert!(text.contains("ASCII addresses only"), "{field}: {text}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    // A non-ASCII domain has an ASCII form: sent in punycode, display names as given.
    sg.send(&base().to("Zoë <ada@bücher.example>").build().unwrap())
        .await
        .unwrap();
    let body = body_of(&server.received_requests().await.unwrap()[0]);
    assert_eq!(
        body["personalizations"][0]["to"][1],
        json!({"email": "ada@xn--bcher-kva.example", "name": "Zoë"})
    );
}

#[tokio::test]
async fn over_the_recipient_limit_is_refused_before_sending() {
    let server = ok_server().await;
    let sg = transport(&server);
    let mut b = Message::builder().subject("Hi").text("hi");
    b = b.to("first@example.com");
    for i in 0..(MAX_SENDGRID_RECIPIENTS - 1) {
        b = b.bcc(format!("r{i}@example.com"));
    }
    // Exactly 1000: allowed.
    sg.send(&b.build().unwrap()).await.unwrap();

    let mut b = Message::builder()
        .subject("Hi")
        .text("hi")
        .to("first@example.com");
    for i in 0..MAX_SENDGRID_RECIPIENTS {
        b = b.cc(format!("r{i}@example.com"));
    }
    let err = sg.send(&b.build().unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert_eq!(err.exit_code(), 65);
    let text = err.to_string();
    assert!(
        text.contains("at most 1000 recipients") && text.contains("1001"),
        "{text}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn other_limits_are_refused_before_sending() {
    let server = ok_server().await;
    let sg = transport(&server);
    let base = || {
        Message::builder()
            .to("a@example.com")
            .subject("s")
            .text("t")
    };

    let mut b = base();
    for i in 0..11 {
        b = b.tag(format!("c{i}"));
    }
    let err = sg.send(&b.build().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("at most 10 categories"), "{err}");

    let err = sg
        .send(&base().tag("x".repeat(256)).build().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("255"), "{err}");

    let err = sg
        .send(&base().header("X-SG-ID", "1").build().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("X-SG-ID"), "{err}");

    let err = sg
        .send(
            &Message::builder()
                .to("a@example.com")
                .text("t")
                .build()
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("subject"), "{err}");

    let err = sg
        .send(
            &Message::builder()
                .bcc("a@example.com")
                .subject("s")
                .text("t")
                .build()
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`to`"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

struct Case {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
    kind: ErrorKind,
    code: Option<&'static str>,
    text: &'static str,
    says: &'static str,
}

/// Statuses and bodies as the Mail Send reference documents them.
#[tokio::test]
async fn error_mapping() {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    let cases = vec![
        Case {
            status: 400,
            body: json!({"errors": [{"message": "The from email does not contain a valid address.",
                "field": "from.email",
                "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.from"}]}),
            headers: vec![],
            kind: ErrorKind::InvalidMessage,
            code: Some("from.email"),
            text: "The from email does not contain a valid address. (field from.email) (help: http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.from)",
            says: "rejected the message as invalid",
        },
        Case {
            status: 400,
            body: json!({"errors": [{"message": "invalid request", "field": "null"}]}),
            headers: vec![],
            kind: ErrorKind::Permanent,
            code: None,
            text: "invalid request",
            says: "rejected the request (HTTP 400)",
        },
        Case {
            status: 401,
            body: json!({"errors": [{"field": null,
                "message": "The provided authorization grant is invalid, expired, or revoked"}]}),
            headers: vec![],
            kind: ErrorKind::Auth,
            code: None,
            text: "The provided authorization grant is invalid, expired, or revoked",
            says: "SENDGRID_API_KEY",
        },
        Case {
            status: 401,
            body: json!({"errors": [{"field": null, "message": "Maximum credits exceeded"}]}),
            headers: vec![],
            kind: ErrorKind::Permanent,
            code: None,
            text: "Maximum credits exceeded",
            says: "credits or quota are used up",
        },
        Case {
            status: 403,
            body: json!({"errors": [{"message": "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.",
                "field": "from", "help": null}]}),
            headers: vec![],
            kind: ErrorKind::Auth,
            code: Some("from"),
            text: "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved. (field from)",
            says: "permission to send",
        },
        Case {
            status: 404,
            body: json!({"errors": [{"message": "not found", "field": "null"}]}),
            headers: vec![],
            kind: ErrorKind::Config,
            code: None,
            text: "not found",
            says: "SENDGRID_API_URL",
        },
        Case {
            status: 413,
            body: json!({"errors": [{"message": "content too large", "field": "null"}]}),
            headers: vec![],
            kind: ErrorKind::Permanent,
            code: None,
            text: "content too large",
            says: "too large",
        },
        Case {
            status: 422,
            body: json!({"errors": [{"message": "Each category name may not exceed 255 characters", "field": "categories"}]}),
            headers: vec![],
            kind: ErrorKind::InvalidMessage,
            code: Some("categories"),
            text: "Each category name may not exceed 255 characters (field categories)",
            says: "invalid",
        },
        Case {
            status: 429,
            body: json!({"errors": [{"field": null, "message": "too many requests"}]}),
            headers: vec![
                ("x-ratelimit-limit", "600".into()),
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset.to_string()),
            ],
            kind: ErrorKind::Transient,
            code: None,
            text: "too many requests",
            says: "rate limit reached",
        },
        Case {
            status: 500,
            body: json!({"errors": [{"message": "internal server error"}]}),
            headers: vec![],
            kind: ErrorKind::Transient,
            code: None,
            text: "internal server error",
            says: "can be retried",
        },
    ];
    for case in cases {
        let server = MockServer::start().await;
        let mut template = ResponseTemplate::new(case.status).set_body_json(&case.body);
        for (name, value) in &case.headers {
            template = template.insert_header(*name, value.as_str());
        }
        Mock::given(method("POST"))
            .and(path("/v3/mail/send"))
            .respond_with(template)
            .mount(&server)
            .await;
        let err = configured(&server).send(&full_message()).await.unwrap_err();
        let label = format!("{} {}", case.status, case.text);
        assert_eq!(err.kind(), case.kind, "{label}: {err}");
        assert_eq!(err.exit_code(), case.kind.exit_code(), "{label}");
        assert_eq!(
            err.code(),
            Some(&outbound::ServerCode::Http {
                status: case.status,
                provider_code: case.code.map(str::to_string)
            }),
            "{label}"
        );
        assert_eq!(err.server_text(), Some(case.text), "{label}");
        assert!(
            err.to_string().contains(case.says),
            "{label}: `{err}` should say `{}`",
            case.says
        );
        if case.status == 429 {
            let wait = err.retry_after().expect("429 carries the reset");
            assert!(
                wait > Duration::from_secs(1) && wait <= Duration::from_secs(4),
                "{wait:?}"
            );
        }
        assert!(
            !format!("{err} {err:?}").contains(KEY),
            "{label}: key leaked"
        );
    }
}

/// Without an idempotency key, a timeout after the request went out is Ambiguous: SendGrid
/// may have accepted the message, and a retry could send it twice.
#[tokio::test]
async fn timeout_after_sending_is_ambiguous() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let sg = SendGridTransport::builder(KEY)
        .base_url(server.uri())
        .http_options(HttpOptions::default().with_timeout(Duration::from_millis(600)))
        .build()
        .unwrap();
    let err = sg.send(&full_message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
    assert!(!err.is_retryable());
    assert_eq!(err.exit_code(), 75);
    assert!(err.to_string().contains("delivery status unknown"), "{err}");
}

#[tokio::test]
async fn verify_requires_the_mail_send_scope() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/scopes"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"scopes": ["alerts.read", "mail.send", "user.profile.read"]}),
            ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/scopes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"scopes": ["stats.read"]})))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/scopes"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"errors": [
            {"field": null, "message": "The provided authorization grant is invalid, expired, or revoked"}]})))
        .with_priority(3)
        .mount(&server)
        .await;
    let sg = transport(&server);
    sg.verify().await.unwrap();
    let err = sg.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(
        err.to_string().contains("lacks the `mail.send` scope")
            && err.to_string().contains("stats.read"),
        "{err}"
    );
    let err = sg.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    for r in server.received_requests().await.unwrap() {
        assert_eq!(r.method.as_str(), "GET");
        assert_eq!(r.url.path(), "/v3/scopes");
        assert!(r.body.is_empty());
        assert_eq!(
            header(&r, "authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
}

#[tokio::test]
async fn configuration_from_env_dsn_and_map() {
    let server = ok_server().await;
    let env: HashMap<String, String> = [
        ("MAIL_TYPE", "sendgrid"),
        ("SENDGRID_API_KEY", KEY),
        ("SENDGRID_API_URL", &server.uri()),
        ("MAIL_DEFAULT_SEND_FROM", "app@example.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let t = Settings::from_env_source(&env)
        .unwrap()
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(t.kind(), "sendgrid");
    let msg = Message::builder()
        .to("bob@example.com")
        .subject("s")
        .text("hi")
        .build()
        .unwrap();
    t.send(&msg).await.unwrap();
    assert_eq!(
        body_of(&server.received_requests().await.unwrap()[0])["from"],
        json!({"email": "app@example.com"})
    );

    let t = outbound::from_dsn(&format!("sendgrid://{KEY}@default")).unwrap();
    assert_eq!(t.describe(), "sendgrid (https://api.sendgrid.com)");
    let t = outbound::from_dsn(&format!("sendgrid://{KEY}@api.eu.sendgrid.com")).unwrap();
    assert_eq!(t.describe(), "sendgrid (https://api.eu.sendgrid.com)");
    let t = outbound::create_transport(
        "sendgrid",
        [
            ("api_key", KEY),
            ("api_url", SendGridTransport::EU_URL),
            ("default_from", "app@example.com"),
        ],
    )
    .unwrap();
    assert_eq!(t.describe(), "sendgrid (https://api.eu.sendgrid.com)");
    assert!(!format!("{t:?}").contains(KEY));

    let err = outbound::from_dsn("sendgrid://default").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("MAILER_DSN user part"), "{err}");
}
