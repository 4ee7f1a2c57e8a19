//! Connecting to the broker, and keeping its password out of every log line and error.

use std::fmt;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use sluice_core::retry::RetryPolicy;

/// A broker URL whose `Display` and `Debug` mask the password.
#[derive(Clone)]
pub struct BrokerUrl {
    full: SecretString,
    redacted: String,
}

impl BrokerUrl {
    pub fn parse(raw: &str) -> Result<Self, AmqpError> {
        let mut parsed = url::Url::parse(raw).map_err(|error| AmqpError::InvalidUrl {
            reason: error.to_string(),
        })?;
        if parsed.scheme() != "amqp" && parsed.scheme() != "amqps" {
            return Err(AmqpError::InvalidUrl {
                reason: format!("scheme {:?} is not amqp or amqps", parsed.scheme()),
            });
        }
        if parsed.password().is_some() {
            // Cannot fail: the URL has a host, since it has a password.
            let _ = parsed.set_password(Some("***"));
        }
        Ok(Self {
            full: SecretString::from(raw.to_owned()),
            redacted: parsed.to_string(),
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({})", self.redacted)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("invalid broker URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: BrokerUrl,
        #[source]
        source: lapin::Error,
    },
    #[error("the broker cancelled the consumer of queue {queue:?} (was it deleted?)")]
    ConsumerCancelled { queue: String },
    #[error("{operation} failed: {source}")]
    Broker {
        operation: String,
        #[source]
        source: lapin::Error,
    },
}

impl AmqpError {
    pub(crate) fn broker(operation: impl Into<String>) -> impl FnOnce(lapin::Error) -> AmqpError {
        let operation = operation.into();
        move |source| AmqpError::Broker { operation, source }
    }
}

/// Opens a connection named after its role and process, so that
/// `rabbitmqctl list_connections client_properties` tells instances and roles apart.
pub async fn connect(url: &BrokerUrl, role: &str) -> Result<Connection, AmqpError> {
    let name = format!("sluice {role} pid={}", std::process::id());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url.full.expose_secret(), properties)
        .await
        .map_err(|source| AmqpError::Connect {
            url: url.clone(),
            source,
        })
}

/// What a publisher does on each channel it gets from [`publish_with_reconnects`].
pub(crate) trait PublisherSession {
    /// Declares what the publisher needs on a new channel.
    fn prepare(&self, channel: &Channel) -> impl Future<Output = Result<(), AmqpError>> + Send;
    /// Publishes until the input is closed and everything is settled (`Ok`), or the channel
    /// fails (`Err`). What the broker did not confirm must be kept for the next channel.
    fn run(&mut self, channel: &Channel) -> impl Future<Output = Result<(), AmqpError>> + Send;
}

/// A publisher's life: open a connection and a channel with publisher confirms, prepare it and
/// run the session on it until it ends cleanly; when connecting or the session fails, reconnect
/// with backoff (reset after each channel that opened) and run it again.
pub(crate) async fn publish_with_reconnects(
    url: &BrokerUrl,
    role: &str,
    reconnect: RetryPolicy,
    session: &mut impl PublisherSession,
) {
    let mut attempt: u32 = 0;
    loop {
        let (connection, channel) = match open_confirmed_channel(url, role, session).await {
            Ok(opened) => {
                attempt = 0;
                opened
            }
            Err(error) => {
                let delay = reconnect.delay(attempt, None);
                attempt = attempt.saturating_add(1);
                tracing::warn!(%error, role, retry_in_ms = delay.as_millis() as u64, "publisher cannot connect");
                // What waits to be published stays in its bounded channel meanwhile: the stages
                // that send it slow down, and so does the source. Nothing is dropped.
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        match session.run(&channel).await {
            Ok(()) => {
                let _ = channel.close(200, "sluice stopping".into()).await;
                let _ = connection.close(200, "sluice stopping".into()).await;
                return;
            }
            Err(error) => tracing::warn!(%error, role, "publisher channel lost; reconnecting"),
        }
    }
}

async fn open_confirmed_channel(
    url: &BrokerUrl,
    role: &str,
    session: &impl PublisherSession,
) -> Result<(Connection, Channel), AmqpError> {
    let connection = connect(url, role).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker(format!("opening the {role} channel")))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(AmqpError::broker("enabling publisher confirms"))?;
    session.prepare(&channel).await?;
    Ok((connection, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shows() {
        let url = BrokerUrl::parse("amqp://guest:s3cret@127.0.0.1:5672/%2f").expect("valid");
        assert_eq!(url.to_string(), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert!(!format!("{url:?}").contains("s3cret"));
        let error = AmqpError::Connect {
            url,
            source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                lapin::ConnectionState::Closed,
            )),
        };
        assert!(!error.to_string().contains("s3cret"));
    }

    #[test]
    fn refuses_other_schemes() {
        assert!(BrokerUrl::parse("http://127.0.0.1").is_err());
    }
}
