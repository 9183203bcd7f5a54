//! Sessions driven over an in-memory pipe by a scripted server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokio::io::BufReader;

use super::opening::Opening;
use super::testing::*;
use super::*;
use crate::message::Envelope;
use crate::smtp::auth::{self, Credentials};
use crate::smtp::reply;
use crate::smtp::wire::{Command, Counters};
use crate::{Error, ErrorKind};

#[tokio::test]
async fn pipelines_envelope_and_reports_partial_rejection() {
    let (s, mut script, counters) =
        open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
    let s = s.unwrap();
    assert!(s.capabilities().pipelining);
    assert_eq!(s.capabilities().size, Some(1000));
    let env = envelope(&["b@example.com", "reject@example.com", "c@example.com"]);
    // The message as rendered; the transaction dot-stuffs it on the way out.
    let data = b"Subject: hi\r\n\r\n.dot\r\n".to_vec();
    let client = s.transaction(&env, body(&data), 22, false);
    let server = async {
        // All five commands arrive before any reply is sent: they were pipelined.
        script.expect("MAIL FROM:<a@example.com> SIZE=22").await;
        script.expect("RCPT TO:<b@example.com>").await;
        script.expect("RCPT TO:<reject@example.com>").await;
        script.expect("RCPT TO:<c@example.com>").await;
        script.expect("DATA").await;
        script
            .say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n250 2.1.5 Ok\r\n354 go\r\n")
            .await;
        let body = script.read_data().await;
        assert_eq!(body, b"Subject: hi\r\n\r\n..dot\r\n");
        script.say("250 2.0.0 Ok: queued as ABC123\r\n").await;
    };
    let ((s, result), ()) = tokio::join!(client, server);
    let d = result.unwrap();
    assert_eq!(d.accepted, ["b@example.com", "c@example.com"]);
    assert_eq!(d.rejected.len(), 1);
    assert_eq!(d.rejected[0].address, "reject@example.com");
    assert_eq!(d.rejected[0].code, 550);
    assert_eq!(d.rejected[0].enhanced.as_deref(), Some("5.1.1"));
    assert_eq!(reply::provider_id(&d.reply).as_deref(), Some("ABC123"));
    assert!(s.is_some_and(|s| s.is_ready()));
    let stats = counters.snapshot();
    assert_eq!(stats.max_commands_per_write, 5);
}

#[tokio::test]
async fn all_recipients_refused_sends_rset_not_data() {
    let (s, mut script, _) = open(
        params(false, None, Duration::from_secs(5)),
        "250-mx.test\r\n250 SIZE\r\n",
    )
    .await;
    let s = s.unwrap();
    let env = envelope(&["x@example.com", "y@example.com"]);
    let client = s.transaction(&env, body(b"x\r\n"), 3, false);
    let server = async {
        script.expect("MAIL FROM").await;
        script.say("250 ok\r\n").await;
        script.expect("RCPT TO:<x@").await;
        script.say("450 4.2.0 busy\r\n").await;
        script.expect("RCPT TO:<y@").await;
        script.say("451 4.3.0 later\r\n").await;
        // No DATA: straight to RSET.
        script.expect("RSET").await;
        script.say("250 ok\r\n").await;
    };
    let ((s, result), ()) = tokio::join!(client, server);
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "every refusal was 4xx");
    assert!(err.message().contains("x@example.com") && err.message().contains("y@example.com"));
    assert!(
        s.is_some_and(|s| s.is_ready()),
        "RSET made the session reusable"
    );
    assert!(!script.seen.iter().any(|l| l == "DATA"));
}

