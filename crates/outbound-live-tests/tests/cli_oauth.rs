#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `outbound token`, and `send`/`check`/`config` with SMTP OAuth2, against the real token server
//! (`testenv/oauth/token-server.js`, a private instance per test) and, where mail is sent, the
//! real Postfix + Dovecot (which validates every token). Each run of `outbound` gets a clean
//! environment (only PATH and what the test sets). Canary values: the client secret and every
//! issued token (any JWT: they all start `eyJ0eXAi`) must never appear in any output, `-vvv`
//! logs included.
//!
//! Without the servers these tests panic ("test servers not running: run
//! testenv/smtp-servers.sh start"); they never skip.

use std::time::{Duration, Instant};

use assert_cmd::Command;
use outbound_testkit::oauth::{microsoft_error, TokenServer, AADSTS7000215, AADSTS90002};
use outbound_testkit::{unique, Maildir, TestEnv};
use serde_json::{json, Value};

const CLIENT_SECRET: &str = "canary-secret-cli-4f9e1a";
/// Every JWT the token server issues starts with this (`{"typ":"JWT"...`); the masked form
/// shows only `eyJ0eX`.
const JWT_PREFIX: &str = "eyJ0eXAi";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
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

    /// Panics if a secret or a token shows.
    fn assert_no_secrets(&self, what: &str) {
        let all = self.all();
        assert!(
            !all.contains(CLIENT_SECRET),
            "{what} leaked the secret:\n{all}"
        );
        assert!(!all.contains(JWT_PREFIX), "{what} leaked a token:\n{all}");
    }
}

