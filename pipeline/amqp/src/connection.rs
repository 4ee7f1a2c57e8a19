//! Connecting to the broker, over TLS for an `amqps://` URL, and keeping its password out of
//! every log line and error.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lapin::options::ConfirmSelectOptions;
use lapin::tcp::AMQPUriTcpExt as _;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use sluice_core::retry::RetryPolicy;

use crate::tls::BrokerTls;

/// How to reach the broker: its URL, whose `Display` and `Debug` mask the password, and for an
/// `amqps://` URL the TLS trust and client certificate. They travel together so that every
/// connection sluice opens (sources, publishers, dead letters, the rule stage) goes through
/// [`connect`] with the same TLS settings, and none can be built without them.
#[derive(Clone)]
pub struct BrokerUrl {
    full: SecretString,
    redacted: String,
    amqps: bool,
    tls: BrokerTls,
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
            amqps: parsed.scheme() == "amqps",
            tls: BrokerTls::default(),
        })
    }

    /// This URL with `tls` for its connections: extra roots and a client certificate, used
    /// when the URL is `amqps://`. (An `amqp://` connection stays plain; the configuration
    /// refuses TLS settings for one, so that nobody believes it encrypted.)
    pub fn with_tls(mut self, tls: BrokerTls) -> Self {
        self.tls = tls;
        self
    }

    /// Whether connections use TLS: the URL is `amqps://`.
    pub fn is_amqps(&self) -> bool {
        self.amqps
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
    // The URLs are boxed: a `BrokerUrl` is large, and these errors are rare.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: Box<BrokerUrl>,
        #[source]
        source: lapin::Error,
    },
    /// The TLS handshake failed, or the broker ended the connection with a TLS alert (as one
    /// that requires a client certificate does when it gets none, or one it does not trust).
    #[error("cannot connect to {url}: TLS: {source}")]
    Tls {
        url: Box<BrokerUrl>,
        #[source]
        source: rustls::Error,
    },
    /// The broker ended the connection right after the TLS handshake, before any AMQP: with
    /// TLS 1.3, what a broker that refuses the client's certificate (or its lack of one) may
    /// do instead of sending its alert.
    #[error(
        "cannot connect to {url}: TLS: the broker closed the session as it opened ({hint}): {source}"
    )]
    TlsClosed {
        url: Box<BrokerUrl>,
        hint: &'static str,
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
///
/// An `amqps://` URL connects over TLS with the system's roots, the CA file's and the client
/// certificate of [`BrokerUrl::with_tls`], always verifying the broker's hostname.
pub async fn connect(url: &BrokerUrl, role: &str) -> Result<Connection, AmqpError> {
    let name = format!("sluice {role} pid={}", std::process::id());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    // lapin's own parser; the error never repeats the URL, which holds the password.
    let uri: AMQPUri = url
        .full
        .expose_secret()
        .parse()
        .map_err(|_| AmqpError::InvalidUrl {
            reason: format!("lapin cannot read {url}"),
        })?;
    // With TLS 1.3 a broker checks the client's certificate after the client's side of the
    // handshake is done: its refusal may come as an alert, or (when the AMQP header we sent
    // meanwhile is unread as it closes) as a bare reset. Knowing the handshake was done tells
    // that reset apart from any other.
    let handshake_done = Arc::new(AtomicBool::new(false));
    let tls_config = url.tls.lapin_config();
    let done = Arc::clone(&handshake_done);
    let connected = async {
        let runtime = lapin::runtime::default_runtime()?;
        Connection::connector(
            uri,
            runtime,
            async move |uri, runtime| {
                let stream = uri
                    .connect_with_config_async(tls_config.as_ref(), &runtime)
                    .await?;
                done.store(true, Ordering::Release);
                Ok(stream)
            },
            properties,
        )
        .await
    };
    connected.await.map_err(|source| {
        let url = Box::new(url.clone());
        if let Some(tls) = tls_failure(&source) {
            return AmqpError::Tls {
                url,
                source: tls.clone(),
            };
        }
        if url.amqps && handshake_done.load(Ordering::Acquire) && closed_by_peer(&source) {
            let hint = if url.tls.has_client_certificate() {
                "did it refuse the client certificate?"
            } else {
                "does it require a client certificate? none is configured"
            };
            return AmqpError::TlsClosed { url, hint, source };
        }
        AmqpError::Connect { url, source }
    })
}

/// The rustls error inside a lapin I/O error, where rustls reports a refused handshake.
fn tls_failure(error: &lapin::Error) -> Option<&rustls::Error> {
    let lapin::ErrorKind::IOError(io_error) = error.kind() else {
        return None;
    };
    io_error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether the broker reset or closed the connection.
fn closed_by_peer(error: &lapin::Error) -> bool {
    let lapin::ErrorKind::IOError(io_error) = error.kind() else {
        return false;
    };
    matches!(
        io_error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
    )
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
            url: Box::new(url),
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