#[tokio::test]
async fn next_transaction_reuses_without_rset_after_success() {
    let (s, mut script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
    let mut s = s.unwrap();
    for i in 0..2 {
        let env = envelope(&["b@example.com"]);
        let client = s.transaction(&env, body(b"x\r\n"), 3, false);
        let server = async {
            script.expect("MAIL FROM").await;
            script.expect("RCPT TO").await;
            script.expect("DATA").await;
            script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
            script.read_data().await;
            script.say(&format!("250 ok queued as Q{i}\r\n")).await;
        };
        let ((next, r), ()) = tokio::join!(client, server);
        r.unwrap();
        s = next.unwrap();
    }
    assert!(
        !script.seen.iter().any(|l| l == "RSET"),
        "{:?}",
        script.seen
    );
    assert_eq!(s.transactions, 2);
}

#[tokio::test]
async fn refuses_oversized_messages_before_mail_from() {
    let (s, script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
    let s = s.unwrap();
    let (s, r) = s
        .transaction(&envelope(&["b@example.com"]), body(b"x\r\n"), 5000, false)
        .await;
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().contains("5000") && err.message().contains("1000"),
        "{err}"
    );
    assert!(s.is_some_and(|s| s.is_ready()));
    assert_eq!(
        script.seen.len(),
        1,
        "only EHLO was sent: {:?}",
        script.seen
    );
}

#[tokio::test]
async fn smtputf8_is_required_when_the_envelope_needs_it() {
    let (s, _script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
    let s = s.unwrap();
    let env = Envelope {
        from: "a@example.com".into(),
        to: vec!["jörg@example.com".into()],
        smtputf8: true,
    };
    let err = s
        .transaction(&env, body(b"x\r\n"), 3, true)
        .await
        .1
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("jörg@example.com") && err.message().contains("SMTPUTF8"));
}

#[tokio::test]
async fn eight_bit_content_needs_8bitmime() {
    let (s, script, _) = open(
        params(true, None, Duration::from_secs(5)),
        "250-mx.test\r\n250 PIPELINING\r\n",
    )
    .await;
    let s = s.unwrap();
    let (s, r) = s
        .transaction(
            &envelope(&["b@example.com"]),
            body("Grüße\r\n".as_bytes()),
            8,
            true,
        )
        .await;
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.message().contains("8BITMIME"), "{err}");
    assert!(s.is_some_and(|s| s.is_ready()));
    assert_eq!(script.seen.len(), 1, "nothing but EHLO was sent");
}

#[tokio::test]
async fn smtputf8_and_8bitmime_parameters_are_sent_when_offered() {
    let (s, mut script, _) = open(
        params(true, None, Duration::from_secs(5)),
        "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
    )
    .await;
    let s = s.unwrap();
    let env = Envelope {
        from: "a@example.com".into(),
        to: vec!["jörg@example.com".into()],
        smtputf8: true,
    };
    let client = s.transaction(&env, body("Subject: ü\r\n".as_bytes()), 14, true);
    let server = async {
        script
            .expect("MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8")
            .await;
        script.expect("RCPT TO:<jörg@example.com>").await;
        script.expect("DATA").await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        script.say("250 ok\r\n").await;
    };
    let ((_, r), ()) = tokio::join!(client, server);
    r.unwrap();
}

