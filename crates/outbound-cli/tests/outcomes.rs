#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fault injection through the `outbound` command, against scripted SMTP servers on loopback
//! (in this process): each scenario asserts the outcome, the error kind, the exit code, how
//! many connections the server saw (retries) and how many copies it accepted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use assert_cmd::Command;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What a scripted server does at each step of a session.
#[derive(Clone, Copy)]
struct Script {
    greeting: &'static str,
    mail: &'static str,
    rcpt: &'static str,
    /// The reply to the final "." (None: the DATA reply is never reached).
    data_end: &'static str,
    /// Close the connection instead of answering DATA, on the first connection only.
    drop_at_data_once: bool,
    /// Offer STARTTLS, accept it with 220, then answer the TLS handshake with garbage.
    broken_starttls: bool,
    /// Never answer at this step (a stalled phase): "greeting", a command's first word
    /// ("EHLO", "MAIL", "RCPT", "DATA"), or "." for the end of data. A message stalled at "."
    /// counts as accepted: the server may have queued it before it went quiet.
    stall_at: Option<&'static str>,
}

const OK: Script = Script {
    greeting: "220 scripted.test ESMTP",
    mail: "250 2.1.0 Ok",
    rcpt: "250 2.1.5 Ok",
    data_end: "250 2.0.0 Ok: queued as ABC123",
    drop_at_data_once: false,
    broken_starttls: false,
    stall_at: None,
};

struct Server {
    port: u16,
    connections: Arc<AtomicUsize>,
    /// MAIL commands: one per transaction attempted.
    mails: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

async fn serve(script: Script) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let mails = Arc::new(AtomicUsize::new(0));
    let (c, a, m) = (connections.clone(), accepted.clone(), mails.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let (a, m) = (a.clone(), m.clone());
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut lines = BufReader::new(r).lines();
                let stall = || tokio::time::sleep(std::time::Duration::from_secs(30));
                if script.stall_at == Some("greeting") {
                    stall().await;
                    return;
                }
                if !say(&mut w, script.greeting).await || !script.greeting.starts_with("220") {
                    // A refusing greeting: wait for QUIT (or the close), answer it, done.
                    if let Ok(Some(_)) = lines.next_line().await {
                        say(&mut w, "221 bye").await;
                    }
                    return;
                }
                let mut in_data = false;
                // As Postfix does: DATA without an accepted recipient is refused.
                let mut rcpt_ok = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." && script.stall_at == Some(".") {
                            a.fetch_add(1, Ordering::SeqCst);
                            stall().await;
                            return;
                        }
                        if line == "." {
                            in_data = false;
                            if script.data_end.starts_with('2') {
                                a.fetch_add(1, Ordering::SeqCst);
                            }
                            say(&mut w, script.data_end).await;
                        }
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    if let Some(word) = script.stall_at.filter(|w| upper.starts_with(w)) {
                        if word == "MAIL" {
                            m.fetch_add(1, Ordering::SeqCst);
                        }
                        stall().await;
                        return;
                    }
                    let reply = if upper.starts_with("EHLO") && script.broken_starttls {
                        "250-scripted.test\r\n250-STARTTLS\r\n250 AUTH PLAIN"
                    } else if upper.starts_with("EHLO") {
                        "250-scripted.test\r\n250 PIPELINING"
                    } else if upper.starts_with("STARTTLS") {
                        say(&mut w, "220 2.0.0 Ready to start TLS").await;
                        say(&mut w, "this is not a TLS record").await;
                        return;
                    } else if upper.starts_with("AUTH") {
                        a.fetch_add(1000, Ordering::SeqCst); // credentials in clear: must never happen
                        "535 no"
                    } else if upper.starts_with("MAIL") {
                        m.fetch_add(1, Ordering::SeqCst);
                        rcpt_ok = false;
                        script.mail
                    } else if upper.starts_with("RCPT") {
                        rcpt_ok |= script.rcpt.starts_with('2') && script.mail.starts_with('2');
                        script.rcpt
                    } else if upper.starts_with("DATA") && !rcpt_ok {
                        "554 5.5.1 Error: no valid recipients"
                    } else if upper.starts_with("DATA") {
                        if script.drop_at_data_once && n == 0 {
                            return; // connection lost before DATA was answered
                        }
                        in_data = true;
                        "354 go ahead"
                    } else if upper.starts_with("RSET") {
                        "250 Ok"
                    } else if upper.starts_with("QUIT") {
                        say(&mut w, "221 bye").await;
                        return;
                    } else {
                        "502 5.5.2 not here"
                    };
                    if !say(&mut w, reply).await || reply.starts_with("421") {
                        return;
                    }
                }
            });
        }
    });
    Server {
        port,
        connections,
        mails,
        accepted,
    }
}

