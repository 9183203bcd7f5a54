#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Resend against `resend-local` from npm, a second, independent implementation of the Resend
//! API (<https://github.com/y-hiraoka/resend-local>): send, then read the email back through
//! its API (`GET /emails/{id}`, <https://resend.com/docs/api-reference/emails/retrieve-email>)
//! and its dashboard API (headers, attachments) and compare.
//!
//! Needs the emulator: `testenv/resend-local/server.sh start` (127.0.0.1:8025, or
//! OUTBOUND_RESEND_LOCAL_URL). These tests fail with a clear message when it is not running;
//! they never skip.

use std::time::Duration;

use outbound::resend::ResendTransport;
use outbound::{Attachment, ErrorKind, Message, Transport};
use outbound_cli::Sysexits;
use serde_json::{json, Value};

const KEY: &str = "re_outbound_test_key";

fn emulator_url() -> String {
    std::env::var("OUTBOUND_RESEND_LOCAL_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:8025".to_string())
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The emulator's base URL; panics when it does not answer.
async fn emulator() -> String {
    let url = emulator_url();
    let probe = client()
        .get(format!("{url}/domains"))
        .bearer_auth(KEY)
        .send()
        .await;
    match probe {
        Ok(r) if r.status().as_u16() == 200 => url,
        Ok(r) => panic!(
            "resend-local at {url} answered GET /domains with HTTP {}; is something else on that \
             port? Start the emulator with `testenv/resend-local/server.sh start`",
            r.status()
        ),
        Err(e) => panic!(
            "resend-local is not running at {url} ({e}). These tests need it: start it with \
             `testenv/resend-local/server.sh start` (installs it from npm on first use), or set \
             OUTBOUND_RESEND_LOCAL_URL"
        ),
    }
}

async fn get_json(url: &str) -> Value {
    let r = client().get(url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn send_then_read_back_through_the_api() {
    let base = emulator().await;
    let resend = ResendTransport::builder(KEY)
        .base_url(&base)
        .build()
        .unwrap();
    let unique = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let pdf = b"%PDF-1.4 outbound test".to_vec();
    let msg = Message::builder()
        .from("Ada Lovelace <ada@example.com>")
        .to("Bob <bob@example.com>")
        .to("carol@example.com")
        .cc("dave@example.com")
        .bcc("eve@example.com")
        .reply_to("support@example.com")
        .subject(format!("Invoice {unique} für März"))
        .text("Your invoice is attached.")
        .html("<p>Your invoice is attached.</p>")
        .attach(Attachment::from_bytes("invoice.pdf", pdf.clone()))
        .header("X-Campaign", unique.clone())
        .tag("invoice")
        .metadata("customer_id", "cus-42")
        .build()
        .unwrap();

    let receipt = resend.send(&msg).await.unwrap();
    let id = receipt
        .provider_id
        .clone()
        .expect("the emulator returns an id");

    let email = get_json(&format!("{base}/emails/{id}")).await;
    assert_eq!(email["object"], "email");
    assert_eq!(email["id"], id.as_str());
    assert_eq!(email["from"], "Ada Lovelace <ada@example.com>");
    assert_eq!(
        email["to"],
        json!(["Bob <bob@example.com>", "carol@example.com"])
    );
    assert_eq!(email["cc"], json!(["dave@example.com"]));
    assert_eq!(email["bcc"], json!(["eve@example.com"]));
    assert_eq!(email["reply_to"], json!(["support@example.com"]));
    assert_eq!(email["subject"], format!("Invoice {unique} für März"));
    assert_eq!(email["text"], "Your invoice is attached.");
    assert_eq!(email["html"], "<p>Your invoice is attached.</p>");

    // Headers and attachments are only visible through the emulator's dashboard API.
    let listing = get_json(&format!("{base}/dashboard-api/emails?limit=50")).await;
    let stored = listing["emails"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id.as_str())
        .expect("the email is listed")
        .clone();
    assert_eq!(stored["headers"], json!({"X-Campaign": unique}));
    let attachments = stored["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["filename"], "invoice.pdf");
    assert_eq!(attachments[0]["contentType"], "application/pdf");
    let att_id = attachments[0]["id"].as_str().unwrap();
    let bytes = client()
        .get(format!("{base}/dashboard-api/attachments/{att_id}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        bytes.as_ref(),
        pdf.as_slice(),
        "the Base64 content decodes to the file"
    );
}

#[tokio::test]
async fn verify_and_errors_from_the_emulator() {
    let base = emulator().await;
    let resend = ResendTransport::builder(KEY)
        .base_url(&base)
        .build()
        .unwrap();
    resend.verify().await.unwrap();

    // The emulator checks the `re_` prefix: 401 invalid_api_key (it names the code `type`).
    let bad = ResendTransport::builder("sk_not_a_resend_key")
        .base_url(&base)
        .build()
        .unwrap();
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .subject("x")
        .text("x")
        .build()
        .unwrap();
    let err = bad.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(err.exit_code(), 77);
    assert_eq!(
        err.code(),
        Some(&outbound::ServerCode::Http {
            status: 401,
            provider_code: Some("invalid_api_key".into())
        })
    );
    assert!(!err.to_string().contains("sk_not_a_resend_key"));
    let err = bad.verify().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
}

#[tokio::test]
async fn the_cli_path_sends_through_the_emulator() {
    // The registry path (what `outbound send` uses): Dify's variables as a DSN.
    let base = emulator().await;
    let t = outbound::from_dsn(&format!(
        "resend://{KEY}@default?api_url={base}&from=App%20%3Capp@example.com%3E"
    ))
    .unwrap();
    t.verify().await.unwrap();
    let msg = Message::builder()
        .to("bob@example.com")
        .subject("via DSN")
        .html("<p>Hello <b>Bob</b></p>")
        .build()
        .unwrap();
    let receipt = t.send(&msg).await.unwrap();
    let email = get_json(&format!(
        "{base}/emails/{}",
        receipt.provider_id.as_deref().unwrap()
    ))
    .await;
    assert_eq!(email["from"], "App <app@example.com>");
    let text = email["text"].as_str().unwrap();
    assert!(
        text.contains("Hello") && text.contains("Bob"),
        "derived text: {text}"
    );
}
