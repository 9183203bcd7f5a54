//! Every validation rule of the message contract: each error has the right type, converts to
//! `ErrorKind::InvalidMessage`, and its text names the offending field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use outbound::dev::MemoryTransport;
use outbound::{
    Attachment, Error, ErrorKind, Message, MessageBuilder, MessageError, Transport, TransportExt,
};

fn base() -> MessageBuilder {
    Message::builder()
        .from("sender@example.com")
        .to("rcpt@example.com")
        .subject("s")
        .text("t")
}

/// Asserts the builder fails, the error names `field` in `field()` and in its text, and the
/// library error has kind InvalidMessage.
#[track_caller]
fn assert_invalid(builder: MessageBuilder, field: &str, text_mentions: &str) -> Error {
    let err = builder.build().expect_err("build should fail");
    assert_eq!(err.field(), Some(field), "field() of {err:?}");
    let text = err.to_string();
    assert!(
        text.contains(text_mentions),
        "error text {text:?} should mention {text_mentions:?}"
    );
    let lib = Error::from(err);
    assert_eq!(lib.kind(), ErrorKind::InvalidMessage);
    assert!(lib.to_string().starts_with("invalid message: "), "{lib}");
    lib
}

#[test]
fn no_recipient() {
    let err = Message::builder()
        .from("a@example.com")
        .text("x")
        .build()
        .unwrap_err();
    assert!(matches!(err, MessageError::NoRecipient));
    assert_eq!(err.field(), Some("to"));
    assert!(err.to_string().contains("`to`"));
    assert_eq!(Error::from(err).kind(), ErrorKind::InvalidMessage);
}

#[test]
fn a_bcc_alone_is_a_recipient() {
    assert!(Message::builder()
        .bcc("x@example.com")
        .text("x")
        .build()
        .is_ok());
}

