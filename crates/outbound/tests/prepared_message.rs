#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One prepared message, many attempts and transports: the same Message-ID, the same bytes and
//! the same idempotency key come out of every one. This is what lets retry and failover layers
//! promise "the same message", whichever transport finally delivers it.

use outbound::dev::{FileTransport, MemoryTransport};
use outbound::resend::ResendTransport;
use outbound::{Message, Transport, TransportExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn message() -> Message {
    Message::builder()
        .to("Ada <ada@example.com>")
        .bcc("audit@example.com")
        .subject("Grüße")
        .text("Hello")
        .html("<p>Hello</p>")
        .build()
        .unwrap()
}

#[tokio::test]
async fn one_prepared_message_is_the_same_through_two_transports() {
    let memory = MemoryTransport::new();
    let dir = tempfile::tempdir().unwrap();
    let file = FileTransport::new(dir.path());
    // The layer that prepares decides the sender once; the transports below only send.
    let primary = memory
        .clone()
        .with_default_sender("app@example.com".parse().unwrap());
    let prepared = primary.prepare(&message()).unwrap();
    assert!(prepared.message_id().ends_with("@example.com>"));

    let via_memory = primary.send_prepared(&prepared).await.unwrap();
    let via_file = file.send_prepared(&prepared).await.unwrap();

    assert_eq!(via_memory.message_id, prepared.message_id());
    assert_eq!(via_file.message_id, prepared.message_id());
    let sent = memory.last().unwrap();
    let written = std::fs::read(via_file.provider_id.unwrap()).unwrap();
    assert_eq!(sent.bytes, written, "same bytes through both transports");
    assert_eq!(sent.bytes, prepared.bytes().unwrap());
    assert_eq!(sent.envelope.from, "app@example.com");
    assert_eq!(sent.envelope.to, ["ada@example.com", "audit@example.com"]);
}

#[tokio::test]
async fn a_transport_with_another_default_sender_keeps_the_prepared_one() {
    // Preparing through one default sender and sending through a layer with another: the
    // prepared form wins, so a failover cannot change the Message-ID's domain.
    let memory = MemoryTransport::new();
    let first = MemoryTransport::new().with_default_sender("app@first.example".parse().unwrap());
    let second = memory
        .clone()
        .with_default_sender("app@second.example".parse().unwrap());
    let prepared = first.prepare(&message()).unwrap();
    let receipt = second.send_prepared(&prepared).await.unwrap();
    assert!(
        receipt.message_id.ends_with("@first.example>"),
        "{receipt:?}"
    );
    assert_eq!(memory.last().unwrap().envelope.from, "app@first.example");
}

#[tokio::test]
async fn every_attempt_carries_the_same_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"id":"em_1"}"#))
        .mount(&server)
        .await;
    let resend = ResendTransport::builder("re_test_key")
        .base_url(server.uri())
        .build()
        .unwrap()
        .with_default_sender("app@example.com".parse().unwrap());
    let memory = MemoryTransport::new();
    let prepared = resend.prepare(&message()).unwrap();
    for _ in 0..3 {
        let r = resend.send_prepared(&prepared).await.unwrap();
        assert_eq!(r.message_id, prepared.message_id());
    }
    let also = memory.send_prepared(&prepared).await.unwrap();
    assert_eq!(also.message_id, prepared.message_id());

    let keys: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
}

/// Attachments are rendered as segments encoded while they are read: the chunks, joined, are
/// the message's bytes; every line stays within RFC 5322's limit; a MIME parser decodes every
/// attachment (edge sizes around the 57-byte base64 line, inline and attached, text and
/// binary) back to its exact bytes; and the chunks of a large attachment stay small.
#[test]
fn attachments_are_encoded_as_they_are_read_and_decode_to_their_bytes() {
    use outbound::Attachment;
    let sizes = [0usize, 1, 2, 56, 57, 58, 171, 300_001];
    let blob = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 31 % 251) as u8).collect() };
    let mut builder = Message::builder()
        .from("app@example.com")
        .to("ada@example.com")
        .subject("Files")
        .text("See attached.")
        .html("<p><img src=\"cid:logo\"></p>")
        .attach(Attachment::from_bytes("logo.png", blob(999)).inline("logo"))
        .attach(Attachment::from_bytes(
            "notes.txt",
            "grüße\n".repeat(50).into_bytes(),
        ));
    for n in sizes {
        builder = builder.attach(Attachment::from_bytes(format!("f{n}.bin"), blob(n)));
    }
    let prepared = builder.build().unwrap().prepare(None).unwrap();
    let rendered = prepared.rendered().unwrap();
    let chunks: Vec<Vec<u8>> = rendered.chunks().map(|c| c.into_owned()).collect();
    let joined = chunks.concat();
    assert_eq!(joined.len(), rendered.len());
    assert_eq!(joined, prepared.bytes().unwrap(), "chunks = bytes");
    assert!(
        chunks.iter().all(|c| c.len() <= 100 * 1024),
        "no chunk holds a large attachment whole: {:?}",
        chunks.iter().map(Vec::len).max()
    );
    for line in joined.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "a line of {} octets", line.len());
    }
    let lf = joined.iter().filter(|&&b| b == b'\n').count();
    let crlf = joined.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(lf, crlf, "no bare LF");
    let parsed = mailparse::parse_mail(&joined).unwrap();
    let mut found = std::collections::BTreeMap::new();
    fn walk(
        part: &mailparse::ParsedMail<'_>,
        found: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        let name = part
            .get_content_disposition()
            .params
            .get("filename")
            .cloned()
            .or_else(|| {
                use mailparse::MailHeaderMap;
                part.headers.get_first_value("Content-ID")
            });
        if let Some(name) = name {
            found.insert(name, part.get_body_raw().unwrap());
        }
        for sub in &part.subparts {
            walk(sub, found);
        }
    }
    walk(&parsed, &mut found);
    for n in sizes {
        assert_eq!(
            found[&format!("f{n}.bin")],
            blob(n),
            "f{n}.bin decodes to its bytes"
        );
    }
    assert_eq!(found["<logo>"], blob(999), "the inline part");
    assert_eq!(found["notes.txt"], "grüße\n".repeat(50).into_bytes());
}
