//! The error of [`Executor::new`](crate::Executor::new). Executing an action never errors: it
//! answers an [`Outcome`](crate::Outcome), failures included.
//!
//! No variant holds the manager's token; transport details elsewhere are taken from `reqwest`
//! with the URL stripped, so printing an error cannot leak a secret.

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The settings cannot work; the message names the setting.
    #[error("invalid manager settings: {0}")]
    Settings(String),
}
