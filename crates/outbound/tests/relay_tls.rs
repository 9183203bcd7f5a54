//! TLS: STARTTLS on the plain listener and the implicit-TLS listener, with a self-signed
//! certificate (rcgen); what STARTTLS forgets; plaintext pipelined after STARTTLS dropped;
//! bad certificate files refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod relay_support;

use std::sync::Arc;

use outbound::relay::RelayServer;
use relay_support::*;

#[tokio::test]
async fn starttls_then_auth_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("alice", "pw", &[])]);
    let (cert, key, root) = certificate(dir.path());
    let relay = Relay::start(|b| b.users_file(&users).tls_files(&cert, &key)).await;
    let mut c = relay.client().await;
    let ehlo = c.hello().await;
    assert!(ehlo.has_line("STARTTLS"));
    // Loopback: AUTH is offered before TLS too; what was said before STARTTLS is forgotten.
    assert_eq!(c.auth_plain("alice", "pw").await.code, 235);
    let mut c = c.start_tls(&root).await;
    let a = c.expect("MAIL FROM:<a@example.com>", 503).await;
    assert_eq!(a.text(), "5.5.1 Send EHLO or HELO first");
    let ehlo = c.expect("EHLO client.test", 250).await;
    assert!(!ehlo.has_line("STARTTLS"));
    assert_eq!(
        c.expect("STARTTLS", 503).await.text(),
        "5.5.1 TLS already active"
    );
    c.expect("MAIL FROM:<a@example.com>", 530).await;
    assert_eq!(c.auth_plain("alice", "pw").await.code, 235);
    let msg = message("a@example.com", "b@example.com", "starttls", "secret body");
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &msg)
            .await
            .code,
        250
    );
    let m = &relay.spool.messages()[0];
    assert!(m.envelope.tls);
    assert!(m.text().contains("with ESMTPSA id"));
    assert_eq!(m.client_bytes(), msg.as_bytes());
}

#[tokio::test]
async fn the_implicit_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, root) = certificate(dir.path());
    let relay = Relay::start(|b| {
        b.tls_files(&cert, &key)
            .listen_tls("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(relay.tls_addr.unwrap())
        .await
        .unwrap();
    let mut c = Client::over(tls_connect(Box::new(tcp), &root).await);
    let ehlo = c.hello().await;
    assert!(!ehlo.has_line("STARTTLS"), "{:?}", ehlo.lines);
    let msg = message("a@example.com", "b@example.com", "implicit", "x");
    assert_eq!(
        c.send_mail("a@example.com", &["b@example.com"], &msg)
            .await
            .code,
        250
    );
    assert!(relay.spool.messages()[0].envelope.tls);
    assert!(relay.spool.messages()[0].text().contains("with ESMTPS id"));
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, root) = certificate(dir.path());
    let mut relay = Relay::bind(|b| b.tls_files(&cert, &key)).await;
    let server = Arc::new(relay.server.take().unwrap());
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let session = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve_connection(theirs, remote("127.0.0.1"), false)
                .await
        })
    };
    let mut c = Client::over(Box::new(ours));
    c.hello().await;
    // CVE-2011-0411: a command injected in clear behind STARTTLS must not run under TLS.
    c.send("STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
        .await;
    assert_eq!(c.reply().await.code, 220);
    let stream = c.into_stream();
    let mut c = Client::over(tls_connect(stream, &root).await);
    c.expect("EHLO client.test", 250).await;
    let a = c.expect("RCPT TO:<b@example.com>", 503).await;
    assert_eq!(a.text(), "5.5.1 Need MAIL command");
    c.expect("QUIT", 221).await;
    session.await.unwrap();
}

#[tokio::test]
async fn starttls_out_of_place() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let relay = Relay::start(|b| b.tls_files(&cert, &key)).await;
    let mut c = relay.client().await;
    c.reply().await;
    assert_eq!(
        c.expect("STARTTLS", 503).await.text(),
        "5.5.1 Send EHLO first"
    );
    c.expect("EHLO client.test", 250).await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    assert_eq!(c.expect("STARTTLS", 503).await.status(), "5.5.1");
    // Without a certificate there is no STARTTLS at all.
    let plain = Relay::start(|b| b).await;
    let mut c = plain.client().await;
    c.hello().await;
    assert_eq!(c.expect("STARTTLS", 502).await.status(), "5.5.1");
}

#[tokio::test]
async fn a_failed_handshake_ends_only_that_session() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let relay = Relay::start(|b| {
        b.tls_files(&cert, &key)
            .listen_tls("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(relay.tls_addr.unwrap())
        .await
        .unwrap();
    let mut c = Client::over(Box::new(tcp));
    c.send("EHLO not-tls\r\n").await;
    assert!(c.is_closed().await);
    let mut c = relay.client().await;
    c.hello().await;
    c.send("STARTTLS\r\n").await;
    assert_eq!(c.reply().await.code, 220);
    c.send("this is not a TLS handshake\r\n").await;
    assert!(c.is_closed().await);
    // The relay still serves.
    let mut c = relay.client().await;
    c.hello().await;
}

#[tokio::test]
async fn bad_certificate_files_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file").unwrap();
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = certificate(other.path());
    for (c, k, setting) in [
        (&garbage, &key, "tls_cert"),
        (&cert, &garbage, "tls_key"),
        (&cert, &dir.path().join("missing.pem"), "tls_key"),
        (&cert, &other_key, "tls_key"),
    ] {
        let err = RelayServer::builder(Arc::new(SharedSpool(TestSpool::new())))
            .listen("127.0.0.1:0".parse().unwrap())
            .tls_files(c, k)
            .bind()
            .await
            .err()
            .expect("refused");
        assert_eq!(err.kind(), outbound::ErrorKind::Config, "{err}");
        assert_eq!(err.setting(), Some(setting), "{err}");
        assert!(!err.to_string().contains("PRIVATE KEY-----\n"), "{err}");
    }
}
