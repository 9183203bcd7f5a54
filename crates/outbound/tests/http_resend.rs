#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Resend against a local HTTP server (wiremock) that records every request.
//!
//! Request shape checked against Resend's published API reference:
//! - Send Email, `POST /emails`: <https://resend.com/docs/api-reference/emails/send-email>
//!   (body fields from, to (max 50), subject, cc, bcc, reply_to, html, text, headers,
//!   attachments {content (Base64), filename, path, content_type, content_id}, tags {name, value};
//!   also Resend's OpenAPI, github.com/resend/resend-openapi `resend.yaml`, `SendEmailRequest`)
//! - Idempotency keys, header `Idempotency-Key`, up to 256 characters, 24 hours:
//!   <https://resend.com/docs/dashboard/emails/idempotency-keys>
//! - Errors (`{"statusCode","name","message"}`, names per status):
//!   <https://resend.com/docs/api-reference/errors>
//! - Rate limit headers (`retry-after`, `ratelimit-reset`) and quotas:
//!   <https://resend.com/docs/api-reference/rate-limit>

use std::collections::HashMap;
use std::time::Duration;

use outbound::config::Settings;
use outbound::layer::DefaultSender;
use outbound::resend::{HttpOptions, ResendTransport, MAX_RESEND_TO};
use outbound::{Attachment, ErrorKind, Message, Transport, TransportExt};
use outbound_cli::Sysexits;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "re_CANARY_resend_key_9f8e7d";

/// The transport, with a default sender for messages without `from` (the layer
/// configuration adds for MAIL_DEFAULT_SEND_FROM).
fn transport(server: &MockServer) -> DefaultSender<ResendTransport> {
    ResendTransport::builder(KEY)
        .base_url(server.uri())
        .build()
        .unwrap()
        .with_default_sender("Fallback <fallback@example.com>".parse().unwrap())
}

/// The same transport configured the way an operator does it, from Dify's variables, so
/// errors name them.
fn configured(server: &MockServer) -> std::sync::Arc<dyn Transport> {
    outbound_testkit::configured(&[
        ("MAIL_TYPE", "resend"),
        ("MAIL_DEFAULT_SEND_FROM", "Fallback <fallback@example.com>"),
        ("RESEND_API_KEY", KEY),
        ("RESEND_API_URL", &server.uri()),
    ])
}

/// A message that uses every field Resend accepts.
fn full_message() -> Message {
    Message::builder()
        .from("Ada Lovelace <ada@example.com>")
        .to("Bob <bob@example.com>")
        .to("carol@example.com")
        .cc("Dave <dave@example.com>")
        .bcc("eve@example.com")
        .reply_to("Support <support@example.com>")
        .subject("Invoice für März")
        .text("Your invoice is attached.")
        .html("<p>Your invoice is attached.</p><img src=\"cid:logo\">")
        .attach(Attachment::from_bytes(
            "invoice.pdf",
            b"%PDF-1.4 fake".to_vec(),
        ))
        .attach(Attachment::from_bytes("logo.png", vec![0x89, b'P', b'N', b'G']).inline("logo"))
        .header("X-Campaign", "spring")
        .header("List-Unsubscribe", "<mailto:unsubscribe@example.com>")
        .tag("invoice")
        .metadata("customer_id", "cus-42")
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
        .and(path("/emails"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})),
        )
        .mount(&server)
        .await;
    server
}

