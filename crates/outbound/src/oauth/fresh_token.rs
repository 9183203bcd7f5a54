//! Running a request with an OAuth2 access token, and once more with a fresh one when the
//! server rejects it: one policy for SMTP (XOAUTH2, OAUTHBEARER) and HTTP providers (Graph).
//!
//! Why exactly once: a rejection usually means the token expired or was revoked early, which
//! a new token fixes; a second rejection means the account or its permissions are the
//! problem, and more attempts would only hammer the token endpoint. A source that hands back
//! the same token (a static token) is not retried at all.

use std::future::Future;

use secrecy::{ExposeSecret, SecretString};

use super::AccessTokenSource;
use crate::Error;

/// How one attempt with a token failed.
pub(crate) enum Attempt<T> {
    /// The server rejected the token; a fresh one may succeed. The result to report when no
    /// retry follows: an error (SMTP's `535`), or a value the caller turns into one (Graph's
    /// 401 response).
    Rejected(Result<T, Error>),
    /// Any other failure: a new token would not help.
    Failed(Error),
}

impl<T> From<Error> for Attempt<T> {
    fn from(error: Error) -> Self {
        Attempt::Failed(error)
    }
}

/// A token from `tokens`; a failure names what it was for (`purpose`, e.g.
/// `alice@example.com (to authenticate to smtp.example.com:587)`).
pub(crate) async fn current_token<S>(
    tokens: &S,
    purpose: impl FnOnce() -> String,
) -> Result<SecretString, Error>
where
    S: AccessTokenSource + ?Sized,
{
    tokens.access_token().await.map_err(|e| {
        Error::in_context(
            &format!("cannot get an OAuth2 access token for {}", purpose()),
            e,
        )
    })
}

/// Runs `attempt` with `first` (a token the caller just got from `tokens`); when the server
/// rejects it, tells `tokens` to invalidate it, asks for a new one and, if that differs, runs
/// `attempt` once more with it. A token rejected on the second attempt is invalidated too.
pub(crate) async fn with_fresh_token<S, T, F, Fut>(
    tokens: &S,
    first: SecretString,
    mut attempt: F,
) -> Result<T, Error>
where
    S: AccessTokenSource + ?Sized,
    F: FnMut(SecretString) -> Fut,
    Fut: Future<Output = Result<T, Attempt<T>>>,
{
    let rejected = match attempt(first.clone()).await {
        Ok(done) => return Ok(done),
        Err(Attempt::Failed(e)) => return Err(e),
        Err(Attempt::Rejected(outcome)) => outcome,
    };
    tokens.invalidate(&first);
    let fresh = match tokens.access_token().await {
        Ok(t) => t,
        Err(e) => return Err(after_rejection(rejected.err().as_ref(), e)),
    };
    if fresh.expose_secret() == first.expose_secret() {
        tracing::debug!("the token source has no other token (a static token); not retrying");
        return rejected;
    }
    match attempt(fresh.clone()).await {
        Ok(done) => Ok(done),
        Err(Attempt::Failed(e)) => Err(e),
        Err(Attempt::Rejected(outcome)) => {
            tokens.invalidate(&fresh);
            outcome
        }
    }
}

/// The server rejected a token (`rejection`, when it is an error) and no new one could be
/// obtained (`fetch`): the token endpoint's error, which says what to fix, with the rejection
/// mentioned.
fn after_rejection(rejection: Option<&Error>, fetch: Error) -> Error {
    let Some(rejection) = rejection else {
        return fetch;
    };
    let context = format!(
        "{} ({}), and a new token could not be obtained",
        rejection.message(),
        rejection
            .server_text()
            .unwrap_or("the server rejected the token"),
    );
    Error::in_context(&context, fetch)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::ErrorKind;

    /// Hands out its tokens in order, moving on when the current one is invalidated; fails
    /// when it has none left.
    #[derive(Debug)]
    struct Tokens {
        left: Mutex<Vec<&'static str>>,
        invalidated: Mutex<Vec<String>>,
    }

    impl Tokens {
        fn new(tokens: &[&'static str]) -> Self {
            Tokens {
                left: Mutex::new(tokens.to_vec()),
                invalidated: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait::async_trait]
    impl AccessTokenSource for Tokens {
        async fn access_token(&self) -> Result<SecretString, Error> {
            match self.left.lock().unwrap().first() {
                Some(t) => Ok(SecretString::from(*t)),
                None => {
                    Err(Error::new(ErrorKind::Auth, "invalid_client")
                        .with_server_text("AADSTS7000215"))
                }
            }
        }
        fn invalidate(&self, token: &SecretString) {
            self.invalidated
                .lock()
                .unwrap()
                .push(token.expose_secret().to_string());
            let mut left = self.left.lock().unwrap();
            if left.first() == Some(&token.expose_secret()) && left.len() > 1 {
                left.remove(0);
            }
        }
    }

    fn rejected() -> Error {
        Error::new(ErrorKind::Auth, "authentication failed").with_server_text("535 5.7.8 no")
    }

    #[tokio::test]
    async fn a_rejected_token_is_retried_once_with_a_new_one() {
        let tokens = Tokens::new(&["one", "two", "three"]);
        let mut seen = Vec::new();
        let err = with_fresh_token(&tokens, SecretString::from("one"), |t| {
            seen.push(t.expose_secret().to_string());
            async { Err::<(), _>(Attempt::Rejected(Err(rejected()))) }
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert_eq!(seen, ["one", "two"], "one retry, not more");
        assert_eq!(*tokens.invalidated.lock().unwrap(), ["one", "two"]);

        let ok = with_fresh_token(&Tokens::new(&["a", "b"]), SecretString::from("a"), |t| {
            let accepted = t.expose_secret() == "b";
            async move {
                if accepted {
                    Ok(7)
                } else {
                    Err(Attempt::Rejected(Ok(401)))
                }
            }
        })
        .await;
        assert_eq!(ok.unwrap(), 7);
    }

    #[tokio::test]
    async fn the_same_token_again_or_another_failure_is_not_retried() {
        let tokens = Tokens::new(&["static"]);
        let mut calls = 0;
        let outcome = with_fresh_token(&tokens, SecretString::from("static"), |_| {
            calls += 1;
            async { Err(Attempt::Rejected(Ok("the 401 response"))) }
        })
        .await;
        assert_eq!(outcome.unwrap(), "the 401 response");
        assert_eq!(calls, 1);

        let mut calls = 0;
        let err = with_fresh_token(&Tokens::new(&["a", "b"]), SecretString::from("a"), |_| {
            calls += 1;
            async { Err::<(), _>(Attempt::Failed(Error::new(ErrorKind::Network, "reset"))) }
        })
        .await
        .unwrap_err();
        assert_eq!((err.kind(), calls), (ErrorKind::Network, 1));
    }

    #[tokio::test]
    async fn no_new_token_reports_the_token_endpoint_error_with_the_rejection() {
        let tokens = Tokens::new(&["only"]);
        tokens.left.lock().unwrap().clear();
        let err = with_fresh_token(&tokens, SecretString::from("only"), |_| async {
            Err::<(), _>(Attempt::Rejected(Err(rejected())))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert_eq!(
            err.message(),
            "authentication failed (535 5.7.8 no), and a new token could not be obtained: \
             invalid_client"
        );
        assert_eq!(err.server_text(), Some("AADSTS7000215"));

        let err = current_token(&tokens, || "alice (to authenticate to mx:587)".into())
            .await
            .unwrap_err();
        assert_eq!(
            err.message(),
            "cannot get an OAuth2 access token for alice (to authenticate to mx:587): \
             invalid_client"
        );
    }
}
