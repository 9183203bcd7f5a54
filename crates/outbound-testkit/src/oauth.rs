//! For the OAuth2 tests (token endpoint, SMTP XOAUTH2/OAUTHBEARER, `outbound token`): starts a private instance of the real OAuth2
//! token server (`testenv/oauth/token-server.js`, npm oauth2-mock-server behind a wrapper) on
//! a free loopback port, and talks to its control endpoints (`/stats`, `/faults`, `/config`).
//!
//! Missing Node.js or npm packages make the test panic with the command that installs them:
//! these tests never skip quietly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

use crate::testenv::TestEnv;

/// A private token server (`node testenv/oauth/token-server.js`), stopped when dropped.
pub struct TokenServer {
    child: Child,
    _stdin: ChildStdin,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Its state directory (signing keys, `token-server.log`), removed when dropped.
    pub state: tempfile::TempDir,
    http: reqwest::Client,
    /// The public key this instance exported into Dovecot's key directory (removed on drop).
    exported_key: Option<PathBuf>,
}

fn testenv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testenv/oauth")
        .canonicalize()
        .expect("testenv/oauth exists in the repository")
}

const INSTALL_HINT: &str = "install it with `testenv/oauth/install.sh` (needs Node.js >= 20.19 \
     and npm; on Debian/Ubuntu `apt-get install nodejs npm`), or run `scripts/test`, which does";

impl TokenServer {
    /// Starts a token server issuing tokens that live `lifetime` seconds.
    pub fn start(lifetime: u64) -> TokenServer {
        Self::start_with(lifetime, &[])
    }

    /// Starts a private token server whose tokens the test environment's Dovecot accepts, for
    /// SMTP XOAUTH2/OAUTHBEARER tests that need their own lifetime, request counts, `/config`
    /// (e.g. a wrong `email` claim) or faults.
    ///
    /// Dovecot trusts one issuer (`OUTBOUND_TEST_OAUTH_ISSUER`, the shared instance's
    /// `http://localhost:8089`) and looks public keys up by kid in one directory
    /// (`$OUTBOUND_TESTENV_DIR/oauth/keys/default/RS256/<kid>`), where any number of keys can
    /// coexist. So this instance signs with that issuer name (`--issuer`) and writes its own
    /// public key there (`--export-key-dir`); the key file is removed when the server stops.
    ///
    /// Why a private instance rather than the shared one with its stats reset: a test then owns
    /// its token server outright. Counts are exact whatever runs in parallel (other test
    /// binaries use the shared instance too), a short lifetime, a wrong email claim or a fault
    /// cannot leak into another test, and no test has to be serialized behind a lock.
    pub fn start_trusted(lifetime: u64) -> TokenServer {
        let env = TestEnv::load_file();
        let issuer = env.get("OUTBOUND_TEST_OAUTH_ISSUER");
        let keys = TestEnv::state_dir().join("oauth/keys");
        if !keys.join("default/RS256").is_dir() {
            panic!(
                "test servers not running: run testenv/smtp-servers.sh start (no Dovecot key \
                 directory {})",
                keys.display()
            );
        }
        let keys_arg = keys.to_string_lossy().into_owned();
        let mut server = Self::start_with(
            lifetime,
            &["--issuer", issuer.as_str(), "--export-key-dir", &keys_arg],
        );
        let kid = std::fs::read_dir(server.state.path().join("keys/default/RS256"))
            .expect("the token server wrote its key")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .next()
            .expect("one key");
        let exported = keys.join("default/RS256").join(kid);
        assert!(
            exported.is_file(),
            "the token server exported its key to {}",
            exported.display()
        );
        server.exported_key = Some(exported);
        server
    }