/// Every field, compared with the Send Email reference
/// (<https://resend.com/docs/api-reference/emails/send-email>): method, path, headers, body.
#[tokio::test]
async fn request_shape_matches_the_send_email_reference() {
    let server = ok_server().await;
    let resend = transport(&server);
    let msg = full_message();
    let receipt = resend.send(&msg).await.unwrap();

    assert_eq!(receipt.transport, "resend");
    assert_eq!(receipt.message_id, "<invoice-42@example.com>");
    assert_eq!(
        receipt.provider_id.as_deref(),
        Some("49a3999c-0ce1-4ea6-ab68-afcd6dc2e794")
    );
    assert_eq!(
        receipt.accepted,
        [
            "bob@example.com",
            "carol@example.com",
            "dave@example.com",
            "eve@example.com"
        ]
    );

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), "/emails");
    assert_eq!(
        header(req, "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(header(req, "content-type"), Some("application/json"));
    assert_eq!(
        header(req, "user-agent"),
        Some(format!("outbound/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let key = header(req, "idempotency-key").unwrap();
    assert!(key.starts_with("outbound-") && key.len() <= 256, "{key}");
    assert_eq!(
        header(req, "content-length"),
        Some(req.body.len().to_string().as_str())
    );

    let body = body_of(req);
    let expected = json!({
        "from": "Ada Lovelace <ada@example.com>",
        "to": ["Bob <bob@example.com>", "carol@example.com"],
        "subject": "Invoice für März",
        "cc": ["Dave <dave@example.com>"],
        "bcc": ["eve@example.com"],
        "reply_to": ["Support <support@example.com>"],
        "html": "<p>Your invoice is attached.</p><img src=\"cid:logo\">",
        "text": "Your invoice is attached.",
        "headers": {
            "List-Unsubscribe": "<mailto:unsubscribe@example.com>",
            "X-Campaign": "spring"
        },
        "attachments": [
            {
                "filename": "invoice.pdf",
                "content": "JVBERi0xLjQgZmFrZQ==",
                "content_type": "application/pdf"
            },
            {
                "filename": "logo.png",
                "content": "iVBORw==",
                "content_type": "image/png",
                "content_id": "logo"
            }
        ],
        "tags": [
            {"name": "invoice", "value": "true"},
            {"name": "customer_id", "value": "cus-42"}
        ]
    });
    // Field by field first, so a failure names the field.
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&body[field], value, "field `{field}`");
    }
    assert_eq!(body, expected, "no field beyond the reference's");
}

#[tokio::test]
async fn html_only_gets_a_derived_text_and_minimal_fields() {
    let server = ok_server().await;
    let resend = transport(&server);
    let msg = Message::builder()
        .to("bob@example.com")
        .subject("")
        .html("<h1>Hello</h1><p>World</p>")
        .build()
        .unwrap();
    resend.send(&msg).await.unwrap();
    let body = body_of(&server.received_requests().await.unwrap()[0]);
    assert_eq!(body["from"], "Fallback <fallback@example.com>");
    assert_eq!(body["to"], json!(["bob@example.com"]));
    assert_eq!(
        body["subject"], "",
        "subject is required by Resend, even empty"
    );
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("Hello") && text.contains("World"), "{text}");
    for absent in ["cc", "bcc", "reply_to", "headers", "attachments", "tags"] {
        assert!(body.get(absent).is_none(), "`{absent}` should be omitted");
    }
}

#[tokio::test]
async fn idempotency_key_is_stable_per_message_and_differs_between_messages() {
    let server = ok_server().await;
    let resend = transport(&server);
    let a = full_message();
    resend.send(&a).await.unwrap();
    resend.send(&a).await.unwrap();
    let b = Message::builder()
        .to("bob@example.com")
        .text("another")
        .build()
        .unwrap();
    resend.send(&b).await.unwrap();
    let keys: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| header(r, "idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys[0], keys[1], "same Message, same key");
    assert_ne!(keys[0], keys[2], "another message, another key");
    let resend = resend.get_ref();
    assert_eq!(resend.request_body(&a).unwrap().1, keys[0]);
}

/// The first attempt times out at the server (it answers after the client's timeout); the
/// error is retryable because the request carried an Idempotency-Key; the retry carries the
/// same key.
#[tokio::test]
async fn retry_after_timeout_reuses_the_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "late"}))
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "second"})))
        .with_priority(2)
        .mount(&server)
        .await;
    let resend = ResendTransport::builder(KEY)
        .base_url(server.uri())
        .http_options(HttpOptions::default().with_timeout(Duration::from_millis(700)))
        .build()
        .unwrap();
    let msg = full_message();

    let err = resend.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        err.is_retryable(),
        "retryable thanks to the idempotency key: {err}"
    );
    assert_eq!(err.exit_code(), 75);
    assert!(err.to_string().contains("idempotency key"), "{err}");

    let receipt = resend.send(&msg).await.unwrap();
    assert_eq!(receipt.provider_id.as_deref(), Some("second"));

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let k1 = header(&requests[0], "idempotency-key").unwrap();
    let k2 = header(&requests[1], "idempotency-key").unwrap();
    assert_eq!(k1, k2, "the retry must carry the same Idempotency-Key");
    assert_eq!(
        requests[0].body, requests[1].body,
        "and the same body (Resend answers 409 for a changed body)"
    );
}

