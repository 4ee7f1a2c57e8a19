//! Secrets from files (`*_file` settings) with the real binary and the real RabbitMQ: a broker
//! user with a password of its own, given in `amqp.url_file`, and an InfluxDB password given in
//! `influx.password_file` (through its `SLUICE_*` variable), sent to a recording InfluxDB
//! double whose `Authorization` header shows what sluice sent. Every word sluice says
//! (`sluice validate`, the logs of `sluice run`, `/metrics`, the status page) is searched for
//! the secrets.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{Broker, TestNames, eventually, free_port, unique};
use sluice_testing::recording_server::{Captured, RecordingServer, Reply};

/// A RabbitMQ user made for one test, deleted when dropped.
struct BrokerUser {
    name: String,
    password: String,
}

impl BrokerUser {
    fn create() -> BrokerUser {
        let user = BrokerUser {
            name: unique("sluice-secrets"),
            password: unique("amqp-secret-pw"),
        };
        rabbitmqctl(&["add_user", &user.name, &user.password]);
        rabbitmqctl(&["set_permissions", "-p", "/", &user.name, ".*", ".*", ".*"]);
        user
    }

    /// The local broker's URL as this user, with `password`.
    fn url(&self, password: &str) -> String {
        let mut url = url::Url::parse(&common::amqp_url()).expect("AMQP_URL");
        url.set_username(&self.name).expect("a URL with a host");
        url.set_password(Some(password)).expect("a URL with a host");
        url.to_string()
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_user", &self.name])
            .status();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("rabbitmqctl is needed to make a broker user: install rabbitmq-server");
    assert!(
        output.status.success(),
        "rabbitmqctl {}: {}",
        args[0],
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes `secret` as Docker and Kubernetes write secret files: with a line break at the end.
fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write a secret file");
    path
}

/// Fails when any of `secrets` shows in `said`, which came from `what`.
fn assert_hidden(what: &str, said: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !said.contains(secret),
            "{what} shows a secret ({secret}):\n{said}"
        );
    }
}

/// The configuration file: the broker URL from `url_file`, the InfluxDB double with a user.
fn write_config(
    dir: &Path,
    names: &TestNames,
    url_file: &Path,
    influx: &str,
    admin: &str,
) -> PathBuf {
    let state_dir = dir.join("state");
    let text = format!(
        r#"
[amqp]
url_file = {url_file:?}
reconnect_max_delay = "1s"
[metrics]
exchange = {exchange:?}
queue = {queue:?}
[influx]
url = {influx:?}
database = {database:?}
username = "sluice"
batch_linger = "50ms"
[events]
enabled = false
[dead_letter]
exchange = {dead_letter_exchange:?}
queue = {dead_letter_queue:?}
[rules]
state_dir = {state_dir:?}
[admin]
listen = {admin:?}
# A sluice that never reached the broker waits out the whole deadline when stopped.
[shutdown]
deadline = "3s"
"#,
        url_file = url_file.display().to_string(),
        exchange = names.exchange,
        queue = names.queue,
        database = names.database,
        dead_letter_exchange = names.dead_letter_exchange,
        dead_letter_queue = names.dead_letter_queue,
        state_dir = state_dir.display().to_string(),
    );
    let file = dir.join("sluice.toml");
    std::fs::write(&file, text).expect("write the configuration");
    file
}

/// `sluice <args>` with the influx password file in its environment, output captured.
fn sluice(args: &[&str], influx_password_file: &Path, extra_env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .env("RUST_LOG", "info")
        .env("SLUICE_INFLUX__PASSWORD_FILE", influx_password_file)
        .stdin(Stdio::null());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    command
}

