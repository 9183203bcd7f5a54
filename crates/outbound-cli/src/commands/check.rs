//! `outbound check`: builds the configured transport and calls `verify()` (connect,
//! authenticate or check the API key; send nothing), and says whether the shared limits
//! (`MAIL_LIMITS_URL`, `?limits=`) are reachable.

use outbound::config::{Origin, Settings};
use outbound::smtp::TlsMode;
use outbound::Error;
use serde_json::json;

use crate::cli::CheckArgs;
use crate::exit::{self, Failure};
use crate::load::{self, Source};
use crate::output;

#[derive(Debug, Default)]
struct Context {
    transport: Option<&'static str>,
    description: Option<String>,
    notes: Vec<String>,
    /// For a group: each member's outcome.
    members: Vec<serde_json::Value>,
    /// The shared limits: each Redis and whether it answered.
    limits: Vec<serde_json::Value>,
}

pub async fn run(args: CheckArgs) -> u8 {
    let mut ctx = Context::default();
    let result = check(args.dsn.dsn.as_deref(), &mut ctx).await;
    match (result, args.json) {
        (Ok(()), true) => {
            output::json(&json!({
                "status": "ok",
                "transport": ctx.transport,
                "description": ctx.description,
                "notes": ctx.notes,
                "members": ctx.members,
                "limits": ctx.limits,
            }));
            exit::OK
        }
        (Ok(()), false) => {
            output::out(format_args!(
                "OK {}",
                ctx.description.as_deref().unwrap_or("")
            ));
            exit::OK
        }
        (Err(failure), true) => {
            output::json(&json!({
                "status": "failed",
                "transport": ctx.transport,
                "description": ctx.description,
                "notes": ctx.notes,
                "members": ctx.members,
                "limits": ctx.limits,
                "error": output::error_object(&failure),
                "exit_code": failure.code(),
            }));
            failure.code()
        }
        (Err(failure), false) => {
            match &ctx.description {
                Some(d) => output::err(format_args!("check failed for {d}: {failure}")),
                None => output::err(&failure),
            }
            if failure.error().map(Error::kind) == Some(outbound::ErrorKind::Config) {
                output::err(
                    "run `outbound config` to see the configuration and where it came from",
                );
            }
            failure.code()
        }
    }
}

async fn check(dsn: Option<&str>, ctx: &mut Context) -> Result<(), Failure> {
    if Source::detect(dsn) == Source::Fallback {
        return Err(Error::config(
            "no transport configured: set MAILER_DSN (e.g. smtp://user:pass@host:587), or \
             MAIL_TYPE and its variables; until then `outbound send` writes messages to ./outbox",
        )
        .into());
    }
    let loaded = load::load(dsn)?;
    ctx.notes = loaded.notes();
    for note in &ctx.notes {
        output::err(format_args!("note: {note}"));
    }
    for warning in tls_port_warnings(&loaded.settings) {
        output::err(format_args!("warning: {warning}"));
        ctx.notes.push(warning);
    }
    let transport = loaded.build()?;
    ctx.transport = Some(transport.kind());
    ctx.description = Some(transport.describe());
    // Before the transport: with the shared limits unreachable, verify() itself would fall
    // back or wait, and the operator should read why first.
    let limits = check_limits(&loaded.settings, ctx).await;
    tracing::debug!(transport = %transport.describe(), "verifying");
    if loaded.settings.group().is_none() {
        let result = transport.verify().await;
        transport.close().await;
        result?;
        return limits;
    }
    // A group: every member is checked on its own, so a dead secondary does not hide behind a
    // working primary.
    let mut first_failure = None;
    // The transports themselves: a nested group is checked through its members.
    let members: Vec<_> = load::members(&loaded.settings)
        .into_iter()
        .filter(|(_, m)| m.group().is_none())
        .collect();
    let total = members.len();
    for (label, member) in members {
        let built = member.build();
        let description = built.as_ref().map(|t| t.describe()).ok();
        let result = match built {
            Ok(t) => {
                let r = t.verify().await;
                t.close().await;
                r
            }
            Err(e) => Err(e),
        };
        let shown = description.as_deref().unwrap_or(member.kind());
        match &result {
            Ok(()) => output::err(format_args!("member {label}: OK {shown}")),
            Err(e) => output::err(format_args!("member {label}: FAILED {shown}: {e}")),
        }
        let failure = result.err().map(Failure::Error);
        ctx.members.push(json!({
            "member": label,
            "description": description,
            "status": if failure.is_some() { "failed" } else { "ok" },
            "error": failure.as_ref().map(output::error_object),
        }));
        if first_failure.is_none() {
            first_failure = failure;
        }
    }
    match first_failure {
        None => limits,
        Some(failure) => {
            let failed = ctx
                .members
                .iter()
                .filter(|m| m["status"] == "failed")
                .count();
            output::err(format_args!("{} of {total} members work", total - failed));
            Err(failure)
        }
    }
}

