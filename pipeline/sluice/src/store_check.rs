//! The first contact with the broker and with each path's store. When one does not answer at
//! start, sluice says so once, with what fixes it: where it is, and for a store how to turn its
//! path off. sluice starts anyway. Its sources keep reconnecting to the broker, and what a path
//! receives waits in the broker until its store answers (`/readyz` answers 503 meanwhile). So a
//! service that comes up late loses nothing.

use std::fmt::Display;
use std::time::Duration;

/// How long the first ping may take before the store counts as not answering; a store behind a
/// black hole must not hold the start for the whole request timeout.
const FIRST_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A store, and the settings a user changes when it cannot be reached.
pub struct Store<'a> {
    pub name: &'a str,
    /// The setting that says where it is, e.g. `elasticsearch.url`.
    pub url_setting: &'a str,
    /// The setting that turns its path off, e.g. `events.enabled`; `None` for a configured
    /// pipeline's sink, which is removed from the file rather than switched off.
    pub path_switch: Option<&'a str>,
}

/// Pings `store` once; logs what to do when it does not answer. Answers whether it answered.
pub async fn first_contact<E: Display>(
    store: &Store<'_>,
    ping: impl Future<Output = Result<(), E>>,
) -> bool {
    let error = match tokio::time::timeout(FIRST_PING_TIMEOUT, ping).await {
        Ok(Ok(())) => return true,
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {FIRST_PING_TIMEOUT:?}"),
    };
    let turn_off = store
        .path_switch
        .map(|switch| {
            format!(
                ", or turn the path off with {switch} = false ({}=false)",
                environment_variable(switch)
            )
        })
        .unwrap_or_default();
    tracing::error!(
        %error,
        "{} does not answer; what its path receives waits in the broker until it does. \
         Set {} ({}) to where it runs{turn_off}",
        store.name,
        store.url_setting,
        environment_variable(store.url_setting),
    );
    false
}

/// Connects to the broker once; logs what to do when it does not answer.
pub async fn first_broker_contact(url: &sluice_amqp::BrokerUrl) {
    let connected = tokio::time::timeout(
        FIRST_PING_TIMEOUT,
        sluice_amqp::connection::connect(url, "first-contact"),
    )
    .await;
    let error = match connected {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, "first contact".into()).await;
            return;
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {FIRST_PING_TIMEOUT:?}"),
    };
    tracing::error!(
        %error,
        "RabbitMQ cannot be reached or refused the login; sluice keeps trying and starts \
         consuming once it connects. Start it (deploy/services.sh starts one on \
         127.0.0.1:5672), or set amqp.url ({}) or amqp.url_file ({}) to where it runs, with \
         the right user and password",
        environment_variable("amqp.url"),
        environment_variable("amqp.url_file"),
    );
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
