//! Transports configured the way an operator configures them: from Dify's environment
//! variables (given as pairs, not read from the process), so their errors name the variables.

use std::collections::HashMap;
use std::sync::Arc;

use outbound::config::Settings;
use outbound::Transport;

/// The transport these variables describe (`MAIL_TYPE` must be among them).
///
/// ```
/// let t = outbound_testkit::configured(&[("MAIL_TYPE", "memory")]);
/// assert_eq!(t.kind(), "memory");
/// ```
pub fn configured(vars: &[(&str, &str)]) -> Arc<dyn Transport> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_env_source(&env)
        .unwrap()
        .expect("MAIL_TYPE is among the variables")
        .build()
        .unwrap()
}