/// `outbound send` to the server, with `retries`, as JSON.
async fn send(server: &Server, retries: u32, tls: &str) -> (i32, Value) {
    // With STARTTLS, credentials too: they must never go out in clear.
    let user = if tls == "starttls" {
        "user:canary-pw@"
    } else {
        ""
    };
    let dsn = format!("smtp://{user}127.0.0.1:{}?tls={tls}&timeout=1", server.port);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_outbound"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args([
                "send",
                "--dsn",
                &dsn,
                "--from",
                "app@example.test",
                "--to",
                "bob@example.test",
                "--text",
                "hello",
                "--json",
                "--retries",
                &retries.to_string(),
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "one JSON object expected: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), json)
}

struct Case {
    name: &'static str,
    script: Script,
    status: &'static str,
    kind: Option<&'static str>,
    exit: i32,
    /// Connections the server saw, with 2 retries allowed.
    connections: usize,
    /// Transactions (MAIL commands) it saw: retries reuse a connection that stays usable.
    mails: usize,
    copies: usize,
}

#[tokio::test]
async fn every_outcome_is_exact() {
    let cases = [
        Case {
            name: "554 at greeting",
            script: Script {
                greeting: "554 5.3.2 No service for you",
                ..OK
            },
            status: "failed",
            kind: Some("permanent"),
            exit: 69,
            connections: 1,
            mails: 0,
            copies: 0,
        },
        Case {
            name: "421 at greeting",
            script: Script {
                greeting: "421 4.3.2 Too busy, try later",
                ..OK
            },
            status: "failed",
            kind: Some("transient"),
            exit: 75,
            connections: 3,
            mails: 0,
            copies: 0,
        },
        Case {
            name: "421 mid-session",
            script: Script {
                mail: "421 4.4.2 Closing: timeout",
                ..OK
            },
            status: "failed",
            kind: Some("transient"),
            exit: 75,
            connections: 3,
            mails: 3,
            copies: 0,
        },
        Case {
            name: "451 on RCPT",
            script: Script {
                rcpt: "451 4.3.0 Try again later",
                ..OK
            },
            status: "failed",
            kind: Some("transient"),
            exit: 75,
            connections: 1,
            mails: 3,
            copies: 0,
        },
        Case {
            name: "452 on RCPT",
            script: Script {
                rcpt: "452 4.5.3 Too many recipients",
                ..OK
            },
            status: "failed",
            kind: Some("transient"),
            exit: 75,
            connections: 1,
            mails: 3,
            copies: 0,
        },
        Case {
            name: "552 on size at the end of DATA",
            script: Script {
                data_end: "552 5.3.4 Message size exceeds fixed limit",
                ..OK
            },
            status: "failed",
            kind: Some("permanent"),
            exit: 69,
            connections: 1,
            mails: 1,
            copies: 0,
        },
        Case {
            name: "STARTTLS advertised but failing",
            script: Script {
                broken_starttls: true,
                ..OK
            },
            status: "failed",
            kind: Some("tls"),
            exit: 69,
            connections: 1,
            mails: 0,
            copies: 0,
        },
        Case {
            name: "a stalled greeting",
            script: Script {
                stall_at: Some("greeting"),
                ..OK
            },
            status: "failed",
            kind: Some("timeout"),
            exit: 75,
            connections: 3,
            mails: 0,
            copies: 0,
        },
        Case {
            name: "a stalled EHLO",
            script: Script {
                stall_at: Some("EHLO"),
                ..OK
            },
            status: "failed",
            kind: Some("timeout"),
            exit: 75,
            connections: 3,
            mails: 0,
            copies: 0,
        },
        Case {
            name: "a stalled MAIL",
            script: Script {
                stall_at: Some("MAIL"),
                ..OK
            },
            status: "failed",
            kind: Some("timeout"),
            exit: 75,
            connections: 3,
            mails: 3,
            copies: 0,
        },
        Case {
            name: "a stalled RCPT",
            script: Script {
                stall_at: Some("RCPT"),
                ..OK
            },
            status: "failed",
            kind: Some("timeout"),
            exit: 75,
            connections: 3,
            mails: 3,
            copies: 0,
        },
        Case {
            name: "a stalled DATA",
            script: Script {
                stall_at: Some("DATA"),
                ..OK
            },
            status: "failed",
            kind: Some("timeout"),
            exit: 75,
            connections: 3,
            mails: 3,
            copies: 0,
        },
        Case {
            name: "stalled after the final dot",
            script: Script {
                stall_at: Some("."),
                ..OK
            },
            status: "ambiguous",
            kind: Some("ambiguous"),
            exit: 75,
            connections: 1,
            mails: 1,
            copies: 1,
        },
        Case {
            name: "dropped before DATA, then fine",
            script: Script {
                drop_at_data_once: true,
                ..OK
            },
            status: "sent",
            kind: None,
            exit: 0,
            connections: 2,
            mails: 2,
            copies: 1,
        },
    ];
    for case in cases {
        let server = serve(case.script).await;
        let tls = if case.script.broken_starttls {
            "starttls"
        } else {
            "none"
        };
        let (code, json) = send(&server, 2, tls).await;
        let name = case.name;
        assert_eq!(code, case.exit, "{name}: {json}");
        assert_eq!(json["status"], case.status, "{name}: {json}");
        if let Some(kind) = case.kind {
            assert_eq!(json["error"]["kind"], kind, "{name}: {json}");
            assert_eq!(
                json["resend_safe"],
                kind == "transient" || kind == "timeout" || kind == "network",
                "{name}: {json}"
            );
        } else {
            assert_eq!(json["attempts"], 2, "{name}: {json}");
        }
        assert_eq!(
            server.connections.load(Ordering::SeqCst),
            case.connections,
            "{name}: connections"
        );
        assert_eq!(
            server.mails.load(Ordering::SeqCst),
            case.mails,
            "{name}: transactions"
        );
        assert_eq!(
            server.accepted.load(Ordering::SeqCst),
            case.copies,
            "{name}: copies"
        );
    }
}

/// Nothing listens on the port: refused at once on every attempt, a network error that is
/// safe to resend, nothing delivered.
#[tokio::test]
async fn connection_refused_is_a_network_failure_safe_to_resend() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }; // dropped: the port is closed now
    let nobody = Server {
        port,
        connections: Arc::default(),
        mails: Arc::default(),
        accepted: Arc::default(),
    };
    let started = std::time::Instant::now();
    let (code, json) = send(&nobody, 2, "none").await;
    assert_eq!(code, 75, "{json}");
    assert_eq!(json["status"], "failed", "{json}");
    assert_eq!(json["error"]["kind"], "network", "{json}");
    assert_eq!(json["resend_safe"], true, "{json}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "refusals are not waited out like timeouts: {:?}",
        started.elapsed()
    );
}

async fn say(w: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    w.write_all(format!("{text}\r\n").as_bytes()).await.is_ok()
}