#[tokio::test]
async fn connection_refused_is_network_and_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let resend = ResendTransport::builder(KEY)
        .base_url(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let err = resend.send(&full_message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.is_retryable());
}

struct Case {
    status: u16,
    body: Value,
    headers: &'static [(&'static str, &'static str)],
    kind: ErrorKind,
    code: Option<&'static str>,
    says: &'static str,
}

/// Statuses and bodies as Resend documents them (<https://resend.com/docs/api-reference/errors>).
#[tokio::test]
async fn error_mapping() {
    let cases = [
        Case {
            status: 400,
            body: json!({"statusCode": 400, "name": "validation_error",
                "message": "Invalid `to` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format."}),
            headers: &[],
            kind: ErrorKind::InvalidMessage,
            code: Some("validation_error"),
            says: "rejected the message as invalid",
        },
        Case {
            status: 400,
            body: json!({"statusCode": 400, "name": "invalid_idempotency_key",
                "message": "The key must be between 1-256 chars."}),
            headers: &[],
            kind: ErrorKind::Permanent,
            code: Some("invalid_idempotency_key"),
            says: "rejected the request (HTTP 400)",
        },
        Case {
            status: 401,
            body: json!({"statusCode": 401, "name": "missing_api_key",
                "message": "Missing API key in the authorization header."}),
            headers: &[],
            kind: ErrorKind::Auth,
            code: Some("missing_api_key"),
            says: "RESEND_API_KEY",
        },
        Case {
            status: 403,
            body: json!({"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"}),
            headers: &[],
            kind: ErrorKind::Auth,
            code: Some("invalid_api_key"),
            says: "RESEND_API_KEY",
        },
        Case {
            status: 403,
            body: json!({"statusCode": 403, "name": "validation_error",
                "message": "You can only send testing emails to your own email address (you@example.com)."}),
            headers: &[],
            kind: ErrorKind::Auth,
            code: Some("validation_error"),
            says: "permission to send",
        },
        Case {
            status: 404,
            body: json!({"statusCode": 404, "name": "not_found",
                "message": "The requested endpoint does not exist."}),
            headers: &[],
            kind: ErrorKind::Config,
            code: Some("not_found"),
            says: "RESEND_API_URL",
        },
        Case {
            status: 409,
            body: json!({"statusCode": 409, "name": "concurrent_idempotent_requests",
                "message": "Same idempotency key used while original request is still in progress."}),
            headers: &[],
            kind: ErrorKind::Transient,
            code: Some("concurrent_idempotent_requests"),
            says: "still processing",
        },
        Case {
            status: 409,
            body: json!({"statusCode": 409, "name": "invalid_idempotent_request",
                "message": "Same idempotency key used with a different request payload."}),
            headers: &[],
            kind: ErrorKind::Permanent,
            code: Some("invalid_idempotent_request"),
            says: "different request body",
        },
        Case {
            status: 413,
            body: Value::String("Request Entity Too Large".into()),
            headers: &[],
            kind: ErrorKind::Permanent,
            code: None,
            says: "too large",
        },
        Case {
            status: 422,
            body: json!({"statusCode": 422, "name": "invalid_from_address",
                "message": "Invalid `from` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format."}),
            headers: &[],
            kind: ErrorKind::InvalidMessage,
            code: Some("invalid_from_address"),
            says: "invalid",
        },
        Case {
            status: 422,
            body: json!({"statusCode": 422, "name": "invalid_attachment",
                "message": "Attachment must have either a `content` or `path`."}),
            headers: &[],
            kind: ErrorKind::InvalidMessage,
            code: Some("invalid_attachment"),
            says: "invalid",
        },
        Case {
            status: 429,
            body: json!({"statusCode": 429, "name": "rate_limit_exceeded",
                "message": "Too many requests. You can only make 2 requests per second. See rate limit response headers for more information. Or contact support to increase rate limit."}),
            headers: &[
                ("retry-after", "2"),
                ("ratelimit-reset", "2"),
                ("ratelimit-limit", "2"),
            ],
            kind: ErrorKind::Transient,
            code: Some("rate_limit_exceeded"),
            says: "retry after 2 s",
        },
        Case {
            status: 429,
            body: json!({"statusCode": 429, "name": "daily_quota_exceeded",
                "message": "You have reached your daily email sending quota."}),
            headers: &[("retry-after", "3600")],
            kind: ErrorKind::Permanent,
            code: Some("daily_quota_exceeded"),
            says: "daily sending quota",
        },
        Case {
            status: 429,
            body: json!({"statusCode": 429, "name": "monthly_quota_exceeded",
                "message": "You have reached your monthly email sending quota."}),
            headers: &[],
            kind: ErrorKind::Permanent,
            code: Some("monthly_quota_exceeded"),
            says: "monthly sending quota",
        },
        Case {
            status: 500,
            body: json!({"statusCode": 500, "name": "application_error",
                "message": "An unexpected error occurred."}),
            headers: &[],
            kind: ErrorKind::Transient,
            code: Some("application_error"),
            says: "can be retried",
        },
    ];
    for case in cases {
        let server = MockServer::start().await;
        let mut template = match &case.body {
            Value::String(s) => ResponseTemplate::new(case.status)
                .set_body_raw(s.clone().into_bytes(), "text/plain"),
            v => ResponseTemplate::new(case.status).set_body_json(v),
        };
        for (name, value) in case.headers {
            template = template.insert_header(*name, *value);
        }
        Mock::given(method("POST"))
            .and(path("/emails"))
            .respond_with(template)
            .mount(&server)
            .await;
        let err = configured(&server).send(&full_message()).await.unwrap_err();
        let label = format!("{} {:?}", case.status, case.code);
        assert_eq!(err.kind(), case.kind, "{label}: {err}");
        assert_eq!(err.exit_code(), case.kind.exit_code(), "{label}");
        assert_eq!(err.http_status(), Some(case.status), "{label}");
        assert_eq!(
            err.code(),
            Some(&outbound::ServerCode::Http {
                status: case.status,
                provider_code: case.code.map(str::to_string)
            }),
            "{label}"
        );
        let expected_text = match &case.body {
            Value::String(s) => s.clone(),
            v => v["message"].as_str().unwrap().to_string(),
        };
        assert_eq!(err.server_text(), Some(expected_text.as_str()), "{label}");
        assert!(
            err.to_string().contains(case.says),
            "{label}: `{err}` should say `{}`",
            case.says
        );
        if case.kind.is_retryable() && case.status == 429 {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(2)), "{label}");
        }
        if !case.kind.is_retryable() {
            assert_eq!(
                err.retry_after(),
                None,
                "{label}: no wait for a final error"
            );
        }
        assert!(!err.to_string().contains(KEY), "{label}: key leaked");
    }
}