/// `outbound` with a clean environment, in a temporary directory, with `vars` set.
fn outbound(dir: &tempfile::TempDir, vars: &[(String, String)], args: &[&str]) -> Run {
    let mut cmd = Command::new(outbound_live_tests::outbound_bin());
    cmd.current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.args(args).output().unwrap();
    Run {
        code: out.status.code().expect("exited with a code, not a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Dify's variables for SMTP with Microsoft client credentials from `server`.
fn smtp_oauth2(
    env: &TestEnv,
    server: &TokenServer,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut v = vars(&[
        ("MAIL_TYPE", "smtp"),
        ("SMTP_SERVER", &env.host()),
        ("SMTP_PORT", &env.port_submission().to_string()),
        ("SMTP_USE_TLS", "true"),
        ("SMTP_OPPORTUNISTIC_TLS", "true"),
        ("SMTP_TLS_CA_FILE", &env.ca_file().display().to_string()),
        ("SMTP_USERNAME", &env.user()),
        ("MAIL_DEFAULT_SEND_FROM", &env.user()),
        ("SMTP_AUTH_TYPE", "oauth2"),
        ("SMTP_CLIENT_ID", "outbound-cli-test"),
        ("SMTP_CLIENT_SECRET", CLIENT_SECRET),
        ("SMTP_TENANT_ID", "contoso"),
        ("MICROSOFT_OAUTH2_AUTHORITY", &server.url()),
    ]);
    for (k, val) in extra {
        v.retain(|(key, _)| key != k);
        v.push((k.to_string(), val.to_string()));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prints_the_token_masked_with_its_scope_and_expiry() {
    let env = TestEnv::load_file();
    let server = TokenServer::start(3600);
    let dir = tempfile::tempdir().unwrap();
    let v = smtp_oauth2(&env, &server, &[]);

    let r = outbound(&dir, &v, &["token"]);
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secrets("token");
    let line = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line: {}", r.stdout))
            .to_string()
    };
    let token = line("token:");
    assert!(
        token.contains("eyJ0eX…") && token.contains(" chars)"),
        "masked: {token}"
    );
    assert_eq!(
        line("scope:"),
        "scope:   https://outlook.office365.com/.default"
    );
    let expires = line("expires:");
    assert!(
        expires.contains(" UTC (in 60 min)") || expires.contains(" UTC (in 59 min)"),
        "{expires}"
    );
    assert!(line("source:").contains(
        "Microsoft client credentials for client `outbound-cli-test` in tenant `contoso`"
    ));

    let r = outbound(&dir, &v, &["token", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secrets("token --json");
    let j = r.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["transport"], "smtp");
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["scope"], "https://outlook.office365.com/.default");
    assert!(j["token"].as_str().unwrap().starts_with("eyJ0eX…"), "{j}");
    assert!(j["expires_at"].as_str().unwrap().ends_with('Z'), "{j}");
    let left = j["expires_in_secs"].as_u64().unwrap();
    assert!((3500..=3600).contains(&left), "{j}");

    let stats = server.stats().await;
    assert_eq!(stats["token_requests"], 2, "one request per run: {stats}");
    assert_eq!(stats["recent"][0]["path"], "/contoso/oauth2/v2.0/token");
    assert_eq!(stats["recent"][0]["grant_type"], "client_credentials");

    // Graph: the same app, Graph's scope.
    let graph = vars(&[
        ("MAIL_TYPE", "graph"),
        ("MAIL_DEFAULT_SEND_FROM", "mailer@contoso.com"),
        ("MICROSOFT_OAUTH2_CLIENT_ID", "outbound-cli-test"),
        ("MICROSOFT_OAUTH2_CLIENT_SECRET", CLIENT_SECRET),
        ("MICROSOFT_OAUTH2_TENANT_ID", "contoso"),
        ("MICROSOFT_OAUTH2_AUTHORITY", &server.url()),
    ]);
    let r = outbound(&dir, &graph, &["token", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secrets("graph token");
    assert_eq!(r.json()["scope"], "https://graph.microsoft.com/.default");
    assert_eq!(r.json()["transport"], "graph");

    // A DSN (--dsn), percent-encoded.
    let dsn = format!(
        "smtp://alice%40example.test@127.0.0.1:587?auth=oauth2&tenant=contoso\
         &client_id=outbound-cli-test&client_secret={}&authority={}",
        CLIENT_SECRET.replace('-', "%2D"),
        server.url()
    );
    let r = outbound(&dir, &[], &["token", "--dsn", &dsn]);
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secrets("token --dsn");

    // A static token: shown masked, expiry unknown.
    let static_token = "static-access-token-0123456789abcdef";
    let r = outbound(
        &dir,
        &smtp_oauth2(&env, &server, &[("SMTP_OAUTH2_ACCESS_TOKEN", static_token)]),
        &["token"],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains(static_token), "{}", r.all());
    assert!(
        r.stdout.contains("token:   static…def (36 chars)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("expires: unknown"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("note: SMTP_OAUTH2_ACCESS_TOKEN is set, so that static token is used"),
        "the other OAuth2 settings are reported as ignored: {}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_failures_exit_with_the_kind_and_the_providers_reason() {
    let env = TestEnv::load_file();
    let server = TokenServer::start(3600);
    let dir = tempfile::tempdir().unwrap();
    let v = smtp_oauth2(&env, &server, &[("SMTP_TIMEOUT", "2")]);

    // The provider refuses the secret: 77 with its reason (and the hint).
    server
        .fault(json!({"mode": "error", "status": 401,
                      "body": microsoft_error("invalid_client", 7000215, AADSTS7000215)}))
        .await;
    let r = outbound(&dir, &v, &["token"]);
    assert_eq!(r.code, 77, "{}", r.all());
    assert!(r.stderr.contains("AADSTS7000215"), "{}", r.stderr);
    r.assert_no_secrets("token (invalid client)");
    let r = outbound(&dir, &v, &["token", "--json"]);
    assert_eq!(r.code, 77, "{}", r.all());
    let j = r.json();
    assert_eq!(j["status"], "failed");
    assert_eq!(j["exit_code"], 77);
    assert_eq!(j["error"]["kind"], "auth");
    assert_eq!(j["error"]["code"], 401);
    assert!(
        j["error"]["server_text"]
            .as_str()
            .unwrap()
            .contains("AADSTS7000215"),
        "{j}"
    );

    // An unknown tenant is a configuration error: 78.
    server
        .fault(json!({"mode": "error", "status": 400,
                      "body": microsoft_error("invalid_request", 90002, AADSTS90002)}))
        .await;
    let r = outbound(&dir, &v, &["token", "--json"]);
    assert_eq!(r.code, 78, "{}", r.all());
    assert_eq!(r.json()["error"]["kind"], "config");

    // 500, malformed JSON, and no answer at all: 75, within SMTP_TIMEOUT (2 s) plus the
    // process's own start-up.
    for (fault, kind) in [
        (json!({"mode": "500"}), "transient"),
        (json!({"mode": "malformed"}), "transient"),
        (json!({"mode": "stall"}), "timeout"),
    ] {
        server.fault(fault.clone()).await;
        let r = outbound(&dir, &v, &["token", "--json"]);
        assert_eq!(r.code, 75, "{fault}: {}", r.all());
        assert_eq!(r.json()["error"]["kind"], kind, "{fault}: {}", r.all());
        assert!(
            r.took < Duration::from_millis(4000),
            "{fault}: took {:?}",
            r.took
        );
        r.assert_no_secrets(&format!("token ({fault})"));
        assert!(!r.all().contains("TRUNCATED-CANARY"), "{}", r.all());
        // And through the SMTP transport's send: the same kind, nothing sent. (`send` retries
        // transient failures by default since issue 9; one attempt is what is timed here.)
        let r = outbound(
            &dir,
            &v,
            &[
                "send",
                "--to",
                "bob@example.test",
                "--text",
                "x",
                "--json",
                "--retries",
                "0",
            ],
        );
        assert_eq!(r.code, 75, "{fault}: {}", r.all());
        assert_eq!(r.json()["error"]["kind"], kind, "{fault}: {}", r.all());
        assert!(r.took < Duration::from_millis(4000), "{:?}", r.took);
        r.assert_no_secrets(&format!("send ({fault})"));
    }
    server.clear_faults().await;

    // Transports without OAuth2: 78, saying so.
    for (what, v) in [
        (
            "basic",
            vars(&[
                ("MAIL_TYPE", "smtp"),
                ("SMTP_SERVER", "127.0.0.1"),
                ("SMTP_USERNAME", "u"),
                ("SMTP_PASSWORD", CLIENT_SECRET),
            ]),
        ),
        ("file", vars(&[("MAIL_TYPE", "file")])),
        ("none", vec![]),
    ] {
        let r = outbound(&dir, &v, &["token"]);
        assert_eq!(r.code, 78, "{what}: {}", r.all());
        assert!(
            r.stderr.contains("does not use OAuth2")
                || r.stderr.contains("no transport configured"),
            "{what}: {}",
            r.stderr
        );
        r.assert_no_secrets(what);
    }
}

/// A real login and delivery through the CLI; then every command that shows configuration,
/// tokens or logs, with the canary secret in the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_appear_in_config_token_check_send_or_logs() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(3600);
    let dir = tempfile::tempdir().unwrap();
    let v = smtp_oauth2(&env, &server, &[]);
    let id = unique("cli-oauth2");
    let subject = format!("cli oauth2 {id}");
    let send: Vec<&str> = vec![
        "send",
        "--to",
        "bob@example.test",
        "--subject",
        &subject,
        "--text",
        "sent by outbound with an OAuth2 token",
        "--header",
        "X-Test: cli-oauth2",
    ];
    let r = outbound(&dir, &v, &[&["-vvv"][..], &send[..]].concat());
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secrets("-vvv send");
    assert!(
        r.stderr.contains("AUTH XOAUTH2"),
        "the TRACE wire log shows the (redacted) AUTH line: {}",
        r.stderr
    );
    let delivered_id = r
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with('<'))
        .unwrap()
        .to_string();
    Maildir::new(env.maildir()).wait_for(&[delivered_id], Duration::from_secs(30));

    for args in [
        vec!["config"],
        vec!["config", "--json"],
        vec!["-vvv", "config"],
        vec!["-vvv", "token"],
        vec!["token", "--json"],
        vec!["-vvv", "check"],
        vec!["check", "--json"],
    ] {
        let r = outbound(&dir, &v, &args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
        r.assert_no_secrets(&format!("{args:?}"));
        if args == ["config"] {
            let line = r
                .stdout
                .lines()
                .find(|l| l.contains("SMTP_CLIENT_SECRET"))
                .unwrap_or_else(|| panic!("no client secret line: {}", r.stdout));
            assert!(line.contains("********"), "{line}");
        }
    }
}

/// Every token names another user, so Dovecot refuses it; the CLI's send tries once more with
/// a fresh token, then exits 77 with Dovecot's JSON reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_77_with_the_servers_json_when_the_token_stays_rejected() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(3600);
    server
        .configure(json!({"email": format!("mallory@{}", env.domain())}))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let v = smtp_oauth2(&env, &server, &[]);
    let send = ["send", "--to", "bob@example.test", "--text", "x"];

    let r = outbound(&dir, &v, &send);
    assert_eq!(r.code, 77, "{}", r.all());
    assert!(r.stderr.contains(r#""status":"401""#), "{}", r.stderr);
    r.assert_no_secrets("send (rejected)");

    let r = outbound(&dir, &v, &[&send[..], &["--json"][..]].concat());
    assert_eq!(r.code, 77, "{}", r.all());
    let j = r.json();
    assert_eq!(j["error"]["kind"], "auth", "{j}");
    assert_eq!(j["error"]["code"], 535, "{j}");
    assert!(
        j["error"]["server_text"]
            .as_str()
            .unwrap()
            .contains(r#""status":"401""#),
        "{j}"
    );
    r.assert_no_secrets("send --json (rejected)");
    assert_eq!(
        server.token_requests().await,
        4,
        "per run: the first token and one fresh one"
    );
}

/// The token endpoint answers 500 once, then recovers. `outbound send` reports nothing but
/// success: the 500 is temporary, the Retry layer tries again, the second attempt gets a token
/// and delivers. One copy, two attempts, two token requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_rides_out_a_token_endpoint_500_and_delivers_once() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(3600);
    server.fault(json!({"mode": "500", "times": 1})).await;
    let dir = tempfile::tempdir().unwrap();
    let v = smtp_oauth2(&env, &server, &[]);
    let r = outbound(
        &dir,
        &v,
        &[
            "-vvv",
            "send",
            "--to",
            "bob@example.test",
            "--text",
            "x",
            "--retries",
            "2",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_no_secrets("send after a token endpoint 500");
    let j = r.json();
    assert_eq!(j["status"], "sent", "{j}");
    let id = j["message_id"].as_str().unwrap().to_string();
    assert_eq!(j["attempts"], 2, "one failed attempt, one delivered: {j}");
    assert_eq!(server.token_requests().await, 2);
    let mut maildir = Maildir::new(env.maildir());
    maildir.wait_for(std::slice::from_ref(&id), Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(maildir.files_for(&id).len(), 1, "exactly one copy");
}

/// The token endpoint stays down: every attempt fails before anything reached the mail
/// server, so the outcome is a temporary failure that is safe to resend (exit 75), after
/// exactly 1 + retries token requests, and nothing was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reports_a_token_endpoint_that_stays_down_as_temporary_and_safe_to_resend() {
    let env = TestEnv::load();
    let server = TokenServer::start_trusted(3600);
    server.fault(json!({"mode": "500", "times": 100})).await;
    let dir = tempfile::tempdir().unwrap();
    let v = smtp_oauth2(&env, &server, &[]);
    let tag = unique("cli-oauth2-down");
    let r = outbound(
        &dir,
        &v,
        &[
            "send",
            "--to",
            "bob@example.test",
            "--text",
            "x",
            "--header",
            &format!("X-Test-Id: {tag}"),
            "--retries",
            "2",
            "--json",
        ],
    );
    assert_eq!(r.code, 75, "{}", r.all());
    r.assert_no_secrets("send with the token endpoint down");
    let j = r.json();
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error"]["kind"], "transient", "{j}");
    assert_eq!(j["resend_safe"], true, "{j}");
    assert_eq!(server.token_requests().await, 3, "one per attempt");
    std::thread::sleep(Duration::from_millis(500));
    let delivered = Maildir::new(env.maildir())
        .files()
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|text| text.contains(&tag)))
        .count();
    assert_eq!(delivered, 0, "nothing was delivered");
}