/// A running `sluice run`, its stdout and stderr going to files the test reads.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn start(mut command: Command, dir: &Path, label: &str) -> Running {
        let stdout = dir.join(format!("{label}.stdout"));
        let stderr = dir.join(format!("{label}.stderr"));
        let child = command
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn sluice");
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// Everything it printed so far.
    fn printed(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }

    /// SIGTERM, and the wait for its exit (so that everything it prints is in the files).
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        self.printed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(client: &reqwest::Client, admin: &str, path: &str) -> Option<(u16, String)> {
    let response = client
        .get(format!("http://{admin}{path}"))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Publishes a metric, and waits for the InfluxDB double to get a write whose basic auth is
/// `credentials` (`user:password`). Published while the metrics path restarts, the metric waits
/// in its queue.
async fn write_and_await_credentials(
    broker: &Broker,
    names: &TestNames,
    influx: &RecordingServer,
    credentials: &str,
) {
    let time = jiff::Timestamp::now().as_second();
    broker
        .publish(
            &names.exchange,
            "secrets",
            &common::diamond("secrets", "host_1", "cpu.total.user", 1.0, time),
        )
        .await;
    let basic = |request: &Captured| {
        let header = request.header("authorization")?.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header)
            .ok()?;
        String::from_utf8(decoded).ok()
    };
    eventually(
        "a write to the InfluxDB double with the expected basic auth",
        Duration::from_secs(30),
        || {
            let found = influx
                .requests()
                .iter()
                .filter(|request| request.path == "/write")
                .any(|request| basic(request).as_deref() == Some(credentials));
            async move { found.then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_are_used_and_never_shown() {
    let names = TestNames::new("secrets");
    let broker = Broker::connect().await;
    let user = BrokerUser::create();
    let influx_password = unique("influx-secret-pw");
    let reloaded_password = unique("reloaded-secret-pw");
    let wrong_password = unique("wrong-secret-pw");
    let secrets = [
        user.password.as_str(),
        influx_password.as_str(),
        reloaded_password.as_str(),
        wrong_password.as_str(),
    ];

    let dir = tempfile::tempdir().expect("a temporary directory");
    let url_file = secret_file(dir.path(), "amqp-url", &user.url(&user.password));
    let influx_password_file = secret_file(dir.path(), "influx-password", &influx_password);
    let influx = RecordingServer::start(|request| match request.path.as_str() {
        // CREATE DATABASE, as InfluxDB 1.x answers it.
        "/query" => Reply::status(200).with_body(r#"{"results":[{"statement_id":0}]}"#),
        _ => Reply::status(204),
    })
    .await;
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &names, &url_file, influx.url.as_str(), &admin);
    let config = config.display().to_string();

    // `sluice validate`: valid, and silent about the secrets.
    let output = sluice(
        &["validate", "--config", &config],
        &influx_password_file,
        &[],
    )
    .output()
    .expect("run sluice validate");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(said.contains("configuration is valid"), "{said}");
    assert_hidden("sluice validate", &said, &secrets);

    // A secret set twice, and a secret file that is not there: refused, naming the fields and
    // the path, not the secrets.
    let missing = dir.path().join("no-such-secret");
    let missing_text = missing.display().to_string();
    let output = sluice(
        &["validate", "--config", &config],
        &influx_password_file,
        &[
            ("SLUICE_INFLUX__PASSWORD", influx_password.as_str()),
            ("SLUICE_AMQP__URL_FILE", missing_text.as_str()),
        ],
    )
    .output()
    .expect("run sluice validate");
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("influx.password_file: set either influx.password or influx.password_file"),
        "{said}"
    );
    assert!(
        said.contains(&format!("amqp.url_file: cannot read {missing_text}")),
        "{said}"
    );
    assert_hidden("sluice validate of a bad configuration", &said, &secrets);

    // `sluice run` connects as the file's user and sends the file's InfluxDB password.
    let client = reqwest::Client::new();
    let running = Running::start(
        sluice(&["run", "--config", &config], &influx_password_file, &[]),
        dir.path(),
        "run",
    );
    eventually(
        "sluice to consume its queue",
        Duration::from_secs(30),
        || async {
            // A store not yet answering is reported after the sources, which consume already.
            let (status, body) = get(&client, &admin, "/readyz").await?;
            (status == 200 || body.starts_with("influxdb")).then_some(())
        },
    )
    .await;
    // The password is the file's, without its line break.
    let expected = format!("sluice:{influx_password}");
    write_and_await_credentials(&broker, &names, &influx, &expected).await;

    // A changed password file is read again at a reload, which restarts the metrics path.
    std::fs::write(&influx_password_file, format!("{reloaded_password}\n")).expect("write");
    let kill = Command::new("kill")
        .arg("-HUP")
        .arg(running.child.id().to_string())
        .status()
        .expect("kill -HUP");
    assert!(kill.success());
    eventually(
        "the reload to be applied",
        Duration::from_secs(30),
        || async {
            let (_, text) = get(&client, &admin, "/metrics").await?;
            text.lines()
                .any(|line| line.starts_with("sluice_config_reloads_total{outcome=\"applied\"} 1"))
                .then_some(())
        },
    )
    .await;
    let expected = format!("sluice:{reloaded_password}");
    write_and_await_credentials(&broker, &names, &influx, &expected).await;

    let mut shown = String::new();
    for path in ["/metrics", "/status", "/", "/readyz", "/healthz"] {
        if let Some((_, body)) = get(&client, &admin, path).await {
            shown.push_str(&body);
        }
    }
    assert_hidden("the admin endpoint", &shown, &secrets);
    let printed = running.stop();
    assert_hidden("sluice run", &printed, &secrets);

    // A wrong broker password from the file: the broker refuses it, and sluice says so, with
    // the password redacted.
    std::fs::write(&url_file, format!("{}\n", user.url(&wrong_password))).expect("write");
    let running = Running::start(
        sluice(&["run", "--config", &config], &influx_password_file, &[]),
        dir.path(),
        "refused",
    );
    let refused = format!("cannot connect to amqp://{}:***@", user.name);
    eventually(
        "sluice to report the refused login",
        Duration::from_secs(30),
        || {
            let said = running.printed().contains(&refused);
            async move { said.then_some(()) }
        },
    )
    .await;
    let printed = running.stop();
    assert_hidden("sluice run with a wrong password", &printed, &secrets);

    broker.remove(&names).await;
}
