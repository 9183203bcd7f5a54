//! `outbound config`: the effective configuration, where each value came from, secrets
//! redacted, problems listed. Exits 78 when the configuration is invalid.

use outbound::config::{EnvSource, ProcessEnv, Setting, Settings};
use serde_json::{json, Value};

use crate::cli::ConfigArgs;
use crate::exit::{self, Failure};
use crate::load::{self, Loaded, Source};
use crate::output;

/// One row of the settings table.
struct Row {
    key: &'static str,
    value: Option<String>,
    secret: bool,
    origin: String,
    origin_type: &'static str,
    env: &'static [&'static str],
    help: &'static str,
    /// A variable that would set this key, set but not used by this configuration.
    unused_variable: Option<&'static str>,
}

pub fn run(args: ConfigArgs) -> u8 {
    let dsn = args.dsn.dsn.as_deref();
    match load::load(dsn) {
        Ok(loaded) => show(&loaded, args.json),
        Err(err) => unreadable(Source::detect(dsn), Failure::Error(err), args.json),
    }
}

/// One row per key of the settings table for the kind: the effective value and where it
/// came from, or where it would come from.
fn rows_of(settings: &Settings) -> Vec<Row> {
    settings
        .effective()
        .into_iter()
        .map(|(key, setting)| {
            let secret = key.secret || setting.as_ref().is_some_and(|s| s.value.is_secret());
            let unused_variable = settings.unused_variable(key.name);
            let (value, mut origin, origin_type) = match &setting {
                Some(s) => (
                    Some(display_value(s, secret)),
                    s.origin.to_string(),
                    load::origin_type(&s.origin),
                ),
                // Where it would come from, in the vocabulary of this configuration.
                None => match settings.where_to_set(key.name) {
                    Some(place) => (None, format!("unset ({place})"), "unset"),
                    None => (None, "unset".to_string(), "unset"),
                },
            };
            if let Some(var) = unused_variable {
                origin = format!("{origin}; {var} is set but not used");
            }
            Row {
                key: key.name,
                value,
                secret,
                origin,
                origin_type,
                env: key.env,
                help: key.help,
                unused_variable,
            }
        })
        .collect()
}

/// The value for display; a secret is never shown, even if it was stored as plain text.
fn display_value(setting: &Setting, secret: bool) -> String {
    if setting.key == "limits" {
        // A URL whose only secret is its password: show where it points.
        return outbound::limits::redact_url(setting.value.expose());
    }
    if secret && !setting.value.is_secret() {
        format!(
            "******** ({} chars)",
            setting.value.expose().chars().count()
        )
    } else {
        setting.value.redacted()
    }
}

fn rows_json(rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({
                "key": r.key,
                "value": r.value,
                "secret": r.secret,
                "origin": r.origin,
                "origin_type": r.origin_type,
                "env": r.env,
                "help": r.help,
                "unused_variable": r.unused_variable,
            })
        })
        .collect()
}

fn print_rows(rows: &[Row], indent: &str) {
    let key_width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|r| r.value.as_deref().unwrap_or("-").chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    for r in rows {
        output::out(format_args!(
            "{indent}  {:key_width$}  {:value_width$}  {}",
            r.key,
            r.value.as_deref().unwrap_or("-"),
            r.origin
        ));
    }
}

fn show(loaded: &Loaded, json: bool) -> u8 {
    let rows = rows_of(&loaded.settings);
    let members = load::members(&loaded.settings);
    let mut notes = loaded.notes();
    notes.extend(super::check::tls_port_warnings(&loaded.settings));
    let built = loaded.build();
    let (description, failure) = match built {
        Ok(t) => (Some(t.describe()), None),
        Err(e) => (None, Some(Failure::Error(e))),
    };
    let code = failure.as_ref().map_or(exit::OK, Failure::code);

    if json {
        let settings = rows_json(&rows);
        let members: Vec<Value> = members
            .iter()
            .map(|(label, m)| {
                json!({
                    "member": label,
                    "transport": m.kind(),
                    "transport_origin": m.kind_origin().to_string(),
                    "settings": rows_json(&rows_of(m)),
                })
            })
            .collect();
        output::json(&json!({
            "members": members,
            "configured": loaded.configured(),
            "source": loaded.source.as_str(),
            "transport": loaded.settings.kind(),
            "transport_origin": loaded.kind_origin(),
            "description": description,
            "settings": settings,
            "problems": notes,
            "valid": failure.is_none(),
            "error": failure.as_ref().map(output::error_object),
            "exit_code": code,
        }));
        return code;
    }

    if loaded.configured() {
        output::out(format_args!(
            "transport: {} (from {})",
            loaded.settings.kind(),
            loaded.kind_origin()
        ));
    } else {
        output::out(format_args!(
            "transport: none configured; `outbound send` writes .eml files with the `{}` \
             transport",
            loaded.settings.kind()
        ));
    }
    output::out("settings:");
    print_rows(&rows, "");
    for (label, m) in &members {
        output::out(format_args!(
            "member {label}: {} (from {})",
            m.kind(),
            m.kind_origin()
        ));
        print_rows(&rows_of(m), "  ");
    }
    if notes.is_empty() {
        output::out("problems: none");
    } else {
        output::out("problems:");
        for note in &notes {
            output::out(format_args!("  - {note}"));
        }
    }
    match (&failure, loaded.configured()) {
        (Some(f), _) => {
            output::out("status: invalid");
            output::err(f);
        }
        (None, true) => output::out(format_args!(
            "status: ok, {} (`outbound check` verifies it)",
            description.as_deref().unwrap_or("")
        )),
        (None, false) => output::out(format_args!(
            "status: not configured, messages go to {}; set MAILER_DSN, or MAIL_TYPE (one of: \
             {}) and its variables",
            description.as_deref().unwrap_or("./outbox"),
            outbound::supported_types().join(", ")
        )),
    }
    code
}

/// The configuration could not be read at all: show what is set and the error.
fn unreadable(source: Source, failure: Failure, json: bool) -> u8 {
    let code = failure.code();
    let mail_type = ProcessEnv.var("MAIL_TYPE");
    let dsn_set = ProcessEnv.var("MAILER_DSN").is_some();
    if json {
        output::json(&json!({
            "configured": source != Source::Fallback,
            "source": source.as_str(),
            "transport": null,
            "transport_origin": null,
            "description": null,
            "settings": [],
            "problems": [],
            "valid": false,
            "error": output::error_object(&failure),
            "exit_code": code,
        }));
        return code;
    }
    output::out("transport: unknown (the configuration could not be read)");
    if source == Source::Flag {
        output::out("--dsn: given (not shown: it may hold a secret)");
    }
    if dsn_set {
        output::out(format_args!(
            "MAILER_DSN: set (not shown: it may hold a secret){}",
            if source == Source::Flag {
                "; ignored because --dsn is given"
            } else {
                ""
            }
        ));
    }
    if let Some(kind) = mail_type {
        output::out(format_args!("MAIL_TYPE: {kind}"));
    }
    output::out("status: invalid");
    output::err(&failure);
    code
}
