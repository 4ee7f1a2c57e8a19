//! Secrets a chaos run gives sluice, and the check that none of them shows in what it printed.
//!
//! Faults are when secrets leak: a connection error that quotes its URL, a retry that logs its
//! request. So every sluice of a run reaches the broker as a user of the run's own with a random
//! password (in `SLUICE_AMQP__URL`, from the environment), and InfluxDB with a random password
//! read from a file (`SLUICE_INFLUX__PASSWORD_FILE`; InfluxDB without authentication takes any).
//! After each round every log line sluice wrote is searched for both.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::broker::rabbitmqctl;

pub(super) struct Secrets {
    broker_user: String,
    broker_password: String,
    influx_password: String,
    influx_password_file: PathBuf,
    /// The broker URL with the run's user in it.
    amqp_url: String,
}

impl Secrets {
    /// Creates the run's broker user (with permissions on the URL's virtual host) and writes the
    /// InfluxDB password file into `work_dir`.
    pub(super) async fn create(amqp_url: &str, work_dir: &Path) -> anyhow::Result<Self> {
        let mut url = url::Url::parse(amqp_url).context("the broker URL")?;
        let vhost = match url.path().trim_start_matches('/') {
            "" => "/".to_owned(),
            path => percent_decode(path),
        };
        let broker_user = format!("sluice-chaos-{}", std::process::id());
        let broker_password = random_secret();
        let influx_password = random_secret();
        rabbitmqctl(&["add_user", &broker_user, &broker_password]).await?;
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost,
            &broker_user,
            ".*",
            ".*",
            ".*",
        ])
        .await?;
        url.set_username(&broker_user)
            .and_then(|()| url.set_password(Some(&broker_password)))
            .map_err(|()| anyhow::anyhow!("the broker URL cannot take a user"))?;
        std::fs::create_dir_all(work_dir)
            .with_context(|| format!("creating {}", work_dir.display()))?;
        let influx_password_file = work_dir.join(format!("influx-password-{}", std::process::id()));
        std::fs::write(&influx_password_file, &influx_password)
            .with_context(|| format!("writing {}", influx_password_file.display()))?;
        Ok(Self {
            broker_user,
            broker_password,
            influx_password,
            influx_password_file,
            amqp_url: url.to_string(),
        })
    }

    /// sluice's settings that carry the secrets.
    pub(super) fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SLUICE_AMQP__URL".to_owned(), self.amqp_url.clone()),
            ("SLUICE_INFLUX__USERNAME".to_owned(), "chaos".to_owned()),
            (
                "SLUICE_INFLUX__PASSWORD_FILE".to_owned(),
                self.influx_password_file.display().to_string(),
            ),
        ]
    }

    /// How many times a secret appears in the files (those that exist).
    pub(super) fn leaks(&self, logs: &[PathBuf]) -> anyhow::Result<u64> {
        let mut leaks = 0;
        for log in logs.iter().filter(|log| log.exists()) {
            let text = std::fs::read(log).with_context(|| format!("reading {}", log.display()))?;
            let text = String::from_utf8_lossy(&text);
            for secret in [&self.broker_password, &self.influx_password] {
                leaks += text.matches(secret.as_str()).count() as u64;
            }
        }
        Ok(leaks)
    }

    /// Deletes the run's broker user and the password file.
    pub(super) async fn remove(self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.influx_password_file);
        rabbitmqctl(&["delete_user", &self.broker_user]).await
    }
}

/// 32 letters and digits: nothing a log line contains by chance.
fn random_secret() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// `%2f` to `/`, as the AMQP URI spec decodes a virtual host (form decoding also reads `+` as a
/// space, which no virtual host of a test set-up holds).
fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map_or_else(|| text.to_owned(), |(_, value)| value.into_owned())
}
