#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the `outbound` binary: each test runs it in its own temporary working
//! directory with a clean environment (only PATH and what the test sets), so a developer's
//! MAIL_* variables never leak in.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mailparse::{MailHeaderMap, ParsedMail};
use serde_json::Value;
use tempfile::TempDir;

/// A temporary working directory and a way to run `outbound` in it.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `outbound` with a clean environment, run in the sandbox.
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_outbound"));
        cmd.current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd
    }

    /// Every `.eml` file in ./outbox.
    fn outbox(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.path().join("outbox")) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one JSON line expected: {:?}", self.stdout);
        serde_json::from_str(lines[0]).unwrap()
    }

    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().expect("exited with a code, not a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn header(mail: &ParsedMail<'_>, name: &str) -> Option<String> {
    mail.get_headers().get_first_value(name)
}

/// The decoded body of the first part with this MIME type.
fn body_of(mail: &ParsedMail<'_>, mimetype: &str) -> Option<String> {
    mail.parts()
        .find(|p| p.ctype.mimetype == mimetype)
        .map(|p| p.get_body().unwrap())
}

// ---------------------------------------------------------------------------------------------
// send, nothing configured: ./outbox

#[test]
fn send_unconfigured_writes_a_parseable_eml_into_outbox() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().args([
        "send",
        "--from",
        "App <app@example.com>",
        "--to",
        "Ada <ada@example.com>",
        "--subject",
        "Grüße from Outbound",
        "--text",
        "Hello Ada\nsecond line",
    ]));
    assert_eq!(r.code, 0, "{}", r.all());

    let files = sb.outbox();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    // stdout names the file and the stderr hint says how to configure a real transport.
    assert!(r.stdout.starts_with("sent <"), "{}", r.stdout);
    assert!(r.stdout.contains("via file://./outbox to 1 recipient(s)"));
    assert!(
        r.stdout.contains(&format!("wrote ./outbox/{name}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("no transport configured") && r.stderr.contains("MAILER_DSN"),
        "{}",
        r.stderr
    );

    let bytes = std::fs::read(&files[0]).unwrap();
    let mail = mailparse::parse_mail(&bytes).unwrap();
    let from = header(&mail, "From").unwrap();
    assert!(
        from.contains("App") && from.contains("<app@example.com>"),
        "{from}"
    );
    assert!(header(&mail, "To").unwrap().contains("ada@example.com"));
    assert_eq!(header(&mail, "Subject").unwrap(), "Grüße from Outbound");
    assert!(header(&mail, "Message-ID").is_some());
    let text = body_of(&mail, "text/plain").unwrap();
    assert!(text.contains("Hello Ada"), "{text:?}");
    assert!(text.contains("second line"), "{text:?}");
}

#[test]
fn send_json_reports_every_field() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().args([
        "send",
        "--from",
        "app@example.com",
        "--to",
        "ada@example.com",
        "--cc",
        "grace@example.com",
        "--bcc",
        "audit@example.com",
        "--subject",
        "Hi",
        "--html",
        "<p>Hello</p>",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(v["status"], "sent");
    assert_eq!(v["transport"], "file");
    let id = v["message_id"].as_str().unwrap();
    assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
    let path = v["provider_id"].as_str().unwrap();
    assert!(
        path.starts_with("./outbox/") && path.ends_with(".eml"),
        "{path}"
    );
    assert!(sb.path().join(path).is_file());
    assert_eq!(
        v["recipients"]["accepted"],
        serde_json::json!(["ada@example.com", "grace@example.com", "audit@example.com"])
    );
    assert_eq!(v["recipients"]["rejected"], serde_json::json!([]));
    assert_eq!(v["attempts"], 1);
    assert!(v["elapsed_ms"].is_u64());

    // The file is the message: same Message-ID, Bcc not written, HTML plus derived text.
    let bytes = std::fs::read(sb.path().join(path)).unwrap();
    let mail = mailparse::parse_mail(&bytes).unwrap();
    assert_eq!(header(&mail, "Message-ID").unwrap(), id);
    assert!(header(&mail, "Bcc").is_none());
    assert!(header(&mail, "Cc").unwrap().contains("grace@example.com"));
    assert!(body_of(&mail, "text/html")
        .unwrap()
        .contains("<p>Hello</p>"));
    assert!(body_of(&mail, "text/plain").unwrap().contains("Hello"));
}

#[test]
fn send_json_failure_is_one_object_with_error_and_exit_code() {
    let sb = Sandbox::new();
    let r = run(sb
        .cmd()
        .args(["send", "--to", "ada@example.com", "--text", "hi", "--json"]));
    assert_eq!(r.code, 65, "{}", r.all());
    let v = r.json();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["transport"], "file");
    assert_eq!(v["exit_code"], 65);
    assert_eq!(v["error"]["kind"], "invalid_message");
    assert_eq!(v["error"]["field"], "from");
    assert!(v["error"]["code"].is_null());
    assert!(v["error"]["server_text"].is_null());
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no sender"));
    assert!(sb.outbox().is_empty());

    // A usage error with --json is reported as JSON too.
    let r = run(sb.cmd().args(["send", "--json", "--bogus"]));
    assert_eq!(r.code, 64);
    let v = r.json();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["kind"], "usage");
    assert_eq!(v["exit_code"], 64);
}

