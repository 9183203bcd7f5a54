//! XOAUTH2 and OAUTHBEARER against the real Postfix + Dovecot (oauth2 passdb validating RS256
//! JWTs locally), with tokens from the test environment's OAuth2 token server
//! (`OUTBOUND_TEST_OAUTH_URL`). Here a token is fetched once and handed to the transport by a
//! test token source, which is what the SASL plumbing needs; the managed token lifecycle
//! (token cache, refresh, retry after a rejection, configuration) is in
//! `smtp_oauth2_lifecycle.rs`.
//!
//! The tokens are JWTs of ~1 KB, so the XOAUTH2/OAUTHBEARER payload does not fit on a 512-octet
//! `AUTH` line: these tests also prove the two-step form (`AUTH XOAUTH2`, empty `334`, payload)
//! that Postfix needs for long tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use outbound::smtp::{AccessTokenSource, Credentials, Mechanism, SmtpTransport, TlsMode};
use outbound::{Error, ErrorKind, Message, Transport};
use outbound_testkit::{unique, Maildir, Maillog, TestEnv};
use secrecy::{ExposeSecret, SecretString};

/// A fresh access token for `user` from the environment's token server.
fn fetch_token(env: &TestEnv, user: &str) -> String {
    let url = env.get("OUTBOUND_TEST_OAUTH_URL");
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let body = format!(
        "grant_type=client_credentials&client_id=outbound-test&client_secret=x&scope=https%3A%2F%2Foutlook.office365.com%2F.default&login_hint={}",
        user.replace('@', "%40")
    );
    let mut stream = std::net::TcpStream::connect(authority).unwrap_or_else(|e| {
        panic!(
            "test servers not running: run testenv/smtp-servers.sh start (token server {url}: {e})"
        )
    });
    write!(
        stream,
        "POST /token HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("token server answered {response:?}: {e}"));
    value["access_token"].as_str().unwrap().to_string()
}

/// A token source that counts how often the transport reported a rejected token.
#[derive(Debug)]
struct Counting {
    token: String,
    invalidated: AtomicUsize,
}

#[async_trait]
impl AccessTokenSource for Counting {
    async fn access_token(&self) -> Result<SecretString, Error> {
        Ok(SecretString::from(self.token.clone()))
    }
    fn invalidate(&self, token: &SecretString) {
        assert_eq!(token.expose_secret(), self.token);
        self.invalidated.fetch_add(1, Ordering::SeqCst);
    }
}

fn transport(
    env: &TestEnv,
    port: u16,
    mode: TlsMode,
    mech: Mechanism,
    source: Arc<Counting>,
) -> SmtpTransport {
    SmtpTransport::builder(env.host())
        .port(port)
        .tls(mode)
        .ca_file(env.ca_file())
        .credentials(Credentials::oauth2(env.user(), source))
        .mechanism(mech)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn deliver_with(port: u16, mode: TlsMode, mech: Mechanism) {
    let env = TestEnv::load();
    let log = Maillog::start(env.maillog());
    let token = fetch_token(&env, &env.user());
    assert!(token.len() > 512, "a realistic (long) token");
    let source = Arc::new(Counting {
        token,
        invalidated: AtomicUsize::new(0),
    });
    let t = transport(&env, port, mode, mech, source.clone());
    let id = unique(&format!("oauth-{mech}"));
    let msg = Message::builder()
        .from(env.user())
        .to(format!("bob@{}", env.domain()))
        .subject(format!("{mech} {id}"))
        .text("sent with a bearer token")
        .message_id(format!("{id}@{}", env.domain()))
        .build()
        .unwrap();
    let receipt = t
        .send(&msg)
        .await
        .unwrap_or_else(|e| panic!("{mech} on {port}: {e}"));
    assert_eq!(source.invalidated.load(Ordering::SeqCst), 0);
    let mid = format!("<{id}@{}>", env.domain());
    Maildir::new(env.maildir()).wait_for(std::slice::from_ref(&mid), Duration::from_secs(30));
    // Postfix logs which mechanism authenticated the message.
    let qid = receipt.provider_id.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = log
            .lines()
            .into_iter()
            .find(|l| l.contains(&format!("{qid}: client=")))
        {
            assert!(line.contains(&format!("sasl_method={mech}")), "{line}");
            assert!(
                line.contains(&format!("sasl_username={}", env.user())),
                "{line}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{qid} not in the maillog"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn xoauth2_with_a_long_token_delivers_on_587() {
    deliver_with(587, TlsMode::StartTls, Mechanism::XOAuth2).await;
}

#[tokio::test]
async fn oauthbearer_delivers_on_465() {
    deliver_with(465, TlsMode::Implicit, Mechanism::OAuthBearer).await;
}

/// A token Dovecot refuses (bad signature): Postfix relays Dovecot's `334 <base64 JSON>`, the
/// client answers it, and the final 535 comes back as an `Auth` error carrying the JSON. The
/// token source is told to invalidate the token.
#[tokio::test]
async fn rejected_token_is_an_auth_error_with_the_servers_json() {
    let env = TestEnv::load();
    let good = fetch_token(&env, &env.user());
    // Break the signature but keep the JWT well formed: change one character early in the
    // signature segment (the last character may only carry padding bits).
    let sig_start = good.rfind('.').unwrap() + 1;
    let mut bytes = good.clone().into_bytes();
    let i = sig_start + 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bytes).unwrap();
    for mech in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
        let source = Arc::new(Counting {
            token: bad.clone(),
            invalidated: AtomicUsize::new(0),
        });
        let t = transport(&env, 587, TlsMode::StartTls, mech, source.clone());
        let err = t.verify().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{mech}: {err}");
        assert_eq!(err.smtp_code(), Some(535), "{mech}: {err}");
        let text = err.server_text().unwrap_or_default();
        assert!(text.contains("\"status\""), "{mech}: the JSON error: {err}");
        assert!(
            !format!("{err} {err:?}").contains(&bad),
            "the token is never shown"
        );
        assert_eq!(source.invalidated.load(Ordering::SeqCst), 1, "{mech}");
    }
}
