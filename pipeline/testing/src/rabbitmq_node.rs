//! A private RabbitMQ node listening for `amqps://`, for the TLS tests: the installed
//! `rabbitmq-server`, started as a second node beside the shared broker (which it never
//! touches), with its own node name, Erlang cookie, ports, data and logs in a temporary
//! directory, and a certificate authority of the test's.
//!
//! A node takes seconds to boot, so a suite may share one between its tests (in a
//! `tokio::sync::OnceCell`): a static is never dropped, so the node must also go away when the
//! test process ends however it ends. It runs under a small shell watchdog that holds the read
//! end of a pipe whose write end only this process holds: when the node is dropped, or the
//! process exits or is killed, the pipe closes, the watchdog stops the node and removes its
//! directory.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::names::{free_port, unique};
use crate::tls::{Issued, TestCa};
use crate::wait::eventually;

/// Where the Debian and Ubuntu packages install the server's scripts.
const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

/// How long a node may take to boot: seconds on an idle machine, far more on a loaded one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `rabbitmq-server` (`$0`) with its output in `$1/server.log`; when this script's stdin
/// closes, stops it (SIGTERM: `rabbitmq-server` stops the node gracefully) and removes `$1`.
/// It also exits, with the node's status, when the node stops by itself, so a node that cannot
/// boot is seen at once. Neither the node nor anything it starts holds the pipe: only the
/// watcher reads it, on a descriptor of its own.
const WATCHDOG: &str = r#"
exec 3<&0 </dev/null
"$0" >"$1/server.log" 2>&1 3<&- &
node=$!
(read -r _ <&3; kill -TERM "$node") 2>/dev/null &
watcher=$!
exec 3<&-
wait "$node"
status=$?
kill "$watcher" 2>/dev/null
rm -rf "$1"
exit "$status"
"#;

/// What the node asks of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// `fail_if_no_peer_cert = true`: a client without a certificate of the node's CA is refused.
    Required,
    /// `fail_if_no_peer_cert = false`: a client may go without one, but one it presents must be
    /// of the node's CA (`verify_peer` either way).
    Optional,
}

/// A running private RabbitMQ node with a TLS listener on a free loopback port, user
/// `guest`/`guest`. Stopped, and its directory removed, when dropped or when the process ends.
pub struct TlsRabbitNode {
    /// The node's name, for `rabbitmqctl -n` (with [`TlsRabbitNode::rabbitmqctl`], which has
    /// the node's cookie).
    pub node_name: String,
    /// The `amqps` listener's port.
    pub tls_port: u16,
    dir: PathBuf,
    /// In a mutex because `try_wait` needs `&mut` and a shared node is only ever `&`.
    watchdog: Mutex<Child>,
    /// The pipe the watchdog waits on; dropping it stops the node.
    lifeline: Option<ChildStdin>,
}

impl TlsRabbitNode {
    /// Boots a node presenting `server` (a certificate `ca` issued, for the names the tests
    /// connect to) and verifying client certificates against `ca`; answers once it accepts
    /// connections. Fails the test, with the node's log, if it does not boot in time.
    pub async fn start(ca: &TestCa, server: &Issued, clients: ClientCertificates) -> Self {
        let dir = std::env::temp_dir().join(unique("sluice-rabbitmq"));
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("the node's directory");
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, ca.cert_pem()).expect("write the node's CA");
        let (cert_file, key_file) = server.write_to(&dir, "server");