#[test]
fn send_reads_body_files_stdin_attachments_inline_parts_and_headers() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.path().join("mail.html"),
        "<p>Logo: <img src=\"cid:logo\"></p>",
    )
    .unwrap();
    std::fs::write(sb.path().join("logo.png"), b"\x89PNG\r\n\x1a\nfake").unwrap();
    std::fs::write(sb.path().join("report.csv"), "a,b\n1,2\n").unwrap();
    let r = run(sb
        .cmd()
        .env("MAIL_DEFAULT_SEND_FROM", "Default <default@example.com>")
        .args([
            "send",
            "--to",
            "ada@example.com",
            "--reply-to",
            "support@example.com",
            "--subject",
            "Files",
            "--html-file",
            "mail.html",
            "--text-file",
            "-",
            "--inline",
            "logo=logo.png",
            "--attach",
            "report.csv",
            "--header",
            "X-Campaign: welcome",
        ])
        .write_stdin("plain text from stdin\n"));
    assert_eq!(r.code, 0, "{}", r.all());
    let files = sb.outbox();
    assert_eq!(files.len(), 1);
    let bytes = std::fs::read(&files[0]).unwrap();
    let mail = mailparse::parse_mail(&bytes).unwrap();
    // MAIL_DEFAULT_SEND_FROM applies even with nothing else configured.
    assert!(header(&mail, "From")
        .unwrap()
        .contains("default@example.com"));
    assert!(header(&mail, "Reply-To")
        .unwrap()
        .contains("support@example.com"));
    assert_eq!(header(&mail, "X-Campaign").unwrap(), "welcome");
    assert!(body_of(&mail, "text/plain")
        .unwrap()
        .contains("plain text from stdin"));
    assert!(body_of(&mail, "text/html").unwrap().contains("cid:logo"));
    let logo = mail
        .parts()
        .find(|p| p.ctype.mimetype == "image/png")
        .expect("inline image part");
    assert!(header(logo, "Content-ID").unwrap().contains("logo"));
    assert_eq!(logo.get_body_raw().unwrap(), b"\x89PNG\r\n\x1a\nfake");
    let csv = mail
        .parts()
        .find(|p| p.ctype.mimetype == "text/csv")
        .expect("attachment part");
    let disposition = csv.get_content_disposition();
    assert_eq!(
        disposition.params.get("filename").map(String::as_str),
        Some("report.csv")
    );
}

/// The most common transactional shape: a logo shown inline and a binary invoice attached
/// (issue 19: every `--inline` with a binary `--attach` failed with exit 65, "an
/// attachment's place in the message was lost").
#[test]
fn send_an_inline_logo_and_a_binary_pdf_invoice() {
    let sb = Sandbox::new();
    let logo: Vec<u8> = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"
        .iter()
        .copied()
        .chain((0..=255u8).rev())
        .collect();
    let pdf: Vec<u8> = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
        .iter()
        .copied()
        .chain((0..3000u32).map(|i| (i * 31 % 251) as u8))
        .collect();
    std::fs::write(sb.path().join("logo.png"), &logo).unwrap();
    std::fs::write(sb.path().join("invoice.pdf"), &pdf).unwrap();
    let r = run(sb.cmd().args([
        "send",
        "--from",
        "billing@example.com",
        "--to",
        "ada@example.com",
        "--subject",
        "Your invoice",
        "--html",
        "<img src=\"cid:logo\"><p>Your invoice is attached.</p>",
        "--inline",
        "logo=logo.png",
        "--attach",
        "invoice.pdf",
    ]));
    assert_eq!(r.code, 0, "{}", r.all());
    let files = sb.outbox();
    assert_eq!(files.len(), 1);
    let bytes = std::fs::read(&files[0]).unwrap();
    let mail = mailparse::parse_mail(&bytes).unwrap();
    let part = |mimetype: &str| {
        mail.parts()
            .find(|p| p.ctype.mimetype == mimetype)
            .unwrap_or_else(|| panic!("no {mimetype} part"))
    };
    let image = part("image/png");
    assert_eq!(header(image, "Content-ID").as_deref(), Some("<logo>"));
    assert_eq!(
        image.get_content_disposition().disposition,
        mailparse::DispositionType::Inline
    );
    assert_eq!(image.get_body_raw().unwrap(), logo);
    let invoice = part("application/pdf");
    let disposition = invoice.get_content_disposition();
    assert_eq!(
        disposition.disposition,
        mailparse::DispositionType::Attachment
    );
    assert_eq!(
        disposition.params.get("filename").map(String::as_str),
        Some("invoice.pdf")
    );
    assert_eq!(invoice.get_body_raw().unwrap(), pdf);
}

#[test]
fn send_raw_from_stdin_with_t_takes_recipients_from_headers() {
    let sb = Sandbox::new();
    let raw = "From: Ada <ada@example.com>\n\
               To: Grace <grace@example.com>\n\
               Bcc: hidden@example.com\n\
               Subject: raw message\n\
               \n\
               Sent as it is.\n";
    let r = run(sb
        .cmd()
        .args(["send", "--raw", "-", "-t", "--json"])
        .write_stdin(raw));
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(
        v["recipients"]["accepted"],
        serde_json::json!(["grace@example.com", "hidden@example.com"])
    );
    let path = sb.path().join(v["provider_id"].as_str().unwrap());
    let bytes = std::fs::read(path).unwrap();
    let mail = mailparse::parse_mail(&bytes).unwrap();
    assert_eq!(header(&mail, "Subject").unwrap(), "raw message");
    assert!(header(&mail, "Bcc").is_none(), "Bcc must be removed");
    assert_eq!(header(&mail, "Message-ID").unwrap(), v["message_id"]);
    assert!(mail.get_body().unwrap().contains("Sent as it is."));

    // Without -t or --to there is no recipient.
    let r = run(sb.cmd().args(["send", "--raw", "-"]).write_stdin(raw));
    assert_eq!(r.code, 65, "{}", r.all());
    // Input that is not a message.
    let r = run(sb
        .cmd()
        .args(["send", "--raw", "-", "-t"])
        .write_stdin("just some text\n"));
    assert_eq!(r.code, 65, "{}", r.all());
}

