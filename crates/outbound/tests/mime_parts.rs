//! Inline parts and attachments in every mix and order, through the memory transport, the file
//! transport and SMTP (a sink on loopback, over DATA and over BDAT), each result parsed back
//! with a MIME parser (`mail-parser`) and every part compared with what was attached: decoded
//! bytes, content type, disposition, file name and the Content-ID header, byte for byte.
//!
//! The matrix: 0 to 3 inline parts and 0 to 3 attachments, each text or binary, in every
//! interleaving of the two kinds in the message's attachment list, under each body shape (text,
//! HTML, both): 6,687 messages per transport. It was written for issue 19's fault: an inline
//! part added after a binary attachment made rendering fail ("an attachment's place in the
//! message was lost"), because the rendered parts were looked for in the order they were
//! attached rather than the order they were written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use outbound::dev::{FileTransport, MemoryTransport};
use outbound::smtp::{SmtpTransport, TlsMode};
use outbound::{Attachment, Message, Transport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug)]
enum Body {
    Text,
    Html,
    Both,
}

/// One part as attached, and what must come back.
#[derive(Clone, Debug)]
struct Part {
    filename: String,
    content: Vec<u8>,
    /// `type/subtype` expected on the wire.
    content_type: &'static str,
    /// The charset parameter expected (text parts say `utf-8`).
    charset: Option<&'static str>,
    cid: Option<String>,
}

#[derive(Clone, Debug)]
struct Case {
    id: usize,
    body: Body,
    /// In the order they were attached.
    parts: Vec<Part>,
}

impl Case {
    fn subject(&self) -> String {
        format!("case-{}", self.id)
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| match &p.cid {
                Some(_) => format!("inline {}", p.filename),
                None => format!("attach {}", p.filename),
            })
            .collect();
        format!(
            "case {} ({:?} body: {})",
            self.id,
            self.body,
            parts.join(", ")
        )
    }

    fn message(&self) -> Message {
        let mut b = Message::builder()
            .from("app@example.com")
            .to("ada@example.com")
            .subject(self.subject());
        let html: String = self
            .parts
            .iter()
            .filter_map(|p| p.cid.as_ref())
            .map(|cid| format!("<img src=\"cid:{cid}\">"))
            .collect();
        b = match self.body {
            Body::Text => b.text(format!("text of {}", self.subject())),
            Body::Html => b.html(format!("<p>html of {}</p>{html}", self.subject())),
            Body::Both => b
                .text(format!("text of {}", self.subject()))
                .html(format!("<p>html of {}</p>{html}", self.subject())),
        };
        for p in &self.parts {
            let a = Attachment::from_bytes(p.filename.clone(), p.content.clone());
            b = b.attach(match &p.cid {
                Some(cid) => a.inline(cid.clone()),
                None => a,
            });
        }
        b.build().unwrap()
    }
}

/// Deterministic bytes of every value (NUL, CR, LF, 0xFF included).
fn binary(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The `n`th part of a message: text or binary, inline or attached.
fn part(case: usize, n: usize, text: bool, inline: bool) -> Part {
    let cid = inline.then(|| format!("part{n}.case{case}@example.com"));
    if text {
        let (filename, content_type, content) = match (case + n) % 3 {
            0 => (
                format!("notes{n}.txt"),
                "text/plain",
                format!("héllo wörld ✓ {case}/{n}\r\n.a line starting with a dot\r\nlast\r\n")
                    .into_bytes(),
            ),
            1 => (
                format!("data{n}.csv"),
                "text/csv",
                format!("a,b\n{case},{n}\n.5,6\n").into_bytes(),
            ),
            _ => (
                format!("long{n}.txt"),
                "text/plain",
                format!("{case}/{n} {}", "0123456789".repeat(150)).into_bytes(),
            ),
        };
        return Part {
            filename,
            content,
            content_type,
            charset: Some("utf-8"),
            cid,
        };
    }
    let len = [1, 57, 58, 1000][(case + n) % 4];
    let (filename, content_type) = match (case + n) % 3 {
        0 => (format!("logo{n}.png"), "image/png"),
        1 => (format!("invoice{n}.pdf"), "application/pdf"),
        _ => (format!("résumé{n}.bin"), "application/octet-stream"),
    };
    Part {
        filename,
        content: binary(case * 8 + n, len),
        content_type,
        charset: None,
        cid,
    }
}

/// Every case: body shape × inline count (0-3) × attachment count (0-3) × text or binary for
/// each part × every interleaving of inline and attached parts in the attachment list.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for body in [Body::Text, Body::Html, Body::Both] {
        for inline in 0..=3usize {
            for attached in 0..=3usize {
                let total = inline + attached;
                for kinds in 0..(1u32 << total) {
                    // Which positions of the list hold inline parts: every `inline`-subset.
                    for order in 0..(1u32 << total) {
                        if order.count_ones() as usize != inline {
                            continue;
                        }
                        let id = cases.len();
                        let parts = (0..total)
                            .map(|n| part(id, n, kinds & (1 << n) != 0, order & (1 << n) != 0))
                            .collect();
                        cases.push(Case { id, body, parts });
                    }
                }
            }
        }
    }
    cases
}