        let node_name = format!("{}@localhost", unique("sluice-tls").replace('_', "-"));
        let tls_port = free_port();
        let config = dir.join("rabbitmq.conf");
        std::fs::write(
            &config,
            node_config(tls_port, &ca_file, &cert_file, &key_file, clients),
        )
        .expect("write rabbitmq.conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        // Not /etc/rabbitmq/rabbitmq-env.conf: it names the shared broker's node.
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("write rabbitmq-env.conf");

        let server_script = Path::new(RABBITMQ_BIN).join("rabbitmq-server");
        assert!(
            server_script.exists(),
            "{} is missing: install rabbitmq-server (deploy/services.sh)",
            server_script.display()
        );
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&server_script)
            .arg(&dir)
            .envs(node_environment(&dir, &node_name))
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", free_port().to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        let lifeline = watchdog.stdin.take();
        let node = TlsRabbitNode {
            node_name,
            tls_port,
            dir,
            watchdog: Mutex::new(watchdog),
            lifeline,
        };
        node.await_boot().await;
        node
    }

    /// `amqps://guest:guest@<host>:<port>/%2f`, for a host name the server's certificate may
    /// or may not carry.
    pub fn url(&self, host: &str) -> String {
        format!("amqps://guest:guest@{host}:{}/%2f", self.tls_port)
    }

    /// `rabbitmqctl -n <node>` with the node's Erlang cookie.
    pub fn rabbitmqctl(&self) -> Command {
        let mut command = Command::new(Path::new(RABBITMQ_BIN).join("rabbitmqctl"));
        command
            .envs(node_environment(&self.dir, &self.node_name))
            .arg("-n")
            .arg(&self.node_name);
        command
    }

    async fn await_boot(&self) {
        let address = ("127.0.0.1", self.tls_port);
        let started = Instant::now();
        let listening = eventually("the private RabbitMQ node to boot", BOOT_TIMEOUT, || {
            let exited = self.exited();
            async move {
                if exited {
                    return Some(false);
                }
                tokio::net::TcpStream::connect(address)
                    .await
                    .ok()
                    .map(|_| true)
            }
        });
        assert!(
            listening.await,
            "the private RabbitMQ node stopped while booting:\n{}",
            self.logs()
        );
        // The listener opens in the last boot steps; await_startup confirms the rest is done.
        let remaining = BOOT_TIMEOUT
            .saturating_sub(started.elapsed())
            .as_secs()
            .max(10);
        let mut await_startup = self.rabbitmqctl();
        await_startup.args(["await_startup", "--timeout", &remaining.to_string()]);
        let output = tokio::task::spawn_blocking(move || await_startup.output())
            .await
            .expect("rabbitmqctl's thread")
            .expect("rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl await_startup: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.logs()
        );
    }

    /// Whether the watchdog, and so the node, has ended.
    fn exited(&self) -> bool {
        let mut watchdog = self
            .watchdog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !matches!(watchdog.try_wait(), Ok(None))
    }

    /// The end of the node's output and of its log, for a failure's message.
    fn logs(&self) -> String {
        let log = self.dir.join("log").join(format!("{}.log", self.node_name));
        [self.dir.join("server.log"), log]
            .iter()
            .map(|path| format!("--- {}:\n{}", path.display(), tail(path, 4000)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for TlsRabbitNode {
    /// Closes the pipe, so the watchdog stops the node and removes its directory, and waits
    /// (bounded) for that to finish, so a test that drops a node leaves nothing running.
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match watchdog.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                // A stopping node offers nothing to block on but its exit.
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        eprintln!(
            "the private RabbitMQ node {} did not stop within 60 s",
            self.node_name
        );
    }
}

/// What both the server and `rabbitmqctl` need: the node's name, the cookie in its own HOME,
/// and no settings from /etc/rabbitmq (which are the shared broker's).
fn node_environment(dir: &Path, node_name: &str) -> Vec<(&'static str, std::ffi::OsString)> {
    vec![
        ("HOME", dir.join("home").into_os_string()),
        ("RABBITMQ_NODENAME", node_name.into()),
        ("RABBITMQ_BASE", dir.as_os_str().to_owned()),
        (
            "RABBITMQ_CONF_ENV_FILE",
            dir.join("rabbitmq-env.conf").into_os_string(),
        ),
        ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
    ]
}

fn node_config(
    tls_port: u16,
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
    clients: ClientCertificates,
) -> String {
    let fail_if_no_peer_cert = clients == ClientCertificates::Required;
    format!(
        "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = {fail_if_no_peer_cert}\n\
         loopback_users = none\n",
        ca_file.display(),
        cert_file.display(),
        key_file.display(),
    )
}

/// The last `bytes` of a file, or why it cannot be read.
fn tail(path: &Path, bytes: usize) -> String {
    let mut contents = Vec::new();
    match std::fs::File::open(path).and_then(|mut file| file.read_to_end(&mut contents)) {
        Ok(_) => {
            let start = contents.len().saturating_sub(bytes);
            String::from_utf8_lossy(&contents[start..]).into_owned()
        }
        Err(error) => format!("(cannot read: {error})"),
    }
}