    /// Starts a token server issuing tokens that live `lifetime` seconds, with extra
    /// `token-server.js` arguments (e.g. `--no-rotate-refresh-tokens`).
    pub fn start_with(lifetime: u64, extra: &[&str]) -> TokenServer {
        let dir = testenv_dir();
        match Command::new("node").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            _ => panic!(
                "the OAuth2 token server needs Node.js, which was not found on PATH: \
                 {INSTALL_HINT}"
            ),
        }
        if !dir
            .join("node_modules/oauth2-mock-server/package.json")
            .exists()
        {
            panic!(
                "the OAuth2 token server's npm packages are not installed in {}: {INSTALL_HINT}",
                dir.display()
            );
        }
        let state = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(state.path().join("token-server.log")).unwrap();
        let mut child = Command::new("node")
            .arg(dir.join("token-server.js"))
            .args(["--port", "0", "--lifetime", &lifetime.to_string()])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--exit-with-stdin")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node: {e}; {INSTALL_HINT}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            _ => {
                let _ = child.kill();
                let log = std::fs::read_to_string(state.path().join("token-server.log"))
                    .unwrap_or_default();
                panic!(
                    "the OAuth2 token server did not start (no READY line): {log}\n{INSTALL_HINT}"
                );
            }
        };
        TokenServer {
            child,
            _stdin: stdin,
            port,
            state,
            http: control_client(),
            exported_key: None,
        }
    }

    /// `http://127.0.0.1:PORT`, the authority for Microsoft-shaped sources.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The generic token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The server's stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("token-server.log")).unwrap_or_default()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url()));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `GET /stats`: what the server counted.
    pub async fn stats(&self) -> serde_json::Value {
        self.call(reqwest::Method::GET, "/stats", None).await
    }

    /// Token requests the server received (whatever it answered).
    pub async fn token_requests(&self) -> u64 {
        self.stats().await["token_requests"].as_u64().unwrap()
    }

    /// `POST /stats/reset`.
    pub async fn reset_stats(&self) {
        self.call(reqwest::Method::POST, "/stats/reset", None).await;
    }

    /// Sets a fault: `{"mode": "500"|"status"|"malformed"|"no_token"|"html"|"stall"|"error", ...}`.
    pub async fn fault(&self, fault: serde_json::Value) {
        self.call(reqwest::Method::POST, "/faults", Some(fault))
            .await;
    }

    /// Removes the fault set by [`fault`](TokenServer::fault).
    pub async fn clear_faults(&self) {
        self.fault(serde_json::json!({"mode": "none"})).await;
    }

    /// Changes `lifetime`, `email`, `delay_ms` or `rotate_refresh_tokens` at run time.
    pub async fn configure(&self, config: serde_json::Value) {
        self.call(reqwest::Method::POST, "/config", Some(config))
            .await;
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(key) = self.exported_key.take() {
            let _ = std::fs::remove_file(key);
        }
    }
}

/// A plain-HTTP client for the control endpoints. reqwest is built without a default
/// crypto provider (the library brings its own ring-based TLS config), so give it one too.
fn control_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap()
}

/// A JWT's claims (not verified).
pub fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A real Microsoft error body (shape as returned by login.microsoftonline.com).
pub fn microsoft_error(error: &str, code: u64, description: &str) -> serde_json::Value {
    let trace = "0b5e3c2a-1b2c-4d5e-8f90-123456789abc";
    let correlation = "5f6e7d8c-9b0a-4c1d-8e2f-abcdef012345";
    let timestamp = "2026-11-21 10:00:00Z";
    serde_json::json!({
        "error": error,
        "error_description": format!(
            "{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    })
}

/// The real `error_description` text of Microsoft Entra error AADSTS7000215.
pub const AADSTS7000215: &str = "AADSTS7000215: Invalid client secret provided. Ensure the secret \
     being sent in the request is the client secret value, not the client secret ID, for a secret \
     added to app '11111111-2222-3333-4444-555555555555'.";
/// The real `error_description` text of Microsoft Entra error AADSTS7000222.
pub const AADSTS7000222: &str = "AADSTS7000222: The provided client secret keys for app \
     '11111111-2222-3333-4444-555555555555' are expired. Visit the Azure portal to create new keys \
     for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for \
     added security: https://aka.ms/certCreds.";
/// The real `error_description` text of Microsoft Entra error AADSTS700016.
pub const AADSTS700016: &str = "AADSTS700016: Application with identifier \
     '11111111-2222-3333-4444-555555555555' was not found in the directory 'Contoso'. This can \
     happen if the application has not been installed by the administrator of the tenant or \
     consented to by any user in the tenant. You may have sent your authentication request to the \
     wrong tenant.";
/// The real `error_description` text of Microsoft Entra error AADSTS90002.
pub const AADSTS90002: &str =
    "AADSTS90002: Tenant 'contoso-typo.onmicrosoft.com' not found. Check \
     to make sure you have the correct tenant ID and are signing into the correct cloud. Check \
     with your subscription administrator, this may happen if there are no active subscriptions \
     for the tenant.";
/// The real `error_description` text of Microsoft Entra error AADSTS70011.
pub const AADSTS70011: &str = "AADSTS70011: The provided request must include a 'scope' input \
     parameter. The provided value for the input parameter 'scope' is not valid. The scope \
     https://outlook.office365.com/SMTP.Send is not valid.";