// ---------------------------------------------------------------------------------------------
// exit codes

#[test]
fn usage_errors_exit_64() {
    let sb = Sandbox::new();
    let base = [
        "send",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--text",
        "x",
    ];

    let r = run(sb.cmd().args(base).arg("--no-such-flag"));
    assert_eq!(r.code, 64, "{}", r.all());

    for bad in ["X-Campaign welcome", ": value", "X Campaign: welcome"] {
        let r = run(sb.cmd().args(base).args(["--header", bad]));
        assert_eq!(r.code, 64, "{bad}: {}", r.all());
        assert!(r.stderr.contains("outbound: "), "{}", r.stderr);
        assert!(r.stderr.contains("--header"), "{}", r.stderr);
        assert!(r.stderr.contains("Name: value"), "{}", r.stderr);
    }

    let r = run(sb.cmd().args(base).args(["--inline", "logo.png"]));
    assert_eq!(r.code, 64, "{}", r.all());
    let r = run(sb.cmd().args(base).arg("-t"));
    assert_eq!(r.code, 64, "{}", r.all());
    let r = run(sb.cmd().args(["send", "--raw", "m.eml", "--text", "x"]));
    assert_eq!(r.code, 64, "{}", r.all());
    let r = run(sb.cmd().args(["send", "--raw", "-", "--text-file", "-"]));
    assert_eq!(r.code, 64, "{}", r.all());
    let r = run(sb
        .cmd()
        .args(["send", "--text-file", "-", "--html-file", "-"]));
    assert_eq!(r.code, 64, "{}", r.all());
    let r = run(sb.cmd().args(["no-such-command"]));
    assert_eq!(r.code, 64, "{}", r.all());
    let r = run(&mut sb.cmd());
    assert_eq!(r.code, 64, "no command: {}", r.all());
    assert!(sb.outbox().is_empty());
}

#[test]
fn help_and_version_exit_0_and_show_examples() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().arg("--help"));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Exit codes"));
    let r = run(sb.cmd().args(["send", "--help"]));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Examples:"));
    assert!(r.stdout.contains("--inline CID=FILE"));
    assert!(r.stdout.contains("--raw - -t"));
    let r = run(sb.cmd().arg("--version"));
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("outbound "));
}

/// `--to` takes an RFC 5322 list, not "one address each" (issue 19), and so do --cc, --bcc
/// and --reply-to: the help says so, and a list in each is sent to every address.
#[test]
fn send_help_says_address_flags_take_lists() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().args(["send", "--help"]));
    assert_eq!(r.code, 0);
    assert!(!r.stdout.contains("one address each"), "{}", r.stdout);
    // Each flag's own help, up to the next flag.
    let help_of = |flag: &str| -> String {
        let start = r
            .stdout
            .find(&format!("      {flag} <"))
            .unwrap_or_else(|| panic!("{flag} is not in the help:\n{}", r.stdout));
        let rest = &r.stdout[start + flag.len()..];
        let end = rest.find("\n  -").unwrap_or(rest.len());
        rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let to = help_of("--to");
    assert!(to.contains("<ADDRESSES>"), "{to}");
    assert!(to.contains("RFC 5322 list"), "{to}");
    assert!(
        to.contains("Ada <ada@example.com>, bob@example.com"),
        "{to}"
    );
    for flag in ["--cc", "--bcc", "--reply-to"] {
        let help = help_of(flag);
        assert!(help.contains("<ADDRESSES>"), "{flag}: {help}");
        assert!(help.contains("list"), "{flag}: {help}");
    }
    let from = help_of("--from");
    assert!(from.contains("<ADDRESS>"), "{from}");

    let r = run(sb.cmd().args([
        "send",
        "--from",
        "a@example.com",
        "--to",
        "Ada <ada@example.test>, bob@example.test",
        "--cc",
        "carol@example.test, Dan <dan@example.test>",
        "--bcc",
        "eve@example.test,frank@example.test",
        "--reply-to",
        "help@example.test, Sales <sales@example.test>",
        "--text",
        "x",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(
        v["recipients"]["accepted"],
        serde_json::json!([
            "ada@example.test",
            "bob@example.test",
            "carol@example.test",
            "dan@example.test",
            "eve@example.test",
            "frank@example.test"
        ]),
        "{v}"
    );
    let bytes = std::fs::read(&sb.outbox()[0]).unwrap();
    let mail = mailparse::parse_mail(&bytes).unwrap();
    for (name, want) in [
        ("To", ["ada@example.test", "bob@example.test"]),
        ("Cc", ["carol@example.test", "dan@example.test"]),
        ("Reply-To", ["help@example.test", "sales@example.test"]),
    ] {
        let value = header(&mail, name).unwrap();
        for addr in want {
            assert!(value.contains(addr), "{name}: {value}");
        }
    }
    assert!(header(&mail, "Bcc").is_none());
}

#[test]
fn invalid_messages_and_input_exit_65() {
    let sb = Sandbox::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--from",
                "a@example.com",
                "--to",
                "not-an-address",
                "--text",
                "x",
            ],
            "invalid address",
        ),
        (
            &["--from", "a@example.com", "--to", "b@example.com"],
            "no body",
        ),
        (
            &[
                "--from",
                "a@example.com",
                "--to",
                "b@example.com",
                "--text",
                "x",
                "--attach",
                "missing.pdf",
            ],
            "missing.pdf",
        ),
        (
            &[
                "--from",
                "a@example.com",
                "--to",
                "b@example.com",
                "--html-file",
                "nope.html",
            ],
            "nope.html",
        ),
        (&["--to", "b@example.com", "--text", "x"], "no sender"),
        (
            &[
                "--from",
                "a@example.com",
                "--to",
                "b@example.com",
                "--text",
                "x",
                "--header",
                "Subject: sneaky",
            ],
            "--subject",
        ),
    ];
    for (args, expect) in cases {
        let r = run(sb.cmd().arg("send").args(*args));
        assert_eq!(r.code, 65, "{args:?}: {}", r.all());
        assert!(r.stderr.starts_with("outbound: "), "{}", r.stderr);
        assert!(r.stderr.contains(expect), "{args:?}: {}", r.stderr);
    }
    assert!(sb.outbox().is_empty(), "nothing may be written");
}