#[tokio::test]
async fn limits_and_unsendable_messages_are_refused_before_sending() {
    let server = ok_server().await;
    let resend = transport(&server);

    let mut b = Message::builder().text("hi");
    for i in 0..=MAX_RESEND_TO {
        b = b.to(format!("r{i}@example.com"));
    }
    let err = resend.send(&b.build().unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(err.to_string().contains("at most 50 `to`"), "{err}");

    let err = resend
        .send(
            &Message::builder()
                .to("a@example.com")
                .text("x")
                .tag("has space")
                .build()
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(err.to_string().contains("ASCII letters, digits"), "{err}");

    let err = resend
        .send(
            &Message::builder()
                .to("a@example.com")
                .text("x")
                .header("X-A", "1")
                .header("x-a", "2")
                .build()
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");

    let raw = Message::builder()
        .raw(b"From: a@example.com\r\nTo: b@example.com\r\nSubject: x\r\n\r\nbody\r\n".to_vec())
        .to("b@example.com")
        .build()
        .unwrap();
    let err = resend.send(&raw).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(err.to_string().contains("raw"), "{err}");

    let no_from = ResendTransport::builder(KEY)
        .base_url(server.uri())
        .build()
        .unwrap();
    let err = no_from
        .send(
            &Message::builder()
                .to("a@example.com")
                .text("x")
                .build()
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(err.to_string().contains("no sender"), "{err}");

    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "nothing may be sent"
    );
}

#[tokio::test]
async fn verify_uses_get_domains_and_accepts_a_send_only_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "statusCode": 401, "name": "restricted_api_key",
            "message": "This API key is restricted to only send emails"})))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/domains"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"})))
        .with_priority(3)
        .mount(&server)
        .await;
    let resend = transport(&server);
    resend.verify().await.unwrap();
    resend
        .verify()
        .await
        .expect("restricted_api_key counts as valid");
    let err = resend.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.exit_code(), 77);

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.method.as_str(), "GET");
        assert_eq!(r.url.path(), "/domains");
        assert!(r.body.is_empty(), "verify sends nothing");
        assert_eq!(
            header(r, "authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
}

#[tokio::test]
async fn redirect_is_a_config_error_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(
            ResponseTemplate::new(301)
                .insert_header("location", "https://elsewhere.invalid/emails"),
        )
        .mount(&server)
        .await;
    let err = transport(&server).send(&full_message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("elsewhere.invalid"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// Dify's variables, the DSN and the seeds' map keys all build the same transport.
#[tokio::test]
async fn configuration_from_env_dsn_and_map() {
    let server = ok_server().await;
    let env: HashMap<String, String> = [
        ("MAIL_TYPE", "resend"),
        ("RESEND_API_KEY", KEY),
        ("RESEND_API_URL", &server.uri()),
        ("MAIL_DEFAULT_SEND_FROM", "App <app@example.com>"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = Settings::from_env_source(&env).unwrap().unwrap();
    let t = settings.build().unwrap();
    assert_eq!(t.kind(), "resend");
    assert_eq!(t.describe(), format!("resend ({})", server.uri()));
    let msg = Message::builder()
        .to("bob@example.com")
        .text("hi")
        .build()
        .unwrap();
    t.send(&msg).await.unwrap();
    let body = body_of(&server.received_requests().await.unwrap()[0]);
    assert_eq!(body["from"], "App <app@example.com>");

    let t = outbound::from_dsn(&format!("resend://{KEY}@default")).unwrap();
    assert_eq!(t.describe(), "resend (https://api.resend.com)");
    let t = outbound::from_dsn(&format!("resend://{KEY}@proxy.example:8443/resend")).unwrap();
    assert_eq!(t.describe(), "resend (https://proxy.example:8443/resend)");
    let t = outbound::from_dsn(&format!(
        "resend://{KEY}@default?api_url={}&from=app@example.com",
        server.uri()
    ))
    .unwrap();
    t.send(&msg).await.unwrap();

    let t = outbound::create_transport(
        "resend",
        [
            ("api_key", KEY),
            ("default_from", "app@example.com"),
            ("api_url", server.uri().as_str()),
            ("timeout", "5"),
        ],
    )
    .unwrap();
    t.send(&msg).await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    // Errors name the variable and never show the key.
    let env: HashMap<String, String> = [("MAIL_TYPE", "resend")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let err = Settings::from_env_source(&env)
        .unwrap()
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("RESEND_API_KEY"), "{err}");
    let err = outbound::create_transport(
        "resend",
        [("api_key", KEY), ("api_url", "http://api.resend.com")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("setting `api_url`"), "{err}");
    assert!(err.to_string().contains("unencrypted"), "{err}");
    assert!(!err.to_string().contains(KEY));
    let err = outbound::create_transport("resend", [("api_key", "re_ab c")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!format!("{err} {err:?}").contains("re_ab c"));
    assert!(outbound::supported_types().contains(&"resend"));
}

/// The key never appears in Debug, describe, errors, or logs (a canary value).
#[tokio::test(flavor = "current_thread")]
async fn the_api_key_never_leaks() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "statusCode": 403, "name": "invalid_api_key",
            "message": format!("API key {KEY} is invalid")})))
        .mount(&server)
        .await;
    let resend = transport(&server);
    let err = resend.send(&full_message()).await.unwrap_err();
    let _ = resend.verify().await;
    let t = outbound::from_dsn(&format!("resend://{KEY}@default")).unwrap();
    let everything = format!(
        "{err} {err:?} {resend:?} {} {t:?} {} {}",
        resend.describe(),
        t.describe(),
        String::from_utf8_lossy(&buf.0.lock().unwrap())
    );
    assert!(
        everything.contains("sending through Resend"),
        "logs were captured"
    );
    assert!(
        !everything.contains(KEY),
        "the API key leaked: {everything}"
    );
    assert!(!everything.contains("CANARY"), "part of the key leaked");
}
