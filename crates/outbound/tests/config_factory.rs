//! The factory: Dify's environment variables, MAILER_DSN, and the seeds' config maps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use outbound::config::{Origin, Settings};
use outbound::{ErrorKind, Message};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn nothing_configured_is_none() {
    assert!(Settings::from_env_source(&env(&[])).unwrap().is_none());
    // Empty values count as unset, as in a Dify .env file.
    assert!(Settings::from_env_source(&env(&[("MAIL_TYPE", "")]))
        .unwrap()
        .is_none());
}

#[test]
fn unknown_mail_type_lists_supported_kinds() {
    let err = Settings::from_env_source(&env(&[("MAIL_TYPE", "smpt")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = err.to_string();
    assert!(text.contains("MAIL_TYPE"), "{text}");
    assert!(text.contains("smpt"), "{text}");
    for kind in outbound::supported_types() {
        assert!(text.contains(kind), "{text} should list {kind}");
    }
}

#[test]
fn mail_type_is_case_insensitive_and_supported_types_lists_file_and_memory() {
    let s = Settings::from_env_source(&env(&[("MAIL_TYPE", " File ")]))
        .unwrap()
        .unwrap();
    assert_eq!(s.kind(), "file");
    let types = outbound::supported_types();
    assert!(
        types.contains(&"file") && types.contains(&"memory"),
        "{types:?}"
    );
}

#[tokio::test]
async fn mail_type_file_writes_into_mail_file_dir_with_default_sender() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[
        ("MAIL_TYPE", "file"),
        ("MAIL_FILE_DIR", dir.path().to_str().unwrap()),
        ("MAIL_DEFAULT_SEND_FROM", "Dify <noreply@dify.example>"),
    ]);
    let settings = Settings::from_env_source(&e).unwrap().unwrap();
    assert_eq!(settings.kind_origin(), &Origin::Env("MAIL_TYPE".into()));
    assert_eq!(
        settings.get("dir").unwrap().origin,
        Origin::Env("MAIL_FILE_DIR".into())
    );
    let transport = settings.build().unwrap();
    let msg = Message::builder()
        .to("b@example.com")
        .text("x")
        .build()
        .unwrap();
    let receipt = transport.send(&msg).await.unwrap();
    let path = receipt.provider_id.unwrap();
    assert!(path.starts_with(dir.path().to_str().unwrap()), "{path}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.contains("From: \"Dify\" <noreply@dify.example>"),
        "{written}"
    );
}

#[test]
fn invalid_default_sender_names_the_variable() {
    let e = env(&[
        ("MAIL_TYPE", "memory"),
        ("MAIL_DEFAULT_SEND_FROM", "not an address"),
    ]);
    let err = Settings::from_env_source(&e)
        .unwrap()
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("MAIL_DEFAULT_SEND_FROM"), "{err}");
}

#[test]
fn mailer_dsn_wins_over_mail_type_and_says_so() {
    let e = env(&[
        (
            "MAILER_DSN",
            "file:///var/tmp/outbox-test?from=app@example.com",
        ),
        ("MAIL_TYPE", "memory"),
    ]);
    let s = Settings::from_env_source(&e).unwrap().unwrap();
    assert_eq!(s.kind(), "file");
    assert_eq!(s.get("dir").unwrap().value.expose(), "/var/tmp/outbox-test");
    assert_eq!(s.get("dir").unwrap().origin.to_string(), "MAILER_DSN path");
    assert_eq!(
        s.get("default_from").unwrap().value.expose(),
        "app@example.com"
    );
    assert!(
        s.notes()
            .iter()
            .any(|n| n.contains("MAIL_TYPE=memory is ignored")),
        "{:?}",
        s.notes()
    );
}

#[test]
fn mail_default_send_from_completes_a_dsn_without_sender() {
    let e = env(&[
        ("MAILER_DSN", "memory://"),
        ("MAIL_DEFAULT_SEND_FROM", "x@example.com"),
    ]);
    let s = Settings::from_env_source(&e).unwrap().unwrap();
    assert_eq!(
        s.get("default_from").unwrap().origin,
        Origin::Env("MAIL_DEFAULT_SEND_FROM".into())
    );
}

#[test]
fn bad_dsns_are_config_errors_that_say_what_is_valid() {
    for (dsn, mention) in [
        ("not a url", "not a valid URL"),
        ("gopher://host", "scheme `gopher` is not supported"),
        ("file:///tmp/x?colour=blue", "query parameter `colour`"),
    ] {
        let err = outbound::from_dsn(dsn).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains(mention), "{dsn}: {err}");
        assert!(err.to_string().contains("expected"), "{dsn}: {err}");
    }
}

#[test]
fn relative_file_dsn() {
    let s = Settings::from_dsn("file://./outbox").unwrap();
    assert_eq!(s.get("dir").unwrap().value.expose(), "./outbox");
}

#[test]
fn create_transport_takes_the_seeds_keys_and_refuses_unknown_ones() {
    let t = outbound::create_transport("memory", [("default_from", "a@example.com")]).unwrap();
    assert_eq!(t.kind(), "memory");
    let err = outbound::create_transport("file", [("dri", "/tmp")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("`dri`") && err.to_string().contains("dir"),
        "{err}"
    );
    let err = outbound::create_transport("carrier-pigeon", [("a", "b")]).unwrap_err();
    assert!(err.to_string().contains("carrier-pigeon"), "{err}");
}

#[test]
fn effective_settings_show_defaults_and_sources() {
    let s = Settings::from_env_source(&env(&[("MAIL_TYPE", "file")]))
        .unwrap()
        .unwrap();
    let eff = s.effective();
    let dir = eff.iter().find(|(k, _)| k.name == "dir").unwrap();
    let setting = dir.1.as_ref().unwrap();
    assert_eq!(setting.value.expose(), "./outbox");
    assert_eq!(setting.origin, Origin::Default);
    let from = eff.iter().find(|(k, _)| k.name == "default_from").unwrap();
    assert!(from.1.is_none());
}
