//! Writing to stdout and stderr without ever panicking (a closed pipe is not a crash), and
//! the JSON shapes shared by the commands.

use std::fmt::Display;
use std::io::Write;

use outbound::{MessageError, Receipt, ServerCode};
use serde_json::{json, Map, Value};

use crate::exit::Failure;

/// Writes `text` and a newline to stdout. Errors (a closed pipe) are ignored: there is no one
/// left to tell.
pub fn out(text: impl Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}").and_then(|_| stdout.flush());
}

/// Writes `outbound: <text>` to stderr.
pub fn err(text: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "outbound: {text}");
}

/// Prints one JSON value on one line of stdout.
pub fn json(value: &Value) {
    out(value);
}

/// The `error` object of a failure: kind, code (SMTP reply code or HTTP status, or null),
/// `enhanced` (SMTP) or `provider_code` (HTTP) when the server sent a code, message,
/// server_text, and the field it is about when known.
pub fn error_object(failure: &Failure) -> Value {
    let mut obj = Map::new();
    obj.insert("kind".into(), json!(failure.kind_str()));
    obj.insert("code".into(), Value::Null);
    match failure {
        Failure::Usage(msg) => {
            obj.insert("message".into(), json!(msg));
            obj.insert("server_text".into(), Value::Null);
            obj.insert("field".into(), Value::Null);
        }
        Failure::Error(err) => {
            match err.code() {
                Some(ServerCode::Smtp { code, enhanced }) => {
                    obj.insert("code".into(), json!(code));
                    obj.insert("enhanced".into(), json!(enhanced));
                }
                Some(ServerCode::Http {
                    status,
                    provider_code,
                }) => {
                    obj.insert("code".into(), json!(status));
                    obj.insert("provider_code".into(), json!(provider_code));
                }
                _ => {}
            }
            obj.insert("message".into(), json!(err.message()));
            obj.insert("server_text".into(), json!(err.server_text()));
            obj.insert(
                "field".into(),
                json!(message_error(err).and_then(|m| m.field())),
            );
            if let Some(wait) = err.retry_after() {
                obj.insert("retry_after_ms".into(), json!(wait.as_millis() as u64));
            }
        }
    }
    Value::Object(obj)
}

/// The `recipients` object of a receipt.
pub fn recipients_object(receipt: &Receipt) -> Value {
    let rejected: Vec<Value> = receipt
        .rejected
        .iter()
        .map(|r| {
            json!({
                "address": r.address,
                "code": r.code,
                "enhanced": r.enhanced,
                "text": r.text,
            })
        })
        .collect();
    json!({ "accepted": receipt.accepted, "rejected": rejected })
}

/// The [`MessageError`] behind an error, when it came from message validation.
pub fn message_error(err: &outbound::Error) -> Option<&MessageError> {
    std::error::Error::source(err).and_then(|s| s.downcast_ref::<MessageError>())
}

/// What to do about an invalid message, in terms of this command's flags.
pub fn flag_hint(err: &outbound::Error) -> Option<String> {
    let m = message_error(err)?;
    let hint = match m {
        MessageError::NoRecipient => "add --to, --cc or --bcc (or -t with --raw)",
        MessageError::NoSender => {
            "add --from, or configure a default sender (MAIL_DEFAULT_SEND_FROM, or ?from= in \
             the DSN)"
        }
        MessageError::NoBody => "add --text, --text-file, --html or --html-file",
        MessageError::ReservedHeader { .. } => {
            "use --from, --to, --cc, --bcc, --reply-to or --subject instead of --header"
        }
        MessageError::InvalidAddress { field, value, .. }
            if value.contains([',', ';']) && !value.contains('"') =>
        {
            let flag = field.replace('_', "-");
            return Some(format!(
                "give one address per flag: --{flag} a@example.com --{flag} b@example.com"
            ));
        }
        _ => return None,
    };
    Some(hint.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use outbound::{Error, ErrorKind};

    use super::*;

    #[test]
    fn smtp_errors_carry_code_and_enhanced() {
        let err = Error::new(ErrorKind::Auth, "authentication failed")
            .with_code(ServerCode::Smtp {
                code: 535,
                enhanced: Some("5.7.8".into()),
            })
            .with_server_text("Authentication unsuccessful");
        let v = error_object(&Failure::Error(err));
        assert_eq!(v["kind"], "auth");
        assert_eq!(v["code"], 535);
        assert_eq!(v["enhanced"], "5.7.8");
        assert_eq!(v["message"], "authentication failed");
        assert_eq!(v["server_text"], "Authentication unsuccessful");
        assert!(v.get("provider_code").is_none());
    }

    #[test]
    fn http_errors_carry_status_and_provider_code() {
        let err = Error::new(ErrorKind::Transient, "rate limited")
            .with_code(ServerCode::Http {
                status: 429,
                provider_code: Some("rate_limit_exceeded".into()),
            })
            .with_retry_after(Duration::from_secs(2));
        let v = error_object(&Failure::Error(err));
        assert_eq!(v["kind"], "transient");
        assert_eq!(v["code"], 429);
        assert_eq!(v["provider_code"], "rate_limit_exceeded");
        assert_eq!(v["retry_after_ms"], 2000);
        assert!(v["server_text"].is_null());
        assert!(v.get("enhanced").is_none());
    }

    #[test]
    fn message_errors_name_their_field_and_flag() {
        let err: Error = MessageError::NoSender.into();
        assert_eq!(error_object(&Failure::Error(err))["field"], "from");
        let err: Error = MessageError::NoBody.into();
        assert!(flag_hint(&err).is_some_and(|h| h.contains("--text")));
        let err: Error = MessageError::InvalidAddress {
            field: "reply_to".into(),
            value: "a@example.com, b@example.com".into(),
            reason: "whitespace".into(),
        }
        .into();
        assert!(flag_hint(&err).is_some_and(|h| h.contains("--reply-to a@example.com")));
        let v = error_object(&Failure::Usage("bad flag".into()));
        assert_eq!(v["kind"], "usage");
        assert!(v["code"].is_null());
    }
}