/// Pings every Redis the settings (and a group's members) keep shared limits in; the first
/// that does not answer is the failure (exit 75), after all were tried.
async fn check_limits(
    settings: &outbound::config::Settings,
    ctx: &mut Context,
) -> Result<(), Failure> {
    let mut all = vec![settings];
    all.extend(load::members(settings).into_iter().map(|(_, m)| m));
    let mut seen = Vec::new();
    let mut first_failure = None;
    for s in all {
        let limits = match s.shared_limits() {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                first_failure.get_or_insert(Failure::Error(e));
                continue;
            }
        };
        let shown = limits.describe();
        if seen.contains(&shown) {
            continue;
        }
        seen.push(shown.clone());
        match limits.ping().await {
            Ok(took) => {
                output::err(format_args!(
                    "shared limits: reachable, {shown}, PING {:.1} ms",
                    took.as_secs_f64() * 1000.0
                ));
                ctx.limits.push(json!({
                    "limits": shown,
                    "status": "ok",
                    "ping_ms": took.as_secs_f64() * 1000.0,
                }));
            }
            Err(e) => {
                let fallback = match limits.fail_policy() {
                    outbound::limits::FailPolicy::Local => {
                        "sends fall back to per-process limits (MAIL_LIMITS_FAIL=local)"
                    }
                    outbound::limits::FailPolicy::Wait => {
                        "sends wait for it, then fail (MAIL_LIMITS_FAIL=wait)"
                    }
                };
                output::err(format_args!("shared limits: UNREACHABLE: {e}; {fallback}"));
                let failure = Failure::Error(e);
                ctx.limits.push(json!({
                    "limits": shown,
                    "status": "unreachable",
                    "error": output::error_object(&failure),
                }));
                first_failure.get_or_insert(failure);
            }
        }
    }
    match first_failure {
        None => Ok(()),
        Some(f) => Err(f),
    }
}

/// Warnings for an SMTP port that usually speaks the other TLS mode than the one configured:
/// 465 with STARTTLS or no TLS, 587 with implicit TLS (the connection would then wait for a
/// greeting that never comes, or get one where a TLS handshake belongs). For the transport and
/// each member of a group, naming the settings as they were given. `check` prints them before
/// connecting; `config` lists them among its problems.
pub(crate) fn tls_port_warnings(settings: &Settings) -> Vec<String> {
    let mut out: Vec<String> = tls_port_warning(settings).into_iter().collect();
    for (label, member) in load::members(settings) {
        out.extend(tls_port_warning(member).map(|w| format!("member {label}: {w}")));
    }
    out
}

fn tls_port_warning(s: &Settings) -> Option<String> {
    if s.kind() != "smtp" {
        return None;
    }
    // Without a port the mode's own default applies (465 implicit, 587 STARTTLS).
    let port = s.get("port")?;
    let number: u16 = port.value.expose().trim().parse().ok()?;
    let flag = |key: &str| {
        s.get(key).map(|v| {
            matches!(
                v.value.expose().trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on"
            )
        })
    };
    // The mode as config/smtp.rs decides it: `tls` (a DSN's scheme sets it), else Dify's flags.
    let tls = s.get("tls");
    let mode = match tls {
        Some(t) => t.value.expose().parse::<TlsMode>().ok()?,
        None => match (flag("use_tls"), flag("opportunistic_tls")) {
            (Some(true), Some(true)) => TlsMode::StartTls,
            (Some(true), _) => TlsMode::Implicit,
            _ => TlsMode::None,
        },
    };
    let (speaks, want, instead) = match (number, mode) {
        (465, TlsMode::Implicit) | (587, TlsMode::StartTls | TlsMode::Opportunistic) => {
            return None
        }
        (465, _) => ("implicit TLS", TlsMode::Implicit, "port 587 for STARTTLS"),
        (587, TlsMode::Implicit) => ("STARTTLS", TlsMode::StartTls, "port 465 for implicit TLS"),
        _ => return None,
    };
    let selects = match mode {
        TlsMode::Implicit => "implicit TLS",
        TlsMode::StartTls => "STARTTLS",
        TlsMode::Opportunistic => "opportunistic STARTTLS",
        _ => "no TLS",
    };
    let name = |key: &str, env: &str| match s.get(key) {
        Some(v) => v.origin.to_string(),
        None if matches!(s.kind_origin(), Origin::Env(_)) => env.to_string(),
        None => format!("setting `{key}`"),
    };
    let (by, fix) = match tls {
        Some(t) if matches!(t.origin, Origin::Dsn { .. }) => (
            t.origin.to_string(),
            match want {
                TlsMode::Implicit => "use an smtps:// DSN".to_string(),
                _ => "use an smtp:// DSN".to_string(),
            },
        ),
        Some(t) => (t.origin.to_string(), format!("set {} to {want}", t.origin)),
        None => {
            let (use_tls, opportunistic) = (
                name("use_tls", "SMTP_USE_TLS"),
                name("opportunistic_tls", "SMTP_OPPORTUNISTIC_TLS"),
            );
            (
                format!("{use_tls} with {opportunistic}"),
                format!(
                    "set {use_tls} to true and {opportunistic} to {}",
                    want == TlsMode::StartTls
                ),
            )
        }
    };
    Some(format!(
        "{} is {number}, which usually speaks {speaks}, but {by} selects {selects}: for \
         {speaks} {fix}, or use {instead}",
        port.origin
    ))
}
