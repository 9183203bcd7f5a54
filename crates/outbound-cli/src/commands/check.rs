//! `outbound check`: builds the configured transport and calls `verify()` (connect,
//! authenticate or check the API key; send nothing).

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
    let transport = loaded.build()?;
    ctx.transport = Some(transport.kind());
    ctx.description = Some(transport.describe());
    tracing::debug!(transport = %transport.describe(), "verifying");
    transport.verify().await?;
    Ok(())
}
