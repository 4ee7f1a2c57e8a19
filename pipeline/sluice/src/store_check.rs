//! The first contact with a path's store. When it does not answer at start, sluice says so once,
//! with the two settings that fix it: where the store is, and how to turn the path off. The path
//! starts anyway: what it receives waits in the broker until the store answers (and `/readyz`
//! answers 503 meanwhile), so a store that comes up late loses nothing.

use std::fmt::Display;
use std::time::Duration;

/// How long the first ping may take before the store counts as not answering; a store behind a
/// black hole must not hold the start for the whole request timeout.
const FIRST_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A store, and the settings a user changes when it cannot be reached.
pub struct Store {
    pub name: &'static str,
    /// The setting that says where it is, e.g. `elasticsearch.url`.
    pub url_setting: &'static str,
    /// The setting that turns its path off, e.g. `events.enabled`.
    pub path_switch: &'static str,
}

/// Pings `store` once; logs what to do when it does not answer. Answers whether it answered.
pub async fn first_contact<E: Display>(
    store: &Store,
    ping: impl Future<Output = Result<(), E>>,
) -> bool {
    let error = match tokio::time::timeout(FIRST_PING_TIMEOUT, ping).await {
        Ok(Ok(())) => return true,
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {FIRST_PING_TIMEOUT:?}"),
    };
    tracing::error!(
        %error,
        "{} does not answer; what its path receives waits in the broker until it does. \
         Set {} ({}) to where it runs, or turn the path off with {} = false ({}=false)",
        store.name,
        store.url_setting,
        environment_variable(store.url_setting),
        store.path_switch,
        environment_variable(store.path_switch),
    );
    false
}

/// The `SLUICE_<SECTION>__<KEY>` variable that overrides a setting.
fn environment_variable(setting: &str) -> String {
    format!("SLUICE_{}", setting.replace('.', "__").to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_with_the_variables_that_override_them() {
        assert_eq!(
            environment_variable("elasticsearch.url"),
            "SLUICE_ELASTICSEARCH__URL"
        );
        assert_eq!(
            environment_variable("events.enabled"),
            "SLUICE_EVENTS__ENABLED"
        );
    }
}
