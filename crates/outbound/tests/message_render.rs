//! Rendered messages parsed back with an independent parser (`mailparse`), so the tests check
//! what any mail client would see, not what our own code believes it wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mailparse::{parse_mail, MailHeaderMap, ParsedMail};
use outbound::{Attachment, Mailbox, Message};

fn render(msg: &Message) -> Vec<u8> {
    msg.render(None).unwrap()
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| b == b'\n')
}

/// Every line ends in CRLF, no line is longer than 998 octets, no bare CR anywhere.
fn assert_wire_safe(bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(bytes.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    for (n, line) in lines(bytes).enumerate() {
        let len = line.strip_suffix(b"\r").unwrap_or(line).len();
        assert!(len <= 998, "line {n} is {len} octets");
    }
}

fn content_type(part: &ParsedMail<'_>) -> String {
    part.ctype.mimetype.to_ascii_lowercase()
}

#[test]
fn non_ascii_subject_and_display_names_round_trip() {
    let msg = Message::builder()
        .from("Jörg Müller <joerg@example.com>")
        .to("Ζωή Παπαδοπούλου <zoe@example.com>")
        .cc("\"Doe, 太郎\" <taro@example.com>")
        .reply_to("Support – Équipe <support@example.com>")
        .subject("Grüße aus Köln — 東京からこんにちは, a subject long enough to need folding 🚀")
        .text("Hallo")
        .build()
        .unwrap();
    let bytes = render(&msg);
    assert_wire_safe(&bytes);
    // Headers must be 7-bit: RFC 2047 encoded words, not raw UTF-8.
    let header_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(bytes[..header_end].is_ascii(), "headers are not 7-bit");

    let parsed = parse_mail(&bytes).unwrap();
    let h = &parsed.headers;
    assert_eq!(
        h.get_first_value("Subject").unwrap(),
        "Grüße aus Köln — 東京からこんにちは, a subject long enough to need folding 🚀"
    );
    let from = mailparse::addrparse_header(h.get_first_header("From").unwrap()).unwrap();
    let from = from.extract_single_info().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("Jörg Müller"));
    assert_eq!(from.addr, "joerg@example.com");
    let to = mailparse::addrparse_header(h.get_first_header("To").unwrap()).unwrap();
    let to = to.extract_single_info().unwrap();
    assert_eq!(to.display_name.as_deref(), Some("Ζωή Παπαδοπούλου"));
    let cc = mailparse::addrparse_header(h.get_first_header("Cc").unwrap()).unwrap();
    assert_eq!(
        cc.extract_single_info().unwrap().display_name.as_deref(),
        Some("Doe, 太郎")
    );
    let reply = mailparse::addrparse_header(h.get_first_header("Reply-To").unwrap()).unwrap();
    assert_eq!(
        reply.extract_single_info().unwrap().display_name.as_deref(),
        Some("Support – Équipe")
    );
}

#[test]
fn message_id_and_date_are_present_and_stable() {
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("x")
        .build()
        .unwrap();
    let first = parse_mail(&render(&msg))
        .unwrap()
        .headers
        .get_first_value("Message-ID");
    let second = parse_mail(&render(&msg))
        .unwrap()
        .headers
        .get_first_value("Message-ID");
    let id = first.clone().unwrap();
    assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
    assert_eq!(first, second, "a retry must carry the same Message-ID");
    assert_eq!(Some(id), msg.message_id(None).ok());

    let bytes = render(&msg);
    let parsed = parse_mail(&bytes).unwrap();
    let date = parsed.headers.get_first_value("Date").unwrap();
    let ts = mailparse::dateparse(&date).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 60, "Date {date} is not now");
    assert_eq!(
        parsed.headers.get_first_value("MIME-Version").as_deref(),
        Some("1.0")
    );
}

#[test]
fn html_only_gets_a_derived_text_alternative() {
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .subject("Reset")
        .html("<h1>Reset your password</h1><p>Click <a href=\"https://example.com/reset?t=abc\">here</a>.</p>")
        .build()
        .unwrap();
    let bytes = render(&msg);
    assert_wire_safe(&bytes);
    let parsed = parse_mail(&bytes).unwrap();
    assert_eq!(content_type(&parsed), "multipart/alternative");
    assert_eq!(parsed.subparts.len(), 2);
    assert_eq!(content_type(&parsed.subparts[0]), "text/plain");
    assert_eq!(content_type(&parsed.subparts[1]), "text/html");
    let text = parsed.subparts[0].get_body().unwrap();
    assert!(text.contains("Reset your password"), "{text}");
    assert!(text.contains("https://example.com/reset?t=abc"), "{text}");
    assert!(!text.contains("<h1>"));
    let html = parsed.subparts[1].get_body().unwrap();
    assert!(html.contains("<h1>Reset your password</h1>"));
}