#[tokio::test]
async fn silence_after_the_final_dot_is_ambiguous() {
    let (s, mut script, _) = open(params(true, None, Duration::from_millis(300)), EHLO_PIPE).await;
    let s = s.unwrap();
    let env = envelope(&["b@example.com"]);
    let client = s.transaction(&env, body(b"x\r\n"), 3, false);
    let server = async {
        script.expect("MAIL FROM").await;
        script.expect("RCPT TO").await;
        script.expect("DATA").await;
        script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        script.read_data().await;
        // ...and never answer.
    };
    let started = Instant::now();
    let ((s, r), ()) = tokio::join!(client, server);
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Ambiguous, "{err}");
    assert!(err.message().contains("may have been delivered"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(s.is_none(), "the connection is not reused");
}

/// A server that says 354 and then stops reading: the message cannot all be written. The
/// failure comes before the final `.` left, so it is a Timeout (safe to resend), not Ambiguous,
/// whether the message stalls in its last write (the one that also carries the `.`) or in an
/// earlier chunk of a large message.
#[tokio::test]
async fn a_stall_while_the_message_is_written_is_a_timeout_not_ambiguous() {
    // 100 KB: one write for the whole message and its end; 600 KB: chunks of 256 KiB first.
    for size in [100_000usize, 600_000] {
        let ehlo = "250-mx.test\r\n250 PIPELINING\r\n"; // no SIZE limit
        let (s, mut script, _) = open(params(true, None, Duration::from_millis(300)), ehlo).await;
        let s = s.unwrap();
        let env = envelope(&["b@example.com"]);
        let message = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n"
            .repeat(size / 70);
        let client = s.transaction(&env, body(message.as_bytes()), message.len(), false);
        let server = async {
            script.expect("MAIL FROM").await;
            script.expect("RCPT TO").await;
            script.expect("DATA").await;
            script.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
            // ...and read no more: the pipe (64 KiB) fills up.
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let ((s, r), ()) = tokio::join!(client, server);
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{size} bytes: {err}");
        assert!(err.is_retryable(), "{size} bytes: {err}");
        assert!(err.message().contains("sending the message"), "{err}");
        assert!(s.is_none(), "the broken connection is dropped");
    }
}

#[tokio::test]
async fn silence_before_data_is_a_timeout() {
    let (s, mut script, _) = open(params(true, None, Duration::from_millis(300)), EHLO_PIPE).await;
    let s = s.unwrap();
    let env = envelope(&["b@example.com"]);
    let client = s.transaction(&env, body(b"x\r\n"), 3, false);
    let server = async {
        script.expect("MAIL FROM").await;
    };
    let ((s, r), ()) = tokio::join!(client, server);
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_retryable());
    assert!(s.is_none(), "the broken connection is dropped");
}

#[tokio::test]
async fn probe_detects_a_closed_idle_connection() {
    let (s, script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
    let mut s = s.unwrap();
    assert!(s.probe_idle(), "an open idle connection is alive");
    drop(script);
    tokio::task::yield_now().await;
    assert!(!s.probe_idle(), "EOF is noticed without a round trip");
}

#[tokio::test]
async fn probe_detects_a_421_on_an_idle_connection() {
    let (s, mut script, _) = open(params(true, None, Duration::from_secs(5)), EHLO_PIPE).await;
    let mut s = s.unwrap();
    script
        .say("421 4.4.2 mx.test Error: timeout exceeded\r\n")
        .await;
    tokio::task::yield_now().await;
    assert!(!s.probe_idle());
}

async fn auth_session(
    ehlo: &str,
    creds: Credentials,
    server: impl FnOnce(Script) -> futures_script::BoxFut,
) -> (Result<Session, Error>, Vec<String>) {
    let (client, srv) = tokio::io::duplex(64 * 1024);
    let counters = Arc::new(Counters::default());
    let session = Opening::over(
        Box::new(client),
        None,
        params(true, Some(creds), Duration::from_secs(5)),
        counters,
        1,
    );
    let mut script = Script {
        server: BufReader::new(srv),
        seen: Vec::new(),
    };
    script.say("220 mx.test ESMTP\r\n").await;
    let ehlo = ehlo.to_string();
    let server_side = async move {
        script.expect("EHLO").await;
        script.say(&ehlo).await;
        server(script).await
    };
    let (session, seen) = tokio::join!(session.handshake_and_login(), server_side);
    (session, seen)
}

mod futures_script {
    pub type BoxFut = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send>>;
}

#[tokio::test]
async fn plain_auth_uses_an_initial_response() {
    let (s, seen) = auth_session(
        "250-mx.test\r\n250 AUTH LOGIN PLAIN\r\n",
        Credentials::password("alice", "pw"),
        |mut script| {
            Box::pin(async move {
                script.expect("AUTH PLAIN AGFsaWNlAHB3").await;
                script.say("235 2.7.0 Authentication successful\r\n").await;
                script.seen
            })
        },
    )
    .await;
    assert!(s.unwrap().is_ready());
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn login_auth_answers_two_challenges() {
    let (s, seen) = auth_session(
        "250-mx.test\r\n250 AUTH LOGIN\r\n",
        Credentials::password("alice", "pw"),
        |mut script| {
            Box::pin(async move {
                script.expect("AUTH LOGIN").await;
                script.say("334 VXNlcm5hbWU6\r\n").await;
                script.expect("YWxpY2U=").await;
                script.say("334 UGFzc3dvcmQ6\r\n").await;
                script.expect("cHc=").await;
                script.say("235 ok\r\n").await;
                script.seen
            })
        },
    )
    .await;
    assert!(s.unwrap().is_ready());
    assert_eq!(seen[1], "AUTH LOGIN");
}

#[tokio::test]
async fn direct_535_is_an_auth_error() {
    let (s, _) = auth_session(
        "250-mx.test\r\n250 AUTH PLAIN\r\n",
        Credentials::password("alice", "wrong"),
        |mut script| {
            Box::pin(async move {
                script.expect("AUTH PLAIN").await;
                script
                    .say("535 5.7.8 Error: authentication failed\r\n")
                    .await;
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    let err = s.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.smtp_code(), Some(535));
    assert!(
        err.message().contains("alice") && err.message().contains("PLAIN"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("wrong"));
}

#[tokio::test]
async fn xoauth2_json_error_is_answered_with_an_empty_line() {
    let json = r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, json);
    let (s, seen) = auth_session(
        "250-mx.test\r\n250 AUTH XOAUTH2 OAUTHBEARER\r\n",
        Credentials::oauth2_static("alice@example.com", "expired-token"),
        move |mut script| {
            Box::pin(async move {
                script.expect("AUTH XOAUTH2 ").await;
                script.say(&format!("334 {b64}\r\n")).await;
                let empty = script.line().await;
                assert_eq!(
                    empty, "",
                    "the error challenge is answered with an empty line"
                );
                script
                    .say("535 5.7.8 Username and Password not accepted\r\n")
                    .await;
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    let err = s.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.smtp_code(), Some(535));
    assert!(
        err.server_text().unwrap().contains(r#""status":"401""#),
        "{err}"
    );
    assert!(!format!("{err:?} {err}").contains("expired-token"));
    assert!(seen.iter().all(|l| !l.contains("expired-token")));
}

#[tokio::test]
async fn oauthbearer_json_error_is_answered_with_ctrl_a() {
    let (s, _) = auth_session(
        "250-mx.test\r\n250 AUTH OAUTHBEARER\r\n",
        Credentials::oauth2_static("alice@example.com", "tok"),
        |mut script| {
            Box::pin(async move {
                script.expect("AUTH OAUTHBEARER ").await;
                script
                    .say("334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n")
                    .await;
                script.expect("AQ==").await;
                script.say("535 5.7.8 no\r\n").await;
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    let err = s.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.server_text().unwrap().contains("invalid_token"));
}

#[tokio::test]
async fn long_tokens_wait_for_an_empty_challenge() {
    let token = "t".repeat(3000);
    let (s, seen) = auth_session(
        "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
        Credentials::oauth2_static("alice@example.com", token),
        |mut script| {
            Box::pin(async move {
                let l = script.expect("AUTH XOAUTH2").await;
                assert_eq!(l, "AUTH XOAUTH2", "no initial response on the AUTH line");
                script.say("334 \r\n").await;
                let resp = script.line().await;
                assert!(resp.len() > 3000);
                script.say("235 ok\r\n").await;
                script.seen
            })
        },
    )
    .await;
    assert!(s.unwrap().is_ready());
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn auth_454_is_transient() {
    let (s, _) = auth_session(
        "250-mx.test\r\n250 AUTH PLAIN\r\n",
        Credentials::password("alice", "pw"),
        |mut script| {
            Box::pin(async move {
                script.expect("AUTH PLAIN").await;
                script
                    .say("454 4.7.0 Temporary authentication failure\r\n")
                    .await;
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    assert_eq!(s.err().unwrap().kind(), ErrorKind::Transient);
}

/// Hands out its first token until told that it was rejected, then the next one.
#[derive(Debug)]
struct Rotating {
    tokens: std::sync::Mutex<Vec<&'static str>>,
    invalidated: std::sync::atomic::AtomicUsize,
}

impl Rotating {
    fn new(tokens: &[&'static str]) -> Arc<Self> {
        Arc::new(Rotating {
            tokens: std::sync::Mutex::new(tokens.to_vec()),
            invalidated: Default::default(),
        })
    }
    fn invalidations(&self) -> usize {
        self.invalidated.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl auth::AccessTokenSource for Rotating {
    async fn access_token(&self) -> Result<SecretString, Error> {
        Ok(SecretString::from(self.tokens.lock().unwrap()[0]))
    }
    fn invalidate(&self, token: &SecretString) {
        self.invalidated
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut tokens = self.tokens.lock().unwrap();
        if tokens.len() > 1 && tokens[0] == token.expose_secret() {
            tokens.remove(0);
        }
    }
}

/// The token inside an `AUTH XOAUTH2 <initial response>` line.
fn xoauth2_token(line: &str) -> String {
    let b64 = line.rsplit(' ').next().unwrap();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    raw.split("auth=Bearer ")
        .nth(1)
        .unwrap()
        .trim_end_matches('\x01')
        .to_string()
}

const JSON_401: &str = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=";

#[tokio::test]
async fn a_rejected_token_is_replaced_once_on_the_same_connection() {
    let source = Rotating::new(&["old-token", "new-token"]);
    let (s, seen) = auth_session(
        "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
        Credentials::oauth2("alice@example.com", source.clone()),
        |mut script| {
            Box::pin(async move {
                let l = script.expect("AUTH XOAUTH2 ").await;
                assert_eq!(xoauth2_token(&l), "old-token");
                script.say(&format!("334 {JSON_401}\r\n")).await;
                assert_eq!(script.line().await, "");
                script
                    .say("535 5.7.8 Error: authentication failed\r\n")
                    .await;
                let l = script.expect("AUTH XOAUTH2 ").await;
                assert_eq!(xoauth2_token(&l), "new-token");
                script.say("235 2.7.0 Authentication successful\r\n").await;
                script.seen
            })
        },
    )
    .await;
    assert!(s.unwrap().is_ready());
    assert_eq!(source.invalidations(), 1);
    assert_eq!(seen.iter().filter(|l| l.starts_with("AUTH")).count(), 2);
}

#[tokio::test]
async fn a_token_rejected_twice_is_an_auth_error_with_the_json_reason() {
    let source = Rotating::new(&["first-token", "second-token", "third-token"]);
    let (s, seen) = auth_session(
        "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
        Credentials::oauth2("alice@example.com", source.clone()),
        |mut script| {
            Box::pin(async move {
                for _ in 0..2 {
                    script.expect("AUTH XOAUTH2 ").await;
                    script.say(&format!("334 {JSON_401}\r\n")).await;
                    assert_eq!(script.line().await, "");
                    script
                        .say("535 5.7.8 Error: authentication failed\r\n")
                        .await;
                }
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    let err = s.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.smtp_code(), Some(535));
    assert!(
        err.server_text().unwrap().contains(r#""status":"401""#),
        "{err}"
    );
    assert_eq!(source.invalidations(), 2, "both tokens were invalidated");
    let auths: Vec<String> = seen
        .iter()
        .filter(|l| l.starts_with("AUTH"))
        .map(|l| xoauth2_token(l))
        .collect();
    assert_eq!(
        auths,
        ["first-token", "second-token"],
        "one retry, not more"
    );
}

#[tokio::test]
async fn after_a_rejection_and_a_close_the_new_token_goes_over_a_new_connection() {
    let source = Rotating::new(&["old-token", "new-token"]);
    let p = params(
        true,
        Some(Credentials::oauth2("alice@example.com", source.clone())),
        Duration::from_secs(5),
    );
    let counters = Arc::new(Counters::default());
    let greet = |ehlo: &'static str| {
        let (client, srv) = tokio::io::duplex(64 * 1024);
        let mut script = Script {
            server: BufReader::new(srv),
            seen: Vec::new(),
        };
        let server = tokio::spawn(async move {
            script.say("220 mx.test ESMTP\r\n").await;
            script.expect("EHLO").await;
            script.say(ehlo).await;
            script
        });
        (client, server)
    };
    let (c1, s1) = greet("250-mx.test\r\n250 AUTH XOAUTH2\r\n");
    let first = Opening::over(Box::new(c1), None, p.clone(), counters.clone(), 1)
        .handshake()
        .await
        .unwrap();
    let mut script1 = s1.await.unwrap();
    let server1 = tokio::spawn(async move {
        let l = script1.expect("AUTH XOAUTH2 ").await;
        assert_eq!(xoauth2_token(&l), "old-token");
        script1
            .say("535 5.7.8 Error: authentication failed\r\n")
            .await;
        // ... and the server hangs up.
        drop(script1);
    });
    let reconnected = std::sync::atomic::AtomicBool::new(false);
    let token = Some(SecretString::from("old-token"));
    let server1 = std::sync::Mutex::new(Some(server1));
    let login = first.login(token, || {
        let server1 = server1.lock().unwrap().take().expect("one reconnect");
        async {
            reconnected.store(true, std::sync::atomic::Ordering::SeqCst);
            server1.await.unwrap();
            let (c2, s2) = greet("250-mx.test\r\n250 AUTH XOAUTH2\r\n");
            tokio::spawn(async move {
                let mut script2 = s2.await.unwrap();
                let l = script2.expect("AUTH XOAUTH2 ").await;
                assert_eq!(xoauth2_token(&l), "new-token");
                script2.say("235 2.7.0 ok\r\n").await;
                // Keep the pipe open until the client is done.
                let _ = script2.line().await;
            });
            Opening::over(Box::new(c2), None, p.clone(), counters.clone(), 2)
                .handshake()
                .await
        }
    });
    let session = tokio::time::timeout(Duration::from_secs(5), login)
        .await
        .expect("no hang")
        .unwrap();
    assert!(session.is_ready());
    assert_eq!(session.id(), 2, "authenticated on the new connection");
    assert!(reconnected.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(source.invalidations(), 1);
}

#[tokio::test]
async fn a_static_token_that_is_rejected_is_not_retried() {
    let (s, seen) = auth_session(
        "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
        Credentials::oauth2_static("alice@example.com", "static-token"),
        |mut script| {
            Box::pin(async move {
                script.expect("AUTH XOAUTH2 ").await;
                script
                    .say("535 5.7.8 Error: authentication failed\r\n")
                    .await;
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    assert_eq!(s.err().unwrap().kind(), ErrorKind::Auth);
    assert_eq!(seen.iter().filter(|l| l.starts_with("AUTH")).count(), 1);
}

#[tokio::test]
async fn helo_fallback_when_ehlo_is_unknown() {
    let (client, srv) = tokio::io::duplex(4096);
    let session = Opening::over(
        Box::new(client),
        None,
        params(true, None, Duration::from_secs(5)),
        Arc::new(Counters::default()),
        1,
    );
    let mut script = Script {
        server: BufReader::new(srv),
        seen: Vec::new(),
    };
    let server = async {
        script.say("220 old.test SMTP\r\n").await;
        script.expect("EHLO").await;
        script.say("502 command not implemented\r\n").await;
        script.expect("HELO client.example").await;
        script.say("250 old.test\r\n").await;
    };
    let (s, ()) = tokio::join!(session.handshake_and_login(), server);
    let s = s.unwrap();
    assert!(!s.capabilities().esmtp && !s.capabilities().pipelining);
}

/// A server that quotes the AUTH PLAIN blob (and so the password, base64-encoded) in its
/// refusal: neither the blob, nor the password, reaches the error.
#[tokio::test]
async fn an_echoed_sasl_response_is_redacted_from_the_error() {
    let (s, _) = auth_session(
        "250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n",
        Credentials::password("alice", "canary-pw-5521"),
        |mut script| {
            Box::pin(async move {
                let line = script.expect("AUTH PLAIN ").await;
                let blob = line.rsplit(' ').next().unwrap().to_string();
                script
                    .say(&format!(
                        "535 5.7.8 bad credentials {blob} for canary-pw-5521\r\n"
                    ))
                    .await;
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    let err = s.err().unwrap();
    let shown = format!("{err} {err:?}");
    let blob = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        b"\0alice\0canary-pw-5521",
    );
    assert!(!shown.contains(&blob), "{shown}");
    assert!(!shown.contains("canary-pw-5521"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");

    // AUTH LOGIN sends the password alone, base64-encoded.
    let (s, _) = auth_session(
        "250-mx.test\r\n250 AUTH LOGIN\r\n",
        Credentials::password("alice", "canary-pw-5521"),
        |mut script| {
            Box::pin(async move {
                script.expect("AUTH LOGIN").await;
                script.say("334 VXNlcm5hbWU6\r\n").await;
                script.line().await;
                script.say("334 UGFzc3dvcmQ6\r\n").await;
                let pw = script.line().await;
                script.say(&format!("535 5.7.8 refused: {pw}\r\n")).await;
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    let shown = format!("{:?}", s.err().unwrap());
    let b64_pw = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        b"canary-pw-5521",
    );
    assert!(!shown.contains(&b64_pw), "{shown}");
}

/// Exchange's `535 5.7.139` (SMTP AUTH disabled) is permanent: no new token is asked for,
/// and the error says what to change.
#[tokio::test]
async fn smtp_auth_disabled_for_the_tenant_costs_no_token_refresh() {
    let source = Rotating::new(&["token-1", "token-2"]);
    let (s, seen) = auth_session(
        "250-mx.test\r\n250 AUTH XOAUTH2\r\n",
        Credentials::oauth2("alice@example.com", source.clone()),
        |mut script| {
            Box::pin(async move {
                script.expect("AUTH XOAUTH2 ").await;
                script
                    .say(
                        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is \
                         disabled for the Tenant.\r\n",
                    )
                    .await;
                script.expect("QUIT").await;
                script.say("221 bye\r\n").await;
                script.seen
            })
        },
    )
    .await;
    let err = s.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.message().contains("SMTP AUTH is disabled"), "{err}");
    assert!(err.message().contains("Set-CASMailbox"), "{err}");
    assert_eq!(source.invalidations(), 0, "the token was not the problem");
    assert_eq!(seen.iter().filter(|l| l.starts_with("AUTH")).count(), 1);
}

/// A stream that fails every write with an I/O error, as a TLS stream does when the socket
/// fails: unlike TCP's, such an error can come after earlier records of the same write (the
/// final `.` among them) reached the server.
struct FailingWrites;

impl tokio::io::AsyncRead for FailingWrites {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl tokio::io::AsyncWrite for FailingWrites {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A write that fails while carrying a message's final `.` and the next message's commands
/// behind it: over TCP nothing of that write was taken (safe to resend); over TLS the records
/// before the failing one may have reached the server, the `.` among them (Ambiguous), unless
/// the `.` ends the write (then its last record, the `.`'s end, did not).
#[tokio::test]
async fn a_failed_write_carrying_the_final_dot_is_ambiguous_over_tls_only_when_commands_follow() {
    let next = [Command::Rset];
    for (tls, next, expected) in [
        (false, &next[..], ErrorKind::Network),
        (true, &next[..], ErrorKind::Ambiguous),
        (true, &[][..], ErrorKind::Network),
    ] {
        let p = params(true, None, Duration::from_secs(5));
        let counters = Arc::new(Counters::default());
        let tuning = super::socket::Tuning::none();
        let mut conn = Connection::new(Box::new(FailingWrites), None, tuning, p, counters, 1);
        if tls {
            // As after a TLS handshake: the stream comes back wrapped.
            let stream = conn.take_stream().unwrap();
            conn.put_stream(stream);
        }
        let err = conn
            .write_payload(body(b"Subject: x\r\n\r\nhello\r\n"), next)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            expected,
            "tls {tls}, {} commands: {err}",
            next.len()
        );
    }
}
