//! OAuth2 token sources and the token cache against a real token server
//! (`testenv/oauth/token-server.js`: npm oauth2-mock-server behind a wrapper), one private
//! instance per test on a free loopback port. Counts are taken on the server side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbound::oauth::{
    ClientAuth, ClientCredentials, RefreshTokenGrant, TokenCache, TokenSource,
    MICROSOFT_GRAPH_SCOPE, MICROSOFT_SMTP_SCOPE,
};
use outbound::{ErrorKind, ServerCode};
use outbound_cli::Sysexits;
use outbound_testkit::oauth::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn generic(server: &TokenServer, scope: &str) -> ClientCredentials {
    ClientCredentials::generic(server.token_url(), "app-1", secret("s3cret-value"), scope)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn microsoft(server: &TokenServer) -> ClientCredentials {
    ClientCredentials::microsoft_smtp(
        "contoso.onmicrosoft.com",
        "11111111-2222-3333-4444-555555555555",
        secret("s3cret-value"),
    )
    .authority(server.url())
    .timeout(Duration::from_secs(5))
    .build()
    .unwrap()
}

#[tokio::test]
async fn client_credentials_at_the_generic_token_url() {
    let server = TokenServer::start(3600);
    let source = generic(&server, "mail.send");
    let token = source.fetch().await.unwrap();
    assert_eq!(token.token_type(), "Bearer");
    assert_eq!(token.scope(), Some("mail.send"));
    let lifetime = token.lifetime().unwrap();
    assert_eq!(lifetime, Duration::from_secs(3600));
    let remaining = token.remaining().unwrap();
    assert!(remaining > Duration::from_secs(3590), "{remaining:?}");

    let claims = claims(token.secret().expose_secret());
    assert_eq!(claims["iss"], format!("http://localhost:{}", server.port));
    assert_eq!(claims["sub"], "alice@example.test");
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["scope"], "mail.send");
    let exp = claims["exp"].as_f64().unwrap();
    assert!((exp - now_secs() - 3600.0).abs() < 5.0);

    let stats = server.stats().await;
    assert_eq!(stats["token_requests"], 1);
    assert_eq!(stats["by_path"]["/token"], 1);
    let req = &stats["recent"][0];
    assert_eq!(req["grant_type"], "client_credentials");
    assert_eq!(req["client_id"], "app-1");
    assert_eq!(req["scope"], "mail.send");
    assert_eq!(req["client_secret"], true);
    assert_eq!(req["basic_auth"], false);
}

#[tokio::test]
async fn client_credentials_with_a_basic_auth_header() {
    let server = TokenServer::start(3600);
    let source =
        ClientCredentials::generic(server.token_url(), "app-1", secret("s3cret:vålue"), "x")
            .client_auth(ClientAuth::BasicHeader)
            .build()
            .unwrap();
    source.fetch().await.unwrap();
    let req = &server.stats().await["recent"][0];
    assert_eq!(req["basic_auth"], true);
    assert_eq!(req["client_secret"], false);
}