#[test]
fn text_html_inline_image_and_attachment_structure() {
    let png = vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3, 255];
    let pdf = b"%PDF-1.4 fake".to_vec();
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .subject("Invoice")
        .text("See the invoice.")
        .html("<p>See the invoice.</p><img src=\"cid:logo@example.com\">")
        .attach(Attachment::from_bytes("logo.png", png.clone()).inline("logo@example.com"))
        .attach(Attachment::from_bytes("invoice.pdf", pdf.clone()))
        .build()
        .unwrap();
    let bytes = render(&msg);
    assert_wire_safe(&bytes);
    let root = parse_mail(&bytes).unwrap();

    // mixed[ alternative[ text, related[ html, image ] ], pdf ]
    assert_eq!(content_type(&root), "multipart/mixed");
    assert_eq!(root.subparts.len(), 2);
    let alternative = &root.subparts[0];
    assert_eq!(content_type(alternative), "multipart/alternative");
    assert_eq!(content_type(&alternative.subparts[0]), "text/plain");
    assert_eq!(
        alternative.subparts[0].get_body().unwrap().trim_end(),
        "See the invoice."
    );
    let related = &alternative.subparts[1];
    assert_eq!(content_type(related), "multipart/related");
    assert_eq!(content_type(&related.subparts[0]), "text/html");
    let image = &related.subparts[1];
    assert_eq!(content_type(image), "image/png");
    assert_eq!(
        image.headers.get_first_value("Content-ID").as_deref(),
        Some("<logo@example.com>")
    );
    assert_eq!(
        image.get_content_disposition().disposition,
        mailparse::DispositionType::Inline
    );
    assert_eq!(image.get_body_raw().unwrap(), png);

    let attachment = &root.subparts[1];
    assert_eq!(content_type(attachment), "application/pdf");
    let disposition = attachment.get_content_disposition();
    assert_eq!(
        disposition.disposition,
        mailparse::DispositionType::Attachment
    );
    assert_eq!(
        disposition.params.get("filename").map(String::as_str),
        Some("invoice.pdf")
    );
    assert_eq!(attachment.get_body_raw().unwrap(), pdf);
}

#[test]
fn a_5000_character_line_is_encoded_and_round_trips() {
    let long = "abcdefghij".repeat(500);
    assert_eq!(long.len(), 5000);
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text(format!("start\n{long}\nend"))
        .html(format!("<p>{long}</p>"))
        .build()
        .unwrap();
    let bytes = render(&msg);
    assert_wire_safe(&bytes);
    let parsed = parse_mail(&bytes).unwrap();
    let text = parsed.subparts[0].get_body().unwrap();
    assert_eq!(text, format!("start\r\n{long}\r\nend"));
    let html = parsed.subparts[1].get_body().unwrap();
    assert_eq!(html, format!("<p>{long}</p>"));
}

#[test]
fn bare_lf_and_bare_cr_never_reach_the_output() {
    // Short ASCII lines: the body goes out 7-bit, unencoded, so normalisation is what matters.
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("one\ntwo\rthree\r\nfour\n.\nfive")
        .build()
        .unwrap();
    let bytes = render(&msg);
    assert_wire_safe(&bytes);
    let body = parse_mail(&bytes).unwrap().get_body().unwrap();
    assert_eq!(body, "one\r\ntwo\r\nthree\r\nfour\r\n.\r\nfive");

    // Same in an HTML body and with non-ASCII (encoded) content.
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .html("<p>é\ra</p>\n<p>b</p>\r")
        .text("ü\rü\nü")
        .build()
        .unwrap();
    let bytes = render(&msg);
    assert_wire_safe(&bytes);
    let parsed = parse_mail(&bytes).unwrap();
    assert_eq!(parsed.subparts[0].get_body().unwrap(), "ü\r\nü\r\nü");
    assert_eq!(
        parsed.subparts[1].get_body().unwrap(),
        "<p>é\r\na</p>\r\n<p>b</p>\r\n"
    );
}

#[test]
fn unicode_attachment_file_names_round_trip() {
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("files")
        .attach(Attachment::from_bytes(
            "Résumé – Zoë 履歴書.pdf",
            b"pdf".to_vec(),
        ))
        .attach(Attachment::from_bytes("отчёт 2026.csv", b"a,b\n".to_vec()))
        .build()
        .unwrap();
    let bytes = render(&msg);
    assert_wire_safe(&bytes);
    let header_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(bytes[..header_end].is_ascii());
    let parsed = parse_mail(&bytes).unwrap();
    let names: Vec<String> = parsed.subparts[1..]
        .iter()
        .map(|p| p.get_content_disposition().params["filename"].clone())
        .collect();
    assert_eq!(names, ["Résumé – Zoë 履歴書.pdf", "отчёт 2026.csv"]);
    assert_eq!(content_type(&parsed.subparts[2]), "text/csv");
}

