#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Gaps found by using Outbound from outside, as a user would: each test failed before its
//! fix. Broken DSN escapes, bytes RFC 5322 forbids in raw messages, and the charset of text
//! attachments.

use outbound::config::Settings;
use outbound::{Attachment, ErrorKind, Message, MessageError};

#[test]
fn a_broken_percent_escape_in_a_dsn_is_a_config_error_naming_the_part() {
    for (dsn, part) in [
        ("smtp://user:pa%zz@smtp.example.com", "MAILER_DSN password"),
        ("smtp://us%2@smtp.example.com", "MAILER_DSN user"),
        ("resend://re_%g1@default", "MAILER_DSN user"),
        (
            "smtp://smtp.example.com?auth=oauth2&client_secret=abc%",
            "MAILER_DSN query `client_secret`",
        ),
        (
            "graph://id:sec%zzret@tenant?from=a@example.com",
            "MAILER_DSN password",
        ),
    ] {
        let err = Settings::from_dsn(dsn).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{dsn}: {err}");
        let text = err.to_string();
        assert!(text.contains(part), "{dsn}: {text} should name {part}");
        assert!(
            text.contains("%25"),
            "{dsn}: {text} should say how to write a %"
        );
        assert!(
            !text.contains("zzret") && !text.contains("pa%zz"),
            "never the value: {text}"
        );
    }
    // Well-formed escapes still decode.
    let s = Settings::from_dsn("smtp://user:pa%25%40ss@smtp.example.com").unwrap();
    assert_eq!(s.get("password").unwrap().value.expose(), "pa%@ss");
}

#[test]
fn nul_and_control_bytes_in_a_raw_message_are_refused_naming_the_line() {
    let with_nul = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: x\0y\r\n\r\nbody\r\n";
    let err = Message::builder()
        .raw(with_nul.to_vec())
        .build()
        .unwrap_err();
    assert!(matches!(err, MessageError::InvalidRaw { .. }), "{err}");
    assert!(err.to_string().contains("line 3"), "{err}");
    assert!(err.to_string().contains("NUL"), "{err}");
    let in_body = b"From: a@example.com\r\nTo: b@example.com\r\n\r\nbody\0\r\n";
    let err = Message::builder()
        .raw(in_body.to_vec())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("line 4"), "{err}");
    let escape_in_header =
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: \x1b[31mred\r\n\r\nx\r\n";
    let err = Message::builder()
        .raw(escape_in_header.to_vec())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("0x1b"), "{err}");
    let converted: outbound::Error = err.into();
    assert_eq!(converted.kind(), ErrorKind::InvalidMessage);
    // Tabs in headers and 8-bit text in the body are fine.
    let ok = "From: a@example.com\r\nTo: b@example.com\r\nSubject:\tok\r\n\r\nGrüße\r\n";
    Message::builder()
        .raw(ok.as_bytes().to_vec())
        .recipients_from_headers(true)
        .build()
        .unwrap();
}

fn attachment_header(msg: &Message, filename: &str) -> String {
    let bytes = msg.render(None).unwrap();
    let parsed = mailparse::parse_mail(&bytes).unwrap();
    let part = parsed
        .parts()
        .find(|p| {
            p.get_content_disposition()
                .params
                .get("filename")
                .is_some_and(|f| f == filename)
        })
        .expect("the attachment's part");
    use mailparse::MailHeaderMap;
    part.get_headers().get_first_value("Content-Type").unwrap()
}

#[test]
fn text_attachments_declare_their_charset() {
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("see attached")
        .attach(Attachment::from_bytes(
            "notes.txt",
            "Grüße, naïve café".as_bytes().to_vec(),
        ))
        .attach(Attachment::from_bytes("legacy.txt", vec![b'G', 0xfc, b'e']))
        .attach(Attachment::from_bytes("data.csv", b"a,b\n1,2\n".to_vec()))
        .build()
        .unwrap();
    let notes = attachment_header(&msg, "notes.txt");
    assert!(notes.starts_with("text/plain"), "{notes}");
    assert!(
        notes.to_ascii_lowercase().contains("charset=\"utf-8\"")
            || notes.to_ascii_lowercase().contains("charset=utf-8"),
        "{notes}"
    );
    // Not UTF-8 and no charset known: not labelled as text in a guessed charset.
    let legacy = attachment_header(&msg, "legacy.txt");
    assert!(legacy.starts_with("application/octet-stream"), "{legacy}");
    let csv = attachment_header(&msg, "data.csv");
    assert!(csv.starts_with("text/csv"), "{csv}");
    assert!(csv.to_ascii_lowercase().contains("utf-8"), "{csv}");
    // The attachment's own type is unchanged (the HTTP providers send it as given).
    assert_eq!(msg.attachments()[0].content_type(), "text/plain");
}

/// CR, LF and NUL (and other control characters) in every header-bearing field are refused,
/// each naming the field.
#[test]
fn control_characters_in_every_header_bearing_field_are_refused() {
    let base = || {
        Message::builder()
            .from("a@example.com")
            .to("b@example.com")
            .text("x")
    };
    type Edit = fn(outbound::MessageBuilder, &str) -> outbound::MessageBuilder;
    let fields: [(&str, Edit); 9] = [
        ("subject", |b, v| b.subject(format!("Hi{v}there"))),
        ("X-Tag", |b, v| b.header("X-Tag", format!("a{v}b"))),
        ("to", |b, v| b.to(format!("Eve{v} <eve@example.com>"))),
        ("from", |b, v| b.from(format!("x{v}y@example.com"))),
        ("cc", |b, v| b.cc(format!("c{v}@example.com"))),
        ("reply_to", |b, v| {
            b.reply_to(format!("R{v} <r@example.com>"))
        }),
        ("tags", |b, v| b.tag(format!("t{v}"))),
        ("metadata", |b, v| b.metadata("k", format!("v{v}"))),
        ("message_id", |b, v| {
            b.message_id(format!("id{v}@example.com"))
        }),
    ];
    for bad in ["\r", "\n", "\0", "\x1b", "\x7f"] {
        for (field, edit) in fields {
            let err = edit(base(), bad).build().unwrap_err();
            assert!(
                matches!(
                    err,
                    MessageError::HeaderInjection { .. }
                        | MessageError::ControlCharacter { .. }
                        | MessageError::InvalidAddress { .. }
                ),
                "{field} with {bad:?}: {err}"
            );
            assert_eq!(err.field(), Some(field), "{field} with {bad:?}: {err}");
        }
    }
    let err = base()
        .attach(Attachment::from_bytes("a\0b.txt", b"x".to_vec()))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("control character"), "{err}");
    // A tab is fine in a header value.
    base().subject("a\tb").build().unwrap();
}
