//! The shared limits a configuration names (`MAIL_LIMITS_URL`, DSN `?limits=`) and their
//! fallback (`MAIL_LIMITS_FAIL`): the SMTP kind's connection cap and every kind's rate use
//! them. Without the `shared-limits` feature a configured URL is an error, not ignored.

#[cfg(any(test, not(feature = "shared-limits")))]
use super::settings::Origin;
use super::settings::Settings;
use crate::Error;

impl Settings {
    /// The shared limits these settings name (`MAIL_LIMITS_URL`, DSN `?limits=`), with their
    /// fallback (`MAIL_LIMITS_FAIL`); `None` when unset. Nothing connects yet;
    /// [`SharedLimits::ping`](crate::limits::SharedLimits::ping) checks that Redis answers.
    ///
    /// ```
    /// use outbound::config::Settings;
    /// let s = Settings::from_dsn("smtp://relay.example.com:25?tls=none&limits=redis%3A%2F%2F127.0.0.1%3A6379&limits_fail=wait")?;
    /// let limits = s.shared_limits()?.expect("limits are set");
    /// assert_eq!(limits.describe(), "redis://127.0.0.1:6379 (lease 15 s, fallback wait)");
    /// assert!(Settings::from_dsn("smtp://relay.example.com")?.shared_limits()?.is_none());
    /// # Ok::<(), outbound::Error>(())
    /// ```
    #[cfg(feature = "shared-limits")]
    pub fn shared_limits(&self) -> Result<Option<crate::limits::SharedLimits>, Error> {
        let Some(url) = self
            .get("limits")
            .filter(|s| !s.value.expose().trim().is_empty())
        else {
            return Ok(None);
        };
        let fail = match self.value_or_default::<&str>("limits_fail")? {
            "wait" => crate::limits::FailPolicy::Wait,
            _ => crate::limits::FailPolicy::Local,
        };
        crate::limits::SharedLimits::new(url.value.expose(), fail)
            .map(Some)
            .map_err(|e| Error::config(format!("{}: {}", url.origin, e.message())))
    }

    /// Without the `shared-limits` feature, a configured `limits` is an error, not ignored.
    #[cfg(not(feature = "shared-limits"))]
    pub(crate) fn refuse_shared_limits(&self) -> Result<(), Error> {
        match self.get("limits") {
            Some(s) => Err(Error::config(unavailable(&s.origin))),
            None => Ok(()),
        }
    }
}

/// Why a configured `limits` cannot be honoured without the `shared-limits` feature.
#[cfg(any(test, not(feature = "shared-limits")))]
pub(crate) fn unavailable(origin: &Origin) -> String {
    format!(
        "{origin} is set, but this build of outbound has no shared limits (cargo feature \
         `shared-limits`)"
    )
}
