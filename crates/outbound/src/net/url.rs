//! Endpoint URL policy: which URLs may carry secrets (API keys, client secrets, tokens), base
//! URLs and the paths joined onto them, and URLs as they may be shown in errors and logs.

use crate::Error;

/// Whether the URL's host is `localhost` or a loopback address.
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses an endpoint URL that will carry secrets (API keys, client secrets, tokens):
/// `https`, or plain `http` to loopback only (test servers); a host; no user info; no
/// fragment. `what` names the setting in errors (e.g. `` `base_url` ``).
pub(crate) fn parse_endpoint_url(raw: &str, what: &str) -> Result<url::Url, Error> {
    let raw = raw.trim();
    let url = url::Url::parse(raw).map_err(|e| {
        Error::config(format!(
            "{what} is `{raw}`, not a valid URL ({e}); expected e.g. `https://api.example.com`"
        ))
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(Error::config(format!(
                "{what} is `{raw}`: plain http would send secrets unencrypted; use https (http \
                 is allowed only for loopback test servers)"
            )))
        }
        other => {
            return Err(Error::config(format!(
                "{what} is `{raw}`: scheme `{other}` is not supported; expected https"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(format!("{what} is `{raw}`: it has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!(
            "{what} must not contain user info (credentials go in their own settings)"
        )));
    }
    if url.fragment().is_some() {
        return Err(Error::config(format!(
            "{what} is `{raw}`: it must not have a #fragment"
        )));
    }
    Ok(url)
}

/// A base URL: `http(s)://host[:port][/path]`; plain http only to a loopback host (the key
/// would otherwise cross the network in clear text).
pub(crate) fn parse_base_url(raw: &str, origin: &str) -> Result<url::Url, Error> {
    let url = parse_endpoint_url(raw, origin)?;
    if url.query().is_some() {
        return Err(Error::config(format!(
            "{origin} is `{}`: a base URL has no query",
            raw.trim()
        )));
    }
    Ok(url)
}

/// `base` + `path` (`/emails`), keeping a path prefix the base URL has.
pub(crate) fn endpoint(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

/// The URL without user info or query (neither is used for secrets here, but be safe).
pub(crate) fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        for ok in [
            "https://api.resend.com",
            "http://127.0.0.1:8025",
            "http://[::1]:8089/token",
            "http://localhost:1",
        ] {
            assert!(parse_endpoint_url(ok, "X").is_ok(), "{ok}");
        }
        let err = parse_endpoint_url("http://api.resend.com", "`base_url`").unwrap_err();
        assert!(err.to_string().contains("`base_url`"), "{err}");
        assert!(err.to_string().contains("use https"), "{err}");
        for bad in ["ftp://x", "https://u:p@x", "not a url", "https://x/#f"] {
            assert!(parse_endpoint_url(bad, "X").is_err(), "{bad}");
        }
    }

    #[test]
    fn base_urls() {
        assert!(parse_base_url("https://api.resend.com", "X").is_ok());
        assert!(parse_base_url("http://127.0.0.1:8025", "X").is_ok());
        assert!(parse_base_url("http://[::1]:8025", "X").is_ok());
        assert!(parse_base_url("http://localhost:1", "X").is_ok());
        let err = parse_base_url("http://api.resend.com", "`base_url`").unwrap_err();
        assert!(err.to_string().contains("`base_url`"), "{err}");
        assert!(parse_base_url("ftp://x", "X").is_err());
        assert!(parse_base_url("https://u:p@x", "X").is_err());
        let base = parse_base_url("https://proxy.example/resend/", "X").unwrap();
        assert_eq!(
            endpoint(&base, "/emails").as_str(),
            "https://proxy.example/resend/emails"
        );
        let base = parse_base_url("https://api.resend.com", "X").unwrap();
        assert_eq!(
            endpoint(&base, "/emails").as_str(),
            "https://api.resend.com/emails"
        );
    }
}
