//! Canary values: a client secret, refresh tokens and every access token the real token
//! server issues must never appear in any error's `Display` or `Debug`, in any source's or
//! cache's `Debug`, nor in the logs, captured at TRACE level for every crate (this binary
//! installs a global subscriber that writes to a buffer; `log` records from dependencies
//! such as reqwest are captured too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbound::oauth::{ClientCredentials, RefreshTokenGrant, StaticToken, TokenCache, TokenSource};
use outbound_testkit::oauth::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

const CLIENT_SECRET: &str = "canary-secret-XYZ";
const REFRESH_TOKEN: &str = "canary-refresh-XYZ";
const STATIC_TOKEN: &str = "canary-static-access-token-XYZ";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_appear_in_errors_debug_or_logs() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test binary installs the only global subscriber");

    let server = TokenServer::start(3600);
    let mut shown: Vec<String> = Vec::new();
    let mut issued: Vec<String> = Vec::new();

    // Success paths: client credentials (generic and Microsoft), cached and shared.
    let generic = ClientCredentials::generic(
        server.token_url(),
        "app-1",
        SecretString::from(CLIENT_SECRET),
        "mail.send",
    )
    .timeout(Duration::from_secs(2))
    .build()
    .unwrap();
    shown.push(format!("{generic:?} {}", generic.describe()));
    let cache = TokenCache::shared(generic);
    let token = cache.get().await.unwrap();
    issued.push(token.secret().expose_secret().to_string());
    shown.push(format!("{token:?} {} {cache:?}", token.masked()));
    cache.invalidate(&token);
    let token = cache.get().await.unwrap();
    issued.push(token.secret().expose_secret().to_string());
    shown.push(format!("{token:?} {cache:?}"));

    let microsoft =
        ClientCredentials::microsoft_smtp("contoso", "app-2", SecretString::from(CLIENT_SECRET))
            .authority(server.url())
            .build()
            .unwrap();
    let token = microsoft.fetch().await.unwrap();
    issued.push(token.secret().expose_secret().to_string());
    shown.push(format!("{microsoft:?}"));

    // Refresh token grant with rotation to a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rt");
    let refresh = RefreshTokenGrant::builder(server.token_url(), "app-3")
        .client_secret(SecretString::from(CLIENT_SECRET))
        .refresh_token(SecretString::from(REFRESH_TOKEN))
        .refresh_token_file(&file)
        .build()
        .unwrap();
    shown.push(format!("{refresh:?} {}", refresh.describe()));
    let refresh_cache = TokenCache::new(refresh);
    let token = refresh_cache.get().await.unwrap();
    issued.push(token.secret().expose_secret().to_string());
    let rotated = std::fs::read_to_string(&file).unwrap().trim().to_string();
    refresh_cache.invalidate(&token);
    let token = refresh_cache.get().await.unwrap();
    issued.push(token.secret().expose_secret().to_string());
    let rotated2 = std::fs::read_to_string(&file).unwrap().trim().to_string();
    shown.push(format!("{refresh_cache:?}"));

    // A static token.
    let fixed = StaticToken::new(SecretString::from(STATIC_TOKEN));
    shown.push(format!("{fixed:?} {}", fixed.describe()));
    let fixed_cache = TokenCache::new(fixed);
    shown.push(format!(
        "{:?} {fixed_cache:?}",
        fixed_cache.get().await.unwrap()
    ));

    // Failure paths. The error bodies echo back what each request sent (its client secret,
    // its refresh token) and an access token, as a careless server might.
    let faults = |echo: &str| {
        [
            json!({"mode": "error", "status": 401,
                   "body": microsoft_error("invalid_client", 7000215,
                       &format!("AADSTS7000215: Invalid client secret provided: {echo}"))}),
            json!({"mode": "status", "status": 500, "body": format!("oops {echo}")}),
            json!({"mode": "malformed"}),
            json!({"mode": "no_token"}),
            json!({"mode": "html"}),
            json!({"mode": "error", "status": 400, "error": "invalid_grant",
                   "error_description": format!("grant revoked: {echo}")}),
            json!({"mode": "stall"}),
        ]
    };
    let failing = ClientCredentials::generic(
        server.token_url(),
        "app-4",
        SecretString::from(CLIENT_SECRET),
        "mail.send",
    )
    .timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    let failing_cache = TokenCache::new(failing);
    let failing_refresh = RefreshTokenGrant::builder(server.token_url(), "app-5")
        .client_secret(SecretString::from(CLIENT_SECRET))
        .refresh_token(SecretString::from(REFRESH_TOKEN))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut errors = Vec::new();
    for fault in faults(&format!("'{CLIENT_SECRET}' (last token {})", issued[0])) {
        server.fault(fault).await;
        errors.push(failing_cache.get().await.unwrap_err());
    }
    for fault in faults(&format!(
        "'{CLIENT_SECRET}' refresh token '{REFRESH_TOKEN}' (last token {})",
        issued[1]
    )) {
        server.fault(fault).await;
        errors.push(failing_refresh.fetch().await.unwrap_err());
    }
    assert_eq!(errors.len(), 14);
    for e in &errors {
        let mut text = format!("{e}\n{e:?}\n");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!("{s}\n{s:?}\n"));
            source = s.source();
        }
        shown.push(text);
    }
    server.clear_faults().await;

    let logs = logs.text();
    assert!(
        logs.contains("token acquired, expires in"),
        "the subscriber captured the library's logs:\n{logs}"
    );
    assert!(
        logs.contains("TRACE hyper_util") && logs.contains("reqwest::connect"),
        "the HTTP stack's own TRACE/DEBUG records are captured too"
    );

    let mut canaries: Vec<String> = vec![
        CLIENT_SECRET.into(),
        REFRESH_TOKEN.into(),
        STATIC_TOKEN.into(),
        rotated,
        rotated2,
        "TRUNCATED-CANARY".into(),
    ];
    canaries.extend(issued.iter().cloned());
    // A JWT's signature alone identifies it: look for that too.
    canaries.extend(
        issued
            .iter()
            .filter_map(|t| t.rsplit('.').next().map(str::to_string)),
    );
    let everything = format!("{}\n{logs}", shown.join("\n"));
    for canary in &canaries {
        assert!(
            !everything.contains(canary.as_str()),
            "a secret leaked ({}…):\n{everything}",
            &canary[..8.min(canary.len())]
        );
    }
    // The errors said something useful all the same.
    assert!(everything.contains("AADSTS7000215"));
    assert!(everything.contains("[redacted]"));
    assert!(everything.contains("did not answer within 1 s"));
    eprintln!(
        "checked {} canaries against {} bytes of Display/Debug output and {} bytes of TRACE logs",
        canaries.len(),
        everything.len() - logs.len(),
        logs.len()
    );
}