/// Parses `bytes` and compares it with `case`; the first difference, described.
fn check(bytes: &[u8], case: &Case) -> Result<(), String> {
    let msg = MessageParser::default()
        .parse(bytes)
        .ok_or("not parseable")?;
    if msg.subject() != Some(case.subject().as_str()) {
        return Err(format!("subject {:?}", msg.subject()));
    }
    // Leaves in order, each with its parent's content type.
    let mut leaves = Vec::new();
    let mut stack = vec![(0u32, String::new())];
    while let Some((id, parent)) = stack.pop() {
        let part = msg.part(id).ok_or("a part is missing")?;
        let ct = part
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .unwrap_or_else(|| "text/plain".into());
        match part.sub_parts() {
            Some(children) => {
                for child in children.iter().rev() {
                    stack.push((*child, ct.clone()));
                }
            }
            None => leaves.push((part, parent)),
        }
    }
    // The bodies are the leaves without a Content-Disposition.
    let (bodies, parts): (Vec<_>, Vec<_>) = leaves
        .into_iter()
        .partition(|(p, _)| p.content_disposition().is_none());
    // HTML alone gets a text alternative derived from it.
    let expected_bodies = match case.body {
        Body::Text => 1,
        Body::Html | Body::Both => 2,
    };
    if bodies.len() != expected_bodies {
        return Err(format!("{} body parts", bodies.len()));
    }
    for (body, _) in &bodies {
        let text = body.text_contents().unwrap_or_default();
        if !text.contains(&case.subject()) {
            return Err(format!("a body lost its text: {text:?}"));
        }
    }
    // Inline parts sit with the body in multipart/related, attachments in multipart/mixed,
    // each kind in the order it was attached.
    let expected: Vec<&Part> = case
        .parts
        .iter()
        .filter(|p| p.cid.is_some())
        .chain(case.parts.iter().filter(|p| p.cid.is_none()))
        .collect();
    if parts.len() != expected.len() {
        return Err(format!(
            "{} parts, expected {}",
            parts.len(),
            expected.len()
        ));
    }
    for (n, ((got, parent), want)) in parts.iter().zip(&expected).enumerate() {
        let at = format!("part {n} ({})", want.filename);
        // An inline text part is shown, not saved: it arrives in MIME's canonical form, its
        // line breaks CRLF (RFC 2046 section 4.1.1); an attachment arrives byte for byte.
        let want_content = match (&want.cid, want.charset) {
            (Some(_), Some(_)) => crlf(&want.content),
            _ => want.content.clone(),
        };
        if got.contents() != want_content.as_slice() {
            return Err(format!(
                "{at}: decoded {} bytes differ from the {} expected",
                got.contents().len(),
                want_content.len()
            ));
        }
        let ct = got.content_type().ok_or(format!("{at}: no Content-Type"))?;
        let ct_seen = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
        if ct_seen != want.content_type || ct.attribute("charset") != want.charset {
            return Err(format!(
                "{at}: Content-Type {ct_seen} charset {:?}",
                ct.attribute("charset")
            ));
        }
        let disposition = got.content_disposition().map(|d| d.ctype());
        let (want_disposition, want_parent) = match want.cid {
            Some(_) => ("inline", "multipart/related"),
            None => ("attachment", "multipart/mixed"),
        };
        if disposition != Some(want_disposition) || parent != want_parent {
            return Err(format!("{at}: {disposition:?} inside {parent}"));
        }
        // Inline parts are named by their Content-ID only (as rendered before this test).
        let filename = got
            .content_disposition()
            .and_then(|d| d.attribute("filename"));
        let want_filename = want.cid.is_none().then_some(want.filename.as_str());
        if filename != want_filename {
            return Err(format!("{at}: file name {filename:?}"));
        }
        let header = &bytes[got.raw_header_offset() as usize..got.raw_body_offset() as usize];
        let cid_lines: Vec<&[u8]> = header
            .split(|&b| b == b'\n')
            .filter(|l| l.len() >= 11 && l[..11].eq_ignore_ascii_case(b"content-id:"))
            .collect();
        let want_lines: Vec<Vec<u8>> = want
            .cid
            .iter()
            .map(|cid| format!("Content-ID: <{cid}>\r").into_bytes())
            .collect();
        if cid_lines != want_lines.iter().map(Vec::as_slice).collect::<Vec<_>>() {
            return Err(format!(
                "{at}: Content-ID lines {:?}",
                cid_lines
                    .iter()
                    .map(|l| String::from_utf8_lossy(l))
                    .collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

/// `bytes` with every bare LF made CRLF.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Runs `send` on every case, up to `in_flight` at once, and checks what each yields; panics
/// listing the failures.
async fn check_all<F, Fut>(transport: &str, in_flight: usize, send: F)
where
    F: Fn(Case) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'static,
{
    let cases = cases();
    let total = cases.len();
    let mut failures = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut note = |outcome: Result<Result<(), String>, tokio::task::JoinError>| {
        if let Err(e) = outcome.unwrap() {
            failures.push(e);
        }
    };
    for case in cases {
        if tasks.len() >= in_flight {
            note(tasks.join_next().await.unwrap());
        }
        let sent = send(case.clone());
        tasks.spawn(async move {
            sent.await
                .and_then(|bytes| check(&bytes, &case))
                .map_err(|e| format!("{}: {e}", case.describe()))
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        note(outcome);
    }
    failures.sort();
    println!("{transport}: {total} messages checked part by part");
    assert!(
        failures.is_empty(),
        "{transport}: {} of {total} messages failed, e.g.:\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_matrix_has_every_mix_and_order() {
    let cases = cases();
    assert_eq!(cases.len(), 3 * 2229);
    // Inline after a binary attachment, the shape that failed: a logo after a PDF.
    assert!(cases.iter().any(|c| {
        c.parts.len() == 2
            && c.parts[0].cid.is_none()
            && c.parts[0].charset.is_none()
            && c.parts[1].cid.is_some()
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_transport_keeps_every_part() {
    check_all("memory", 8, |case| async move {
        let memory = MemoryTransport::new();
        memory
            .send(&case.message())
            .await
            .map_err(|e| e.to_string())?;
        Ok(memory.last().unwrap().bytes)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_transport_keeps_every_part() {
    let dir = tempfile::tempdir().unwrap();
    let file = FileTransport::new(dir.path());
    // Each file is flushed to disk: many at once, so the file system can share its commits.
    check_all("file", 64, |case| {
        let file = file.clone();
        async move {
            let receipt = file
                .send(&case.message())
                .await
                .map_err(|e| e.to_string())?;
            let path = receipt.provider_id.unwrap();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            Ok(bytes)
        }
    })
    .await;
}

/// Messages an SMTP sink received, by subject.
type Received = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// An SMTP server on loopback that accepts everything (PIPELINING, 8BITMIME, SMTPUTF8 and,
/// when `chunking`, CHUNKING) and keeps each message's bytes, dot-stuffing undone.
async fn sink(chunking: bool) -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let shared = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Replies go out one small write each: without this, Nagle holds each behind the
            // client's delayed ACK (40 ms a message).
            stream.set_nodelay(true).unwrap();
            let received = shared.clone();
            tokio::spawn(async move {
                let _ = sink_session(stream, chunking, &received).await;
            });
        }
    });
    (port, received)
}

async fn sink_session(
    stream: tokio::net::TcpStream,
    chunking: bool,
    received: &Received,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut line = Vec::new();
    let mut bdat = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let upper = String::from_utf8_lossy(&line)
            .trim_end()
            .to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            if chunking {
                b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
            } else {
                b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            }
        } else if ["MAIL", "RCPT", "RSET", "NOOP"]
            .iter()
            .any(|c| upper.starts_with(c))
        {
            b"250 2.0.0 ok\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = Vec::new();
            loop {
                line.clear();
                if read.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
                data.extend_from_slice(unstuffed);
            }
            keep(received, data);
            b"250 2.0.0 queued\r\n"
        } else if let Some(args) = upper.strip_prefix("BDAT ") {
            let size: usize = args.trim_end_matches(" LAST").parse().unwrap();
            let start = bdat.len();
            bdat.resize(start + size, 0);
            read.read_exact(&mut bdat[start..]).await?;
            if args.ends_with(" LAST") {
                keep(received, std::mem::take(&mut bdat));
            }
            b"250 2.0.0 ok\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 unknown command\r\n"
        };
        write.write_all(reply).await?;
    }
}

fn keep(received: &Received, data: Vec<u8>) {
    let subject = String::from_utf8_lossy(&data)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        .unwrap_or_default();
    received.lock().unwrap().insert(subject, data);
}

async fn smtp_keeps_every_part(chunking: bool) {
    let (port, received) = sink(chunking).await;
    let smtp = Arc::new(
        SmtpTransport::builder("127.0.0.1")
            .port(port)
            .tls(TlsMode::None)
            .chunking(chunking)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    );
    let name = if chunking {
        "smtp (BDAT)"
    } else {
        "smtp (DATA)"
    };
    check_all(name, 16, |case| {
        let smtp = smtp.clone();
        let received = received.clone();
        async move {
            smtp.send(&case.message())
                .await
                .map_err(|e| e.to_string())?;
            let bytes = received.lock().unwrap().remove(&case.subject());
            bytes.ok_or_else(|| "the server has no such message".to_string())
        }
    })
    .await;
    smtp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_data_keeps_every_part() {
    smtp_keeps_every_part(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_bdat_keeps_every_part() {
    smtp_keeps_every_part(true).await;
}

/// A few messages whose attachments cross the rendered message's chunk boundaries (about
/// 78 KiB of base64 a chunk), in both orders, through SMTP.
#[tokio::test]
async fn large_parts_in_both_orders() {
    let (port, received) = sink(false).await;
    let smtp = SmtpTransport::builder("127.0.0.1")
        .port(port)
        .tls(TlsMode::None)
        .build()
        .unwrap();
    let logo = |len: usize| Part {
        filename: "logo.png".into(),
        content: binary(len, len),
        content_type: "image/png",
        charset: None,
        cid: Some("logo@example.com".into()),
    };
    let pdf = |len: usize| Part {
        filename: "invoice.pdf".into(),
        content: binary(len + 1, len),
        content_type: "application/pdf",
        charset: None,
        cid: None,
    };
    let mut id = 1_000_000;
    for (a, b) in [(57 * 1024, 57 * 1024 + 1), (200_000, 1), (1, 300_001)] {
        for parts in [vec![pdf(a), logo(b)], vec![logo(a), pdf(b)]] {
            id += 1;
            let case = Case {
                id,
                body: Body::Both,
                parts,
            };
            smtp.send(&case.message()).await.unwrap();
            let bytes = received.lock().unwrap().remove(&case.subject()).unwrap();
            check(&bytes, &case).unwrap_or_else(|e| panic!("{}: {e}", case.describe()));
        }
    }
    smtp.close().await;
}
