//! The command line without services: configuration checks and `sluice normalise`.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    // Overrides from the developer's shell must not leak into these checks.
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn validate_accepts_the_sidecar_defaults() {
    let output = sluice().arg("validate").output().expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `sluice validate` on a file holding `toml`; returns whether it passed and its stderr.
fn validate_file(name: &str, toml: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join(name);
    std::fs::write(&file, toml).expect("write");
    let output = sluice()
        .arg("validate")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn validate_reports_every_error_with_its_field() {
    let (valid, stderr) = validate_file(
        "bad.toml",
        "[amqp]\nprefetch = 0\n[influx]\napi = \"v2\"\nconcurrency = 0\n[admin]\nlisten = \"nowhere\"\n",
    );
    assert!(!valid);
    for field in [
        "amqp.prefetch",
        "influx.org",
        "influx.bucket",
        "influx.token",
        "influx.concurrency",
        "admin.listen",
    ] {
        assert!(stderr.contains(field), "{field} not reported in:\n{stderr}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_name_their_field() {
    let (valid, stderr) = validate_file("type.toml", "[influx]\nbatch_max_points = \"many\"\n");
    assert!(!valid);
    assert!(stderr.contains("influx.batch_max_points"), "{stderr}");

    let (valid, stderr) = validate_file("typo.toml", "[influx]\nurll = \"http://x\"\n");
    assert!(!valid);
    assert!(stderr.contains("urll"), "{stderr}");
}

#[test]
fn environment_overrides_the_file() {
    let output = sluice()
        .arg("validate")
        .env("SLUICE_AMQP__PREFETCH", "0")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("amqp.prefetch"));
}

#[test]
fn normalise_prints_one_line_per_body_in_order() {
    let mut child = sluice()
        .arg("normalise")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run");
    let input = concat!(
        r#"{"node_id":"nodejs_host_x7k2p","node_name":"nodejs_host","deployment_id":"nodecellar","name":"cpu","path":"total_user","metric":3.2,"unit":"","type":"GAUGE","host":"nodejs_host_x7k2p","service":"nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user","time":1466000000}"#,
        "\n",
        "not json\n",
        r#"{"service":"cloudify.configuration","state":"stop","config_path":"/p","deployment_id":"d","time":1}"#,
        "\n"
    );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(!output.status.success(), "a bad body makes the exit code 1");
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["measurement"], "cpu.total.user");
    assert_eq!(lines[0]["tags"]["deployment_id"], "nodecellar");
    assert_eq!(lines[0]["fields"]["value"], 3.2);
    assert_eq!(lines[0]["timestamp"], 1_466_000_000_000_000_000i64);
    assert_eq!(lines[1]["error"]["reason"], "invalid_json");
    assert_eq!(lines[1]["error"]["input"], "stdin:2");
    assert_eq!(lines[2]["control"]["state"], "stop");
}
