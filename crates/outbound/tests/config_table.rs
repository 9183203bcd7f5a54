#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The settings table against what configuration does with it: a variable that is set is
//! never silently dropped. Either the configuration reads it (a setting's origin names it),
//! or a note names it and says what to do instead.

use std::collections::HashMap;

use outbound::config::{Origin, Settings};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether `var` was read into `settings` (or a member's).
fn reads(settings: &Settings, var: &str) -> bool {
    settings
        .values()
        .iter()
        .any(|s| s.origin == Origin::Env(var.to_string()))
        || settings.members().iter().any(|m| reads(m, var))
}

/// Every note of `settings` and of its members.
fn notes(settings: &Settings) -> Vec<String> {
    let mut out = settings.notes().to_vec();
    for m in settings.members() {
        out.extend(notes(m));
    }
    out
}

#[test]
fn mailer_dsn_with_smtp_variables_names_each_one_and_the_query_to_use() {
    let s = Settings::from_env_source(&env(&[
        ("MAILER_DSN", "smtp://user:pw@smtp.example.com:587"),
        ("SMTP_TLS_CA_FILE", "/etc/outbound/ca.pem"),
        ("SMTP_TIMEOUT", "5"),
        ("SMTP_PASSWORD", "not-this-one"),
    ]))
    .unwrap()
    .unwrap();
    let notes = s.notes().join("\n");
    assert!(
        notes.contains("SMTP_TLS_CA_FILE is set but MAILER_DSN is used; add `?ca_file=`"),
        "{notes}"
    );
    assert!(
        notes.contains("SMTP_TIMEOUT is set but MAILER_DSN is used; add `?timeout=`"),
        "{notes}"
    );
    // A value the DSN gives is named where it is; the values are never shown.
    assert!(
        notes.contains("SMTP_PASSWORD is set but not used: MAILER_DSN password gives the value"),
        "{notes}"
    );
    assert!(!notes.contains("not-this-one"), "{notes}");
    assert_eq!(s.unused_variable("ca_file"), Some("SMTP_TLS_CA_FILE"));
    assert_eq!(s.unused_variable("server"), None);

    // `--dsn` (or any named DSN source) is named the same way, and MAILER_DSN is unused then.
    let s = Settings::from_dsn_with_env(
        "smtp://smtp.example.com",
        "--dsn",
        &env(&[
            ("MAILER_DSN", "smtp://other.example.com"),
            ("SMTP_TIMEOUT", "5"),
        ]),
    )
    .unwrap();
    let notes = s.notes().join("\n");
    assert!(
        notes.contains("SMTP_TIMEOUT is set but --dsn is used; add `?timeout=`")
            && notes.contains("MAILER_DSN is set but not used: --dsn is given"),
        "{notes}"
    );
}

#[test]
fn a_variable_the_dsn_overrides_or_no_group_takes_is_named() {
    let s = Settings::from_env_source(&env(&[
        (
            "MAILER_DSN",
            "smtp://smtp.example.com?rate=5/s&from=app@example.com",
        ),
        ("MAIL_RATE", "10/s"),
        ("MAIL_DEFAULT_SEND_FROM", "other@example.com"),
        ("MAIL_FAILOVER_COOLDOWN", "30"),
    ]))
    .unwrap()
    .unwrap();
    let notes = s.notes().join("\n");
    assert!(
        notes.contains("MAIL_RATE is set but not used: MAILER_DSN query `rate` gives the value"),
        "{notes}"
    );
    assert!(
        notes.contains("MAIL_DEFAULT_SEND_FROM is set but not used: MAILER_DSN query `from`"),
        "{notes}"
    );
    assert!(
        notes.contains("MAIL_FAILOVER_COOLDOWN is set but not used")
            && notes.contains("failover(…)"),
        "{notes}"
    );
}

/// Every variable of the table, set beside configurations that do not all use it: each is
/// read or named in a note.
#[test]
fn no_variable_in_the_table_is_ever_silently_dropped() {
    let configurations: &[&[(&str, &str)]] = &[
        &[("MAILER_DSN", "smtp://smtp.example.com")],
        &[(
            "MAILER_DSN",
            "smtps://u:p@smtp.example.com?from=a@example.com&rate=1/s&retries=1",
        )],
        &[("MAILER_DSN", "file:///tmp/outbound-table-test")],
        &[("MAILER_DSN", "resend://re_key@default?timeout=5")],
        &[("MAILER_DSN", "graph://id:secret@contoso?from=a@example.com")],
        &[(
            "MAILER_DSN",
            "failover(smtp://a.example memory://)?rate=1/s",
        )],
        &[("MAIL_TYPE", "smtp")],
        &[("MAIL_TYPE", "file")],
        &[("MAIL_TYPE", "sendgrid")],
        &[("MAIL_TYPE", "graph")],
        &[("MAIL_TYPE", "memory")],
    ];
    let mut checked = 0;
    for config in configurations {
        for (var, _) in outbound::config::variables() {
            if ["MAILER_DSN", "MAIL_TYPE", "MAIL_MAX_SIZE"].contains(&var) {
                continue; // they choose the configuration, or the command line reads them
            }
            let mut pairs = config.to_vec();
            pairs.push((var, "1"));
            let s = Settings::from_env_source(&env(&pairs)).unwrap().unwrap();
            let notes = notes(&s);
            assert!(
                reads(&s, var) || notes.iter().any(|n| n.contains(var)),
                "{var} with {config:?} is neither read nor named: {notes:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked}");
}