#[test]
fn bcc_is_in_the_envelope_but_never_in_the_headers() {
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .bcc("secret-bcc@example.com")
        .text("x")
        .build()
        .unwrap();
    let bytes = render(&msg);
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("secret-bcc"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("\r\nbcc:"));
    let env = msg.envelope(None).unwrap();
    assert_eq!(env.to, ["b@example.com", "secret-bcc@example.com"]);
}

#[test]
fn extra_headers_and_default_sender() {
    let default: Mailbox = "Dify <noreply@dify.example>".parse().unwrap();
    let msg = Message::builder()
        .to("b@example.com")
        .header("X-Campaign", "welcome-2026")
        .header("List-Unsubscribe", "<https://example.com/u?id=1>")
        .header("X-Note", "naïve café")
        .text("x")
        .build()
        .unwrap();
    assert!(msg.render(None).is_err(), "no sender without a default");
    let bytes = msg.render(Some(&default)).unwrap();
    assert_wire_safe(&bytes);
    let parsed = parse_mail(&bytes).unwrap();
    let h = &parsed.headers;
    assert_eq!(
        h.get_first_value("X-Campaign").as_deref(),
        Some("welcome-2026")
    );
    assert_eq!(
        h.get_first_value("List-Unsubscribe").as_deref(),
        Some("<https://example.com/u?id=1>")
    );
    assert_eq!(h.get_first_value("X-Note").as_deref(), Some("naïve café"));
    let from = mailparse::addrparse_header(h.get_first_header("From").unwrap()).unwrap();
    assert_eq!(
        from.extract_single_info().unwrap().addr,
        "noreply@dify.example"
    );
    assert!(msg
        .message_id(Some(&default))
        .unwrap()
        .ends_with("@dify.example>"));
}

#[test]
fn idn_domains_become_punycode() {
    let msg = Message::builder()
        .from("shop@bücher.example")
        .to("Kunde <kunde@münchen.example>")
        .text("x")
        .build()
        .unwrap();
    let env = msg.envelope(None).unwrap();
    assert_eq!(env.from, "shop@xn--bcher-kva.example");
    assert_eq!(env.to, ["kunde@xn--mnchen-3ya.example"]);
    assert!(!env.smtputf8);
    let bytes = render(&msg);
    let header_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(bytes[..header_end].is_ascii());
    let parsed = parse_mail(&bytes).unwrap();
    let to = mailparse::addrparse_header(parsed.headers.get_first_header("To").unwrap()).unwrap();
    assert_eq!(
        to.extract_single_info().unwrap().addr,
        "kunde@xn--mnchen-3ya.example"
    );

    let utf8 = Message::builder()
        .from("a@example.com")
        .to("jörg@example.com")
        .text("x")
        .build()
        .unwrap();
    assert!(
        utf8.envelope(None).unwrap().smtputf8,
        "non-ASCII local part needs SMTPUTF8"
    );
}

#[test]
fn raw_message_keeps_its_bytes_and_gains_id_and_date() {
    let raw = "From: Ann <ann@example.com>\nTo: bob@example.com\nBcc: hidden@example.com\nSubject: raw\n\nline\n";
    let msg = Message::builder()
        .raw(raw.as_bytes().to_vec())
        .recipients_from_headers(true)
        .build()
        .unwrap();
    assert_eq!(msg.from().unwrap().email(), "ann@example.com");
    let env = msg.envelope(None).unwrap();
    assert_eq!(env.to, ["bob@example.com", "hidden@example.com"]);
    let bytes = render(&msg);
    assert_wire_safe(&bytes);
    let parsed = parse_mail(&bytes).unwrap();
    assert!(parsed.headers.get_first_value("Message-ID").is_some());
    assert!(parsed.headers.get_first_value("Date").is_some());
    assert!(parsed.headers.get_first_value("Bcc").is_none());
    assert_eq!(parsed.get_body().unwrap(), "line\r\n");
}

#[test]
fn rendering_is_repeatable_so_a_retry_sends_the_same_bytes() {
    let msg = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("t")
        .html("<p>h <img src=\"cid:c1\"></p>")
        .attach(Attachment::from_bytes("i.png", vec![1u8, 2, 3]).inline("c1"))
        .attach(Attachment::from_bytes("a.pdf", b"pdf".to_vec()))
        .build()
        .unwrap();
    let first = render(&msg);
    assert_eq!(first, render(&msg));
    // Boundaries differ per message and per level.
    let other = Message::builder()
        .from("a@example.com")
        .to("b@example.com")
        .text("t")
        .html("<p>h</p>")
        .build()
        .unwrap();
    let boundary = |bytes: &[u8]| parse_mail(bytes).unwrap().ctype.params["boundary"].clone();
    assert_ne!(boundary(&first), boundary(&render(&other)));
    let root = parse_mail(&first).unwrap();
    assert_ne!(
        root.ctype.params["boundary"],
        root.subparts[0].ctype.params["boundary"]
    );
}