#[test]
fn configuration_errors_exit_78() {
    let sb = Sandbox::new();
    let send = [
        "send",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--text",
        "x",
    ];

    let r = run(sb.cmd().env("MAIL_TYPE", "bogus").args(send));
    assert_eq!(r.code, 78, "{}", r.all());
    assert!(r.stderr.contains("MAIL_TYPE"), "{}", r.stderr);
    assert!(
        r.stderr.contains("file") && r.stderr.contains("memory"),
        "lists the supported kinds: {}",
        r.stderr
    );

    let r = run(sb.cmd().env("MAILER_DSN", "not a url").args(send));
    assert_eq!(r.code, 78, "{}", r.all());
    assert!(r.stderr.contains("MAILER_DSN"), "{}", r.stderr);

    let r = run(sb.cmd().env("MAILER_DSN", "nosuchscheme://host").args(send));
    assert_eq!(r.code, 78, "{}", r.all());

    let r = run(sb
        .cmd()
        .env("MAIL_TYPE", "file")
        .env("MAIL_DEFAULT_SEND_FROM", "not an address")
        .args(send));
    assert_eq!(r.code, 78, "{}", r.all());
    assert!(r.stderr.contains("MAIL_DEFAULT_SEND_FROM"), "{}", r.stderr);

    // --dsn errors name the flag, not MAILER_DSN.
    let r = run(sb.cmd().args(send).args(["--dsn", "not a url", "--json"]));
    assert_eq!(r.code, 78, "{}", r.all());
    let v = r.json();
    assert_eq!(v["error"]["kind"], "config");
    assert!(v["error"]["message"].as_str().unwrap().contains("--dsn"));
    assert!(sb.outbox().is_empty());
}

