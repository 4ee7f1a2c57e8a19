//! Connecting to the broker, and keeping its password out of every log line and error.

use std::fmt;

use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};

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