#[tokio::test]
async fn microsoft_client_credentials_with_the_authority_override() {
    let server = TokenServer::start(3600);
    let source = microsoft(&server);
    assert_eq!(
        source.token_url(),
        format!(
            "http://127.0.0.1:{}/contoso.onmicrosoft.com/oauth2/v2.0/token",
            server.port
        )
    );
    let token = source.fetch().await.unwrap();
    assert_eq!(token.scope(), Some(MICROSOFT_SMTP_SCOPE));
    let claims = claims(token.secret().expose_secret());
    assert_eq!(claims["aud"], "https://outlook.office365.com");

    let graph = ClientCredentials::microsoft_graph("contoso.onmicrosoft.com", "app", secret("s"))
        .authority(format!("{}/", server.url()))
        .build()
        .unwrap();
    assert_eq!(
        graph.fetch().await.unwrap().scope(),
        Some(MICROSOFT_GRAPH_SCOPE)
    );

    let stats = server.stats().await;
    assert_eq!(
        stats["by_path"]["/contoso.onmicrosoft.com/oauth2/v2.0/token"],
        2
    );
    assert_eq!(stats["recent"][0]["scope"], MICROSOFT_SMTP_SCOPE);
    assert_eq!(
        stats["recent"][0]["client_id"],
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(stats["recent"][1]["scope"], MICROSOFT_GRAPH_SCOPE);
}

/// Token lifetime 5 s; a caller keeps asking for 3 lifetimes. Every token it gets is valid
/// (checked against the JWT's own `exp`), and the server sees about one request per lifetime:
/// with the 1 s refresh margin of a 5 s lifetime, a refresh every ~4 s, so 4 requests in 15 s
/// (at most lifetimes + 1).
#[tokio::test]
async fn short_lifetime_one_request_per_lifetime_and_never_expired() {
    const LIFETIME: u64 = 5;
    const LIFETIMES: u64 = 3;
    let server = TokenServer::start(LIFETIME);
    let cache = TokenCache::new(generic(&server, "mail.send"));
    let start = Instant::now();
    let mut calls = 0u64;
    let mut distinct = std::collections::HashSet::new();
    while start.elapsed() < Duration::from_secs(LIFETIME * LIFETIMES) {
        let token = cache.get().await.unwrap();
        calls += 1;
        assert!(!token.is_expired());
        let left = token.remaining().unwrap();
        assert!(
            left >= Duration::from_millis(900),
            "handed out with {left:?} left"
        );
        let exp = claims(token.secret().expose_secret())["exp"]
            .as_f64()
            .unwrap();
        assert!(
            exp > now_secs(),
            "the server's exp has passed: token expired"
        );
        distinct.insert(token.secret().expose_secret().to_string());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests = server.token_requests().await;
    eprintln!(
        "lifetime {LIFETIME} s x {LIFETIMES}: {calls} cache calls, {requests} token requests \
         ({:.2} per lifetime)",
        requests as f64 / LIFETIMES as f64
    );
    assert!(
        (LIFETIMES..=LIFETIMES + 1).contains(&requests),
        "expected {LIFETIMES}..={} token requests, the server counted {requests}",
        LIFETIMES + 1
    );
    assert_eq!(distinct.len() as u64, requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_callers_on_a_cold_cache_cause_one_request() {
    let server = TokenServer::start(3600);
    // A slow token endpoint makes every caller arrive while the one request is in flight.
    server.configure(json!({"delay_ms": 300})).await;
    let cache = TokenCache::new(generic(&server, "mail.send"));
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let cache = cache.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                cache.get().await.unwrap()
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    assert!(tokens.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    assert_eq!(server.token_requests().await, 1);
}

#[tokio::test]
async fn shared_caches_for_the_same_account() {
    let server = TokenServer::start(3600);
    let a = TokenCache::shared(microsoft(&server));
    let b = TokenCache::shared(microsoft(&server));
    assert!(a.same_cache(&b));
    let ta = a.get().await.unwrap();
    let tb = b.get().await.unwrap();
    assert!(Arc::ptr_eq(&ta, &tb));
    // A different scope is a different cache.
    let graph = TokenCache::shared(
        ClientCredentials::microsoft_graph(
            "contoso.onmicrosoft.com",
            "11111111-2222-3333-4444-555555555555",
            secret("s3cret-value"),
        )
        .authority(server.url())
        .build()
        .unwrap(),
    );
    assert!(!graph.same_cache(&a));
    graph.get().await.unwrap();
    assert_eq!(server.token_requests().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalidate_refreshes_once() {
    let server = TokenServer::start(3600);
    let cache = TokenCache::new(generic(&server, "mail.send"));
    let first = cache.get().await.unwrap();
    assert_eq!(server.token_requests().await, 1);

    // The server rejected `first`: one refresh.
    assert!(cache.invalidate(&first));
    let second = cache.get().await.unwrap();
    assert_ne!(
        first.secret().expose_secret(),
        second.secret().expose_secret()
    );
    assert_eq!(server.token_requests().await, 2);

    // A late rejection of the old token: nothing happens.
    assert!(!cache.invalidate(&first));
    let again = cache.get().await.unwrap();
    assert!(Arc::ptr_eq(&second, &again));
    assert_eq!(server.token_requests().await, 2);

    // 16 senders all see `second` rejected at once: one refresh between them.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            let rejected = Arc::clone(&second);
            tokio::spawn(async move {
                cache.invalidate(&rejected);
                cache.get().await.unwrap()
            })
        })
        .collect();
    let mut thirds = Vec::new();
    for t in tasks {
        thirds.push(t.await.unwrap());
    }
    assert!(thirds.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    assert_eq!(server.token_requests().await, 3);
}

#[tokio::test]
async fn rotated_refresh_token_is_used_and_persisted() {
    let server = TokenServer::start(3600);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("refresh-token");
    let build = |configured: &str| {
        RefreshTokenGrant::microsoft("contoso.onmicrosoft.com", "app-1")
            .authority(server.url())
            .scope("https://outlook.office.com/SMTP.Send offline_access")
            .refresh_token(secret(configured))
            .refresh_token_file(&file)
            .account("bob@example.test")
            .build()
            .unwrap()
    };
    let source = build("initial-refresh-token");
    assert!(!file.exists());
    let cache = TokenCache::new(source);
    let t1 = cache.get().await.unwrap();
    assert_eq!(
        claims(t1.secret().expose_secret())["sub"],
        "alice@example.test"
    );
    let rotated1 = std::fs::read_to_string(&file).unwrap();
    let rotated1 = rotated1.trim();
    assert!(!rotated1.is_empty());
    assert_ne!(rotated1, "initial-refresh-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // The next refresh must use the rotated token: the server refuses a used one.
    cache.invalidate(&t1);
    cache.get().await.unwrap();
    let rotated2 = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_ne!(rotated2, rotated1);

    // A restarted process: the file wins over the (stale) configured token.
    let restarted = TokenCache::new(build("initial-refresh-token"));
    restarted.get().await.unwrap();
    let rotated3 = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_ne!(rotated3, rotated2);

    let stats = server.stats().await;
    assert_eq!(stats["by_grant"]["refresh_token"], 3);
    assert_eq!(
        stats["recent"][0]["scope"],
        "https://outlook.office.com/SMTP.Send offline_access"
    );

    // Without the file, the stale configured token is refused: invalid_grant -> Auth.
    let stale = RefreshTokenGrant::builder(server.token_url(), "app-1")
        .refresh_token(secret("initial-refresh-token"))
        .build()
        .unwrap();
    let err = stale.fetch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.message().contains("re-consent"), "{err}");
    assert!(err.message().contains("AADSTS70008"), "{err}");
    assert_eq!(
        err.code(),
        Some(&ServerCode::Http {
            status: 400,
            provider_code: Some("invalid_grant".into())
        })
    );
    assert_eq!(err.exit_code(), 77);
}

#[tokio::test]
async fn refresh_token_kept_when_the_provider_does_not_rotate() {
    let server = TokenServer::start_with(3600, &["--no-rotate-refresh-tokens"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rt");
    // Google-like: a long-lived refresh token that is never rotated.
    let source = RefreshTokenGrant::builder(server.token_url(), "app.apps.googleusercontent.com")
        .client_secret(secret("GOCSPX-secret"))
        .refresh_token(secret("1//long-lived"))
        .refresh_token_file(&file)
        .build()
        .unwrap();
    source.fetch().await.unwrap();
    source.fetch().await.unwrap();
    assert!(!file.exists(), "nothing rotated, nothing written");
    let stats = server.stats().await;
    assert_eq!(stats["recent"][0]["client_secret"], true);
    assert_eq!(stats["recent"][0]["refresh_token"], true);
}

async fn fetch_err(source: &ClientCredentials) -> outbound::Error {
    source.fetch().await.unwrap_err()
}

#[tokio::test]
async fn server_faults_map_to_retryable_kinds() {
    let server = TokenServer::start(3600);
    let source = generic(&server, "mail.send");

    server.fault(json!({"mode": "500"})).await;
    let e = fetch_err(&source).await;
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert_eq!(e.http_status(), Some(500));
    assert!(e.is_retryable());

    server
        .fault(json!({"mode": "status", "status": 503, "body": "<html>Service Unavailable</html>"}))
        .await;
    let e = fetch_err(&source).await;
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(
        e.server_text().unwrap().contains("Service Unavailable"),
        "{e}"
    );

    server.fault(json!({"mode": "malformed"})).await;
    let e = fetch_err(&source).await;
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert_eq!(e.http_status(), Some(200));
    assert!(e.message().contains("JSON ends early"), "{e}");
    assert!(!format!("{e} {e:?}").contains("TRUNCATED-CANARY"));

    server.fault(json!({"mode": "no_token"})).await;
    let e = fetch_err(&source).await;
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains("no `access_token`"), "{e}");

    server.fault(json!({"mode": "html"})).await;
    let e = fetch_err(&source).await;
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.message().contains("not valid JSON"), "{e}");
    assert!(e.message().contains("text/html"), "{e}");

    // A transient failure, then the server recovers.
    server.fault(json!({"mode": "500", "times": 1})).await;
    let cache = TokenCache::new(generic(&server, "mail.send"));
    assert_eq!(cache.get().await.unwrap_err().kind(), ErrorKind::Transient);
    cache.get().await.unwrap();

    // Nothing listens: a network error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody = ClientCredentials::generic(
        format!("http://127.0.0.1:{port}/token"),
        "app",
        secret("s"),
        "",
    )
    .build()
    .unwrap();
    let e = nobody.fetch().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_times_out_within_the_configured_timeout() {
    let server = TokenServer::start(3600);
    server.fault(json!({"mode": "stall"})).await;
    let timeout = Duration::from_secs(2);
    let source = ClientCredentials::generic(server.token_url(), "app", secret("s3cret"), "x")
        .timeout(timeout)
        .build()
        .unwrap();
    let cache = TokenCache::new(source);
    let started = Instant::now();
    // Several callers, one (stalled) request, all time out together.
    let (a, b) = tokio::join!(cache.get(), cache.get());
    let took = started.elapsed();
    for e in [a.unwrap_err(), b.unwrap_err()] {
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(e.message().contains("did not answer within 2 s"), "{e}");
        assert!(e.is_retryable());
    }
    assert!(took >= timeout - Duration::from_millis(50), "{took:?}");
    assert!(took < timeout + Duration::from_millis(1500), "{took:?}");
    assert_eq!(server.token_requests().await, 1);
}

#[tokio::test]
async fn microsoft_error_bodies_become_clear_auth_and_config_errors() {
    let server = TokenServer::start(3600);
    // The same client credentials as `microsoft()`, configured as an operator does, from
    // Dify's variables, so the errors name them.
    let env: std::collections::HashMap<String, String> = [
        ("MAIL_TYPE", "smtp"),
        ("SMTP_SERVER", "smtp.office365.com"),
        ("SMTP_USERNAME", "mailer@contoso.com"),
        ("SMTP_AUTH_TYPE", "oauth2"),
        ("SMTP_TENANT_ID", "contoso.onmicrosoft.com"),
        ("SMTP_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("SMTP_CLIENT_SECRET", "s3cret-value"),
        ("MICROSOFT_OAUTH2_AUTHORITY", &server.url()),
        ("SMTP_TIMEOUT", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let source = outbound::config::Settings::from_env_source(&env)
        .unwrap()
        .unwrap()
        .token_cache()
        .unwrap()
        .unwrap();
    let cases: [(u16, &str, u64, &str, ErrorKind, &str); 5] = [
        (
            401,
            "invalid_client",
            7000215,
            AADSTS7000215,
            ErrorKind::Auth,
            "Value, not its Secret ID",
        ),
        (
            401,
            "invalid_client",
            7000222,
            AADSTS7000222,
            ErrorKind::Auth,
            "has expired",
        ),
        (
            400,
            "unauthorized_client",
            700016,
            AADSTS700016,
            ErrorKind::Config,
            "was not found in tenant",
        ),
        (
            400,
            "invalid_request",
            90002,
            AADSTS90002,
            ErrorKind::Config,
            "MICROSOFT_OAUTH2_AUTHORITY",
        ),
        (
            400,
            "invalid_scope",
            70011,
            AADSTS70011,
            ErrorKind::Config,
            "https://outlook.office365.com/.default",
        ),
    ];
    for (status, error, code, description, kind, hint) in cases {
        server
            .fault(json!({"mode": "error", "status": status,
                          "body": microsoft_error(error, code, description)}))
            .await;
        let e = source.get().await.unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.message().contains(&format!("AADSTS{code}")), "{e}");
        assert!(e.message().contains(hint), "{e}");
        assert_eq!(
            e.code(),
            Some(&ServerCode::Http {
                status,
                provider_code: Some(error.to_string())
            }),
            "{e}"
        );
        let text = e.server_text().unwrap();
        assert!(text.starts_with(&description[..40]), "{text}");
        assert!(text.contains("Trace ID: 0b5e3c2a"), "{text}");
        assert!(!text.contains('\r') && !text.contains('\n'));
        let shown = e.to_string();
        assert!(shown.contains(&format!("HTTP {status} {error}")), "{shown}");
        eprintln!("{shown}\n");
    }

    // The plain RFC 6749 shape (no AADSTS code) still maps by `error`.
    server
        .fault(
            json!({"mode": "error", "status": 401, "error": "invalid_client",
                      "error_description": "Client authentication failed."}),
        )
        .await;
    let e = source.get().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert_eq!(e.server_text(), Some("Client authentication failed."));
    assert_eq!(e.exit_code(), 77);
}