#[test]
fn dsn_flag_overrides_the_environment() {
    let sb = Sandbox::new();
    let dir = sb.path().join("flagged");
    let dsn = format!("file://{}?from=flag@example.com", dir.display());
    let r = run(sb.cmd().env("MAIL_TYPE", "bogus").args([
        "send",
        "--dsn",
        &dsn,
        "--to",
        "b@example.com",
        "--text",
        "x",
    ]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stderr.contains("no transport configured"));
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    assert!(sb.outbox().is_empty());
}

// ---------------------------------------------------------------------------------------------
// config, types, check

/// Port 465 with STARTTLS (or no TLS), or 587 with implicit TLS, is almost always a mistake
/// (issue 19): `config` lists it as a problem and `check` warns before connecting, naming the
/// settings the way they were given.
#[test]
fn config_and_check_warn_when_the_port_usually_speaks_the_other_tls_mode() {
    let sb = Sandbox::new();
    let config = |vars: &[(&str, &str)]| {
        let mut cmd = sb.cmd();
        for (k, v) in vars {
            cmd.env(k, v);
        }
        run(cmd.arg("config"))
    };
    let r = config(&[("MAILER_DSN", "smtp://mail.example.com:465")]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stdout.contains("problems: none"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("MAILER_DSN port is 465, which usually speaks implicit TLS"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("use an smtps:// DSN"), "{}", r.stdout);
    assert!(r.stdout.contains("port 587 for STARTTLS"), "{}", r.stdout);

    let r = config(&[
        ("MAIL_TYPE", "smtp"),
        ("SMTP_SERVER", "mail.example.com"),
        ("SMTP_PORT", "587"),
        ("SMTP_USE_TLS", "true"),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("SMTP_PORT is 587, which usually speaks STARTTLS"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("set SMTP_USE_TLS to true and SMTP_OPPORTUNISTIC_TLS to true"),
        "{}",
        r.stdout
    );
    let r = config(&[
        ("MAIL_TYPE", "smtp"),
        ("SMTP_SERVER", "mail.example.com"),
        ("SMTP_PORT", "465"),
        ("SMTP_USE_TLS", "true"),
        ("SMTP_OPPORTUNISTIC_TLS", "true"),
    ]);
    assert!(
        r.stdout
            .contains("set SMTP_USE_TLS to true and SMTP_OPPORTUNISTIC_TLS to false"),
        "{}",
        r.stdout
    );
    // In JSON, among the problems; for a group, per member.
    let mut cmd = sb.cmd();
    let r = run(cmd
        .env(
            "MAILER_DSN",
            "failover(file://./outbox smtps://mail.example.com:587)",
        )
        .args(["config", "--json"]));
    let problems = r.json()["problems"].to_string();
    assert!(
        problems.contains("member 2: MAILER_DSN member 2 port is 587"),
        "{problems}"
    );
    assert!(problems.contains("use an smtp:// DSN"), "{problems}");
    // The usual pairs, and ports that say nothing, are fine.
    for dsn in [
        "smtps://mail.example.com:465",
        "smtp://mail.example.com:587",
        "smtp://mail.example.com",
        "smtp://mail.example.com:2525",
        "smtp://mail.example.com:25?tls=none",
    ] {
        let r = config(&[("MAILER_DSN", dsn)]);
        assert!(r.stdout.contains("problems: none"), "{dsn}: {}", r.stdout);
    }

    // `check` says it before connecting (127.0.0.2:465: nothing listens there).
    let mut cmd = sb.cmd();
    let r = run(cmd
        .env("MAILER_DSN", "smtp://127.0.0.2:465?timeout=3")
        .arg("check"));
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr
            .contains("warning: MAILER_DSN port is 465, which usually speaks implicit TLS"),
        "{}",
        r.stderr
    );
}

#[test]
fn config_shows_each_value_and_its_source() {
    let sb = Sandbox::new();
    let dsn = "file:///tmp/outbound-x?from=app@example.com";
    let r = run(sb.cmd().env("MAILER_DSN", dsn).arg("config"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("transport: file (from MAILER_DSN scheme)"),
        "{}",
        r.stdout
    );
    let line = |key: &str| {
        r.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key} line in {}", r.stdout))
            .to_string()
    };
    assert!(line("dir").contains("/tmp/outbound-x"));
    assert!(line("dir").contains("MAILER_DSN path"));
    assert!(line("default_from").contains("app@example.com"));
    assert!(line("default_from").contains("MAILER_DSN query `from`"));

    let r = run(sb.cmd().env("MAILER_DSN", dsn).args(["config", "--json"]));
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(v["configured"], true);
    assert_eq!(v["source"], "MAILER_DSN");
    assert_eq!(v["transport"], "file");
    assert_eq!(v["valid"], true);
    assert!(v["error"].is_null());
    let settings = v["settings"].as_array().unwrap();
    let get = |key: &str| settings.iter().find(|s| s["key"] == key).unwrap().clone();
    assert_eq!(get("dir")["value"], "/tmp/outbound-x");
    assert_eq!(get("dir")["origin"], "MAILER_DSN path");
    assert_eq!(get("dir")["origin_type"], "dsn");
    assert_eq!(get("default_from")["origin"], "MAILER_DSN query `from`");

    // From the environment: variables, defaults, unset values; notes listed as problems.
    let r = run(sb
        .cmd()
        .env("MAIL_TYPE", "file")
        .env("MAIL_FILE_DIR", "/tmp/outbound-y")
        .args(["config", "--json"]));
    let v = r.json();
    let settings = v["settings"].as_array().unwrap();
    let get = |key: &str| settings.iter().find(|s| s["key"] == key).unwrap().clone();
    assert_eq!(v["transport_origin"], "MAIL_TYPE");
    assert_eq!(get("dir")["origin"], "MAIL_FILE_DIR");
    assert_eq!(get("dir")["origin_type"], "env");
    assert!(get("default_from")["value"].is_null());
    assert_eq!(get("default_from")["origin_type"], "unset");

    let r = run(sb
        .cmd()
        .env("MAILER_DSN", dsn)
        .env("MAIL_TYPE", "memory")
        .args(["config", "--json"]));
    let problems = r.json()["problems"].to_string();
    assert!(
        problems.contains("MAIL_TYPE=memory is ignored"),
        "{problems}"
    );

    // --dsn is named as the source.
    let r = run(sb.cmd().args(["config", "--dsn", dsn]));
    assert!(r.stdout.contains("--dsn path"), "{}", r.stdout);
}

#[test]
fn config_with_nothing_configured_says_send_uses_outbox() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().arg("config"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("none configured"), "{}", r.stdout);
    assert!(r.stdout.contains("./outbox"), "{}", r.stdout);
    let v = run(sb.cmd().args(["config", "--json"])).json();
    assert_eq!(v["configured"], false);
    assert_eq!(v["source"], "none");
    assert_eq!(v["transport"], "file");
    assert!(
        !sb.path().join("outbox").exists(),
        "config must not create ./outbox"
    );
}

#[test]
fn config_invalid_exits_78_with_what_could_be_read() {
    let sb = Sandbox::new();
    let r = run(sb
        .cmd()
        .env("MAIL_TYPE", "file")
        .env("MAIL_DEFAULT_SEND_FROM", "nobody")
        .arg("config"));
    assert_eq!(r.code, 78, "{}", r.all());
    assert!(r.stdout.contains("MAIL_DEFAULT_SEND_FROM"), "{}", r.stdout);
    assert!(r.stdout.contains("status: invalid"), "{}", r.stdout);
    assert!(
        r.stderr.starts_with("outbound: configuration error"),
        "{}",
        r.stderr
    );

    let r = run(sb
        .cmd()
        .env("MAIL_TYPE", "bogus")
        .args(["config", "--json"]));
    assert_eq!(r.code, 78, "{}", r.all());
    let v = r.json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["exit_code"], 78);
    assert_eq!(v["error"]["kind"], "config");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("file") && message.contains("memory"),
        "{message}"
    );
}

#[test]
fn types_lists_file_and_memory() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().arg("types"));
    assert_eq!(r.code, 0);
    let kinds: Vec<&str> = r.stdout.lines().collect();
    assert!(
        kinds.contains(&"file") && kinds.contains(&"memory"),
        "{kinds:?}"
    );
    let v = run(sb.cmd().args(["types", "--json"])).json();
    let list: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(list, kinds);
}