#[tokio::test]
async fn no_sender_after_default_from() {
    // Building is fine (a transport's default sender may apply)...
    let msg = Message::builder()
        .to("b@example.com")
        .text("x")
        .build()
        .unwrap();
    // ...but a transport without a default refuses it, naming the field and, for one
    // configured from the environment, the variable.
    let env = std::collections::HashMap::from([("MAIL_TYPE".to_string(), "memory".to_string())]);
    let configured = outbound::config::Settings::from_env_source(&env)
        .unwrap()
        .unwrap()
        .build()
        .unwrap();
    let err = configured.send(&msg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(err.to_string().contains("`from`"), "{err}");
    assert!(err.to_string().contains("MAIL_DEFAULT_SEND_FROM"), "{err}");
    let err = msg.envelope(None).unwrap_err();
    assert!(matches!(err, MessageError::NoSender));
    assert_eq!(err.field(), Some("from"));
    // With a default it goes.
    let t = MemoryTransport::new().with_default_sender("d@example.com".parse().unwrap());
    assert!(t.send(&msg).await.is_ok());
}

#[test]
fn no_body() {
    let err = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .subject("s")
        .build()
        .unwrap_err();
    assert!(matches!(err, MessageError::NoBody));
    assert_eq!(err.field(), Some("body"));
    assert!(err.to_string().contains("`html` or `text`"));
}

#[test]
fn malformed_addresses_name_their_field() {
    for (field, builder) in [
        ("from", base().from("not-an-address")),
        ("to", base().to("two@@example.com")),
        ("cc", base().cc("cc@")),
        ("bcc", base().bcc("@example.com")),
        ("reply_to", base().reply_to("Name <broken@example.com")),
    ] {
        let err = builder.build().unwrap_err();
        assert!(
            matches!(err, MessageError::InvalidAddress { .. }),
            "{field}: {err:?}"
        );
        assert_eq!(err.field(), Some(field));
        let text = err.to_string();
        assert!(text.contains(&format!("`{field}`")), "{text}");
        assert!(text.contains("expected `name@example.com`"), "{text}");
    }
}

#[test]
fn line_breaks_in_header_values_and_addresses_are_refused() {
    let cases = [
        (
            "subject",
            base().subject("hello\r\nBcc: victim@example.com"),
        ),
        ("subject", base().subject("hello\nX-Evil: 1")),
        ("to", base().to("a@example.com\r\nBcc: victim@example.com")),
        ("from", base().from("Evil\n <a@example.com>")),
        (
            "X-Custom",
            base().header("X-Custom", "v\r\nBcc: victim@example.com"),
        ),
        ("tags", base().tag("a\nb")),
        ("metadata", base().metadata("k", "v\rX")),
        ("message_id", base().message_id("id@example.com\r\nX: y")),
    ];
    for (field, builder) in cases {
        let err = builder.build().unwrap_err();
        assert!(
            matches!(err, MessageError::HeaderInjection { .. }),
            "{field}: {err:?}"
        );
        assert_eq!(err.field(), Some(field));
        assert!(err.to_string().contains(&format!("`{field}`")));
        assert!(err.to_string().contains("line break"));
    }
}

#[test]
fn header_names_must_be_rfc5322_tokens() {
    for bad in ["X Bad", "X:Bad", "", "Ünïcode", "X\tTab"] {
        let err = base().header(bad, "v").build().unwrap_err();
        assert!(
            matches!(err, MessageError::InvalidHeaderName { .. }),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.field(), Some(bad));
        assert!(err.to_string().contains(&format!("{bad:?}")));
        assert!(err.to_string().contains("RFC 5322"));
    }
}

#[test]
fn headers_outbound_writes_itself_are_refused() {
    for name in [
        "From",
        "subject",
        "BCC",
        "Message-ID",
        "Content-Type",
        "Date",
    ] {
        let err = base().header(name, "x").build().unwrap_err();
        assert!(
            matches!(err, MessageError::ReservedHeader { .. }),
            "{name}: {err:?}"
        );
        assert_eq!(err.field(), Some(name));
        assert!(err.to_string().contains(&format!("`{name}`")));
    }
}

#[test]
fn unreadable_attachment_names_the_path() {
    let err = base()
        .attach_path("/definitely/not/here/invoice.pdf")
        .build()
        .unwrap_err();
    assert!(matches!(err, MessageError::AttachmentUnreadable { .. }));
    assert_eq!(err.field(), Some("attachments"));
    assert!(err.to_string().contains("/definitely/not/here/invoice.pdf"));
}

#[test]
fn invalid_attachments() {
    let cases = [
        (
            Attachment::from_bytes("a\r\nb.txt", b"x".to_vec()),
            "line break",
        ),
        (Attachment::from_bytes("  ", b"x".to_vec()), "empty"),
        (
            Attachment::from_bytes("a.bin", b"x".to_vec()).with_content_type("not a type"),
            "content type",
        ),
        (
            Attachment::from_bytes("logo.png", b"x".to_vec()).inline("<logo>"),
            "Content-ID",
        ),
    ];
    for (attachment, mention) in cases {
        let err = base().attach(attachment).build().unwrap_err();
        assert!(
            matches!(err, MessageError::InvalidAttachment { .. }),
            "{err:?}"
        );
        assert_eq!(err.field(), Some("attachments"));
        assert!(err.to_string().contains(mention), "{err}");
    }
}

#[test]
fn invalid_message_id() {
    let err = base().message_id("no-at-sign").build().unwrap_err();
    assert_eq!(err.field(), Some("message_id"));
    assert!(err.to_string().contains("`message_id`"));
    let err = assert_invalid(base().message_id("<x@y>"), "message_id", "angle brackets");
    assert!(err.to_string().contains("invalid message"));
}

#[test]
fn invalid_raw_messages() {
    let long = format!(
        "From: a@example.com\r\nTo: b@example.com\r\n\r\n{}\r\n",
        "x".repeat(1200)
    );
    let cases: [(MessageBuilder, &str); 4] = [
        (
            Message::builder()
                .to("b@example.com")
                .raw(long.into_bytes()),
            "998",
        ),
        (
            Message::builder()
                .to("b@example.com")
                .raw(b"no headers here\n".to_vec()),
            "header",
        ),
        (
            Message::builder().to("b@example.com").raw(Vec::new()),
            "empty",
        ),
        (
            Message::builder()
                .to("b@example.com")
                .text("t")
                .raw(b"From: a@example.com\n\nx".to_vec()),
            "cannot be combined",
        ),
    ];
    for (builder, mention) in cases {
        let err = builder.build().unwrap_err();
        assert!(matches!(err, MessageError::InvalidRaw { .. }), "{err:?}");
        assert_eq!(err.field(), Some("raw"));
        assert!(err.to_string().contains(mention), "{err}");
    }
    // Raw without -t and without recipients: no recipient.
    let err = Message::builder()
        .raw(b"From: a@example.com\nTo: b@example.com\n\nx".to_vec())
        .build()
        .unwrap_err();
    assert!(matches!(err, MessageError::NoRecipient));
}