#[test]
fn check_verifies_the_file_transport() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().env("MAIL_TYPE", "file").arg("check"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stdout.trim(), "OK file://./outbox");

    let r = run(sb
        .cmd()
        .env("MAILER_DSN", "file://./checked")
        .args(["check", "--json"]));
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["transport"], "file");
    assert!(sb.path().join("checked").is_dir());

    // Nothing configured: there is nothing to verify.
    let r = run(sb.cmd().arg("check"));
    assert_eq!(r.code, 78, "{}", r.all());
    assert!(r.stderr.contains("no transport configured"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// secrets

/// Runs `f` only when this build has the `smtp` kind (it is being added to the library).
fn with_smtp(sb: &Sandbox) -> bool {
    let r = run(sb.cmd().arg("types"));
    let has = r.stdout.lines().any(|k| k == "smtp");
    if !has {
        eprintln!("skipped: this build has no `smtp` transport kind yet");
    }
    has
}

#[test]
fn smtp_password_never_appears_in_any_output() {
    let sb = Sandbox::new();
    if !with_smtp(&sb) {
        return;
    }
    const CANARY: &str = "canary-Pw-7f3a9c";
    let smtp_env = |cmd: &mut Command| {
        cmd.env("MAIL_TYPE", "smtp")
            .env("SMTP_SERVER", "127.0.0.1")
            .env("SMTP_PORT", "1")
            .env("SMTP_USE_TLS", "false")
            .env("SMTP_USERNAME", "user@example.com")
            .env("SMTP_PASSWORD", CANARY)
            .env("SMTP_TIMEOUT", "5")
            .env("MAIL_DEFAULT_SEND_FROM", "app@example.com");
    };
    let send = ["send", "--to", "b@example.com", "--text", "x"];
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("config", vec!["config"]),
        ("config --json", vec!["config", "--json"]),
        ("-vv config", vec!["-vv", "config"]),
        ("-vvv check", vec!["-vvv", "check"]),
        ("check --json", vec!["check", "--json"]),
        ("-vvv send", [&["-vvv"][..], &send[..]].concat()),
        ("send --json", [&send[..], &["--json"][..]].concat()),
    ];
    for (what, args) in runs {
        let mut cmd = sb.cmd();
        smtp_env(&mut cmd);
        let r = run(cmd.args(&args));
        assert!(
            !r.all().contains(CANARY),
            "{what} leaked the password:\n{}",
            r.all()
        );
        if what == "config" {
            let line = r
                .stdout
                .lines()
                .find(|l| l.contains("SMTP_PASSWORD"))
                .unwrap_or_else(|| panic!("no password line: {}", r.stdout));
            assert!(line.contains("********"), "{line}");
        }
    }

    // The same secret in a DSN (percent-encoded user info).
    for args in [
        vec!["config"],
        vec!["config", "--json"],
        vec!["-vvv", "check"],
    ] {
        let r = run(sb
            .cmd()
            .env(
                "MAILER_DSN",
                format!("smtp://user:{CANARY}@127.0.0.1:1?tls=none"),
            )
            .env("SMTP_TIMEOUT", "5")
            .args(&args));
        assert!(
            !r.all().contains(CANARY),
            "{args:?} leaked the password:\n{}",
            r.all()
        );
        let r = run(sb.cmd().args(&args).args([
            "--dsn",
            &format!("smtp://user:{CANARY}@127.0.0.1:1?tls=none"),
        ]));
        assert!(
            !r.all().contains(CANARY),
            "{args:?} --dsn leaked the password:\n{}",
            r.all()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// layers: failover, retries, the chain in `config` and `check`

/// A loopback port nothing listens on (connection refused at once).
const DEAD_SMTP: &str = "smtp://127.0.0.1:1?tls=none";

#[test]
fn send_through_failover_with_a_dead_primary_delivers_once_and_exits_0() {
    let sb = Sandbox::new();
    let dsn = format!("failover({DEAD_SMTP} file://./outbox)");
    let r = run(sb.cmd().args([
        "send",
        "--dsn",
        &dsn,
        "--from",
        "app@example.com",
        "--to",
        "ada@example.com",
        "--subject",
        "Failover",
        "--text",
        "hi",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(v["status"], "sent");
    assert_eq!(v["transport"], "file", "the secondary delivered: {v}");
    assert_eq!(
        v["attempts"], 2,
        "one failed attempt on the primary, one on the file: {v}"
    );
    assert_eq!(sb.outbox().len(), 1, "exactly one copy");
    let eml = std::fs::read(&sb.outbox()[0]).unwrap();
    let mail = mailparse::parse_mail(&eml).unwrap();
    assert_eq!(
        header(&mail, "Message-ID").as_deref(),
        v["message_id"].as_str(),
        "the id reported is the one sent"
    );
}

#[test]
fn check_verifies_every_member_of_a_chain_and_says_which_work() {
    let sb = Sandbox::new();
    let dsn = format!("failover({DEAD_SMTP} file://./outbox)");
    let r = run(sb.cmd().args(["check", "--dsn", &dsn]));
    assert_eq!(r.code, 75, "a dead member is a failed check: {}", r.all());
    assert!(
        r.stderr.contains("member 1: FAILED smtp://127.0.0.1:1"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("member 2: OK file://./outbox"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("1 of 2 members work"), "{}", r.stderr);

    let r = run(sb.cmd().args(["check", "--dsn", &dsn, "--json"]));
    let v = r.json();
    assert_eq!(v["members"][0]["status"], "failed", "{v}");
    assert_eq!(v["members"][0]["error"]["kind"], "network", "{v}");
    assert_eq!(v["members"][1]["status"], "ok", "{v}");
}

#[test]
fn config_shows_the_chain_with_each_members_settings() {
    let sb = Sandbox::new();
    let dsn = format!("roundrobin({DEAD_SMTP} file://./outbox)?retries=3&rate=10/s");
    let r = run(sb.cmd().args(["config", "--dsn", &dsn]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("transport: roundrobin (from --dsn scheme)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("retries"), "{}", r.stdout);
    assert!(r.stdout.contains("--dsn query `rate`"), "{}", r.stdout);
    assert!(r.stdout.contains("member 1: smtp"), "{}", r.stdout);
    assert!(r.stdout.contains("--dsn member 1 host"), "{}", r.stdout);
    assert!(r.stdout.contains("member 2: file"), "{}", r.stdout);

    let r = run(sb.cmd().args(["config", "--dsn", &dsn, "--json"]));
    let v = r.json();
    assert_eq!(v["transport"], "roundrobin");
    assert_eq!(v["members"][1]["transport"], "file", "{v}");
    let retries = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "retries")
        .unwrap();
    assert_eq!(retries["value"], "3");
}

#[test]
fn retries_and_rate_flags_are_validated() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().args([
        "send",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--text",
        "x",
        "--dsn",
        "file://./outbox",
        "--rate",
        "lots",
    ]));
    assert_eq!(r.code, 78, "{}", r.all());
    assert!(r.stderr.contains("--rate"), "{}", r.stderr);
    assert!(r.stderr.contains("30/min"), "{}", r.stderr);
    let r = run(sb.cmd().args([
        "send",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--text",
        "x",
        "--retries",
        "1000",
    ]));
    assert_eq!(r.code, 64, "{}", r.all());
}

/// A Resend API on loopback, in its own runtime: `first` answers the first `times` requests
/// to `POST /emails` (all of them when there is no `then`), `then` answers the rest.
struct ResendApi {
    rt: tokio::runtime::Runtime,
    server: wiremock::MockServer,
}

impl ResendApi {
    fn start(
        first: wiremock::ResponseTemplate,
        then: Option<(u64, wiremock::ResponseTemplate)>,
    ) -> Self {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt.block_on(async {
            let server = MockServer::start().await;
            let emails = || Mock::given(method("POST")).and(path("/emails"));
            match then {
                None => emails().respond_with(first).mount(&server).await,
                Some((times, then)) => {
                    emails()
                        .respond_with(first)
                        .up_to_n_times(times)
                        .with_priority(1)
                        .mount(&server)
                        .await;
                    emails()
                        .respond_with(then)
                        .with_priority(2)
                        .mount(&server)
                        .await;
                }
            }
            server
        });
        ResendApi { rt, server }
    }

    /// `outbound send --json` of one small message through this API; `query` is added to the
    /// DSN (e.g. `&timeout=1`), `extra` to the arguments.
    fn send(&self, sb: &Sandbox, query: &str, extra: &[&str]) -> Run {
        let dsn = format!(
            "resend://re_test_key@default?api_url={}{query}",
            self.server.uri()
        );
        let mut args = vec![
            "send",
            "--dsn",
            &dsn,
            "--from",
            "app@example.com",
            "--to",
            "ada@example.com",
            "--subject",
            "Hi",
            "--text",
            "hello",
            "--json",
        ];
        args.extend_from_slice(extra);
        run(sb.cmd().args(args))
    }

    fn requests(&self) -> Vec<wiremock::Request> {
        self.rt.block_on(self.server.received_requests()).unwrap()
    }
}

#[test]
fn send_to_resend_that_answers_429_then_200_sends_once_with_one_key() {
    use wiremock::ResponseTemplate;
    let api = ResendApi::start(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "1")
            .set_body_string(
                r#"{"statusCode":429,"name":"rate_limit_exceeded","message":"Too many requests"}"#,
            ),
        Some((
            1,
            ResponseTemplate::new(200).set_body_string(r#"{"id":"em_123"}"#),
        )),
    );
    let sb = Sandbox::new();
    let started = std::time::Instant::now();
    let r = api.send(&sb, "", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(v["provider_id"], "em_123", "{v}");
    assert_eq!(v["attempts"], 2, "{v}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let requests = api.requests();
    assert_eq!(requests.len(), 2, "one refused with 429, one accepted");
    let key = |i: usize| {
        requests[i].headers["idempotency-key"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(key(0), key(1), "the retry carries the same Idempotency-Key");
    assert_eq!(requests[0].body, requests[1].body, "the same request body");
}

// ---------------------------------------------------------------------------------------------
// bounded input: only regular files, and never more than the size limit is read

#[test]
fn devices_and_directories_are_refused_before_reading() {
    let sb = Sandbox::new();
    for flag in ["--attach", "--text-file", "--html-file", "--raw"] {
        let mut args = vec!["send", "--from", "a@example.com", "--to", "b@example.com"];
        if flag != "--raw" && flag != "--text-file" {
            args.extend(["--text", "x"]);
        }
        args.extend([flag, "/dev/zero"]);
        let started = std::time::Instant::now();
        let r = run(sb.cmd().args(&args));
        assert_eq!(r.code, 65, "{flag}: {}", r.all());
        assert!(
            r.stderr.contains("not a regular file"),
            "{flag}: {}",
            r.stderr
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
    let r = run(sb.cmd().args([
        "send",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--text",
        "x",
        "--attach",
        ".",
    ]));
    assert_eq!(r.code, 65, "{}", r.all());
    assert!(sb.outbox().is_empty(), "nothing was sent");
}

#[test]
fn inputs_larger_than_the_limit_are_refused_before_reading() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("big.bin"), vec![b'x'; 3000]).unwrap();
    std::fs::write(sb.path().join("small.txt"), b"hello").unwrap();
    let send = |extra: &[&str]| {
        let mut cmd = sb.cmd();
        cmd.env("MAIL_MAX_SIZE", "2K").args([
            "send",
            "--from",
            "a@example.com",
            "--to",
            "b@example.com",
            "--text",
            "x",
        ]);
        cmd.args(extra);
        run(&mut cmd)
    };
    let r = send(&["--attach", "big.bin"]);
    assert_eq!(r.code, 65, "{}", r.all());
    assert!(
        r.stderr.contains("larger than 2048 bytes (MAIL_MAX_SIZE)"),
        "{}",
        r.stderr
    );
    // The limit is for the whole message: two files that fit alone may not fit together.
    std::fs::write(sb.path().join("half.bin"), vec![b'y'; 1500]).unwrap();
    let r = send(&["--attach", "half.bin", "--attach", "half.bin"]);
    assert_eq!(r.code, 65, "{}", r.all());
    let r = send(&["--attach", "small.txt"]);
    assert_eq!(r.code, 0, "{}", r.all());
    // Standard input is read at most to the limit.
    let mut cmd = sb.cmd();
    cmd.env("MAIL_MAX_SIZE", "1K")
        .args(["send", "--to", "b@example.com", "--raw", "-"])
        .write_stdin(format!(
            "From: a@example.com\r\nSubject: x\r\n\r\n{}\r\n",
            "z".repeat(4000)
        ));
    let r = run(&mut cmd);
    assert_eq!(r.code, 65, "{}", r.all());
    assert!(r.stderr.contains("standard input"), "{}", r.stderr);
    let r = run(sb.cmd().env("MAIL_MAX_SIZE", "lots").args([
        "send",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--text",
        "x",
    ]));
    assert_eq!(r.code, 78, "{}", r.all());
}

#[test]
fn a_broken_percent_escape_in_dsn_exits_78_naming_the_part() {
    let sb = Sandbox::new();
    let r = run(sb
        .cmd()
        .args(["check", "--dsn", "smtp://user:pa%zz@127.0.0.1:1?tls=none"]));
    assert_eq!(r.code, 78, "{}", r.all());
    assert!(r.stderr.contains("--dsn password"), "{}", r.stderr);
    assert!(!r.all().contains("pa%zz"), "{}", r.all());
}

#[test]
fn a_comma_separated_to_value_sends_to_every_mailbox_and_misleading_names_are_refused() {
    let sb = Sandbox::new();
    let r = run(sb.cmd().args([
        "send",
        "--from",
        "a@example.com",
        "--to",
        "Ada <ada@example.test>, <evil@evil.test>",
        "--text",
        "x",
        "--json",
    ]));
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(
        v["recipients"]["accepted"],
        serde_json::json!(["ada@example.test", "evil@evil.test"]),
        "{v}"
    );
    let r = run(sb.cmd().args([
        "send",
        "--from",
        "a@example.com",
        "--to",
        "\"ada@example.test\" <evil@evil.test>",
        "--text",
        "x",
    ]));
    assert_eq!(r.code, 65, "{}", r.all());
    assert!(r.stderr.contains("display name"), "{}", r.stderr);
}

#[test]
fn send_to_resend_that_answers_500_then_200_retries_once_with_the_same_key() {
    use wiremock::ResponseTemplate;
    let api = ResendApi::start(
        ResponseTemplate::new(500).set_body_string(
            r#"{"statusCode":500,"name":"internal_server_error","message":"oops"}"#,
        ),
        Some((
            1,
            ResponseTemplate::new(200).set_body_string(r#"{"id":"em_500"}"#),
        )),
    );
    let sb = Sandbox::new();
    let r = api.send(&sb, "", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["attempts"], 2);
    let requests = api.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].headers["idempotency-key"],
        requests[1].headers["idempotency-key"]
    );
}

/// A used-up quota is permanent: retrying now cannot help, so the one refusal is the outcome
/// (exit 69), with the provider's reason, and no second request goes out despite `--retries`.
#[test]
fn a_used_up_quota_is_permanent_and_not_retried() {
    let api = ResendApi::start(
        wiremock::ResponseTemplate::new(429).set_body_string(
            r#"{"statusCode":429,"name":"daily_quota_exceeded","message":"You have reached your daily email sending quota."}"#,
        ),
        None,
    );
    let sb = Sandbox::new();
    let r = api.send(&sb, "", &["--retries", "3"]);
    assert_eq!(r.code, 69, "{}", r.all());
    let v = r.json();
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["kind"], "permanent", "{v}");
    assert_eq!(v["resend_safe"], false, "{v}");
    assert!(r.all().contains("daily_quota_exceeded"), "{}", r.all());
    assert_eq!(api.requests().len(), 1, "a quota refusal is never retried");
}

/// The first request times out (the server answers after the client gave up); the request
/// carried an Idempotency-Key, so the retry is safe and carries the same key and body.
#[test]
fn a_resend_timeout_is_retried_with_the_same_idempotency_key() {
    use wiremock::ResponseTemplate;
    let api = ResendApi::start(
        ResponseTemplate::new(200)
            .set_body_string(r#"{"id":"em_late"}"#)
            .set_delay(std::time::Duration::from_secs(4)),
        Some((
            1,
            ResponseTemplate::new(200).set_body_string(r#"{"id":"em_second"}"#),
        )),
    );
    let sb = Sandbox::new();
    let r = api.send(&sb, "&timeout=1", &["--retries", "2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert_eq!(v["provider_id"], "em_second", "{v}");
    assert_eq!(v["attempts"], 2, "{v}");
    let requests = api.requests();
    assert_eq!(requests.len(), 2, "the timed-out request and its retry");
    assert_eq!(
        requests[0].headers["idempotency-key"], requests[1].headers["idempotency-key"],
        "the same key: Resend delivers at most one of them"
    );
    assert_eq!(requests[0].body, requests[1].body, "the same request body");
}
