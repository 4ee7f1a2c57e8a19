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

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas/fixtures/rules")
        .join(name)
}

/// Runs `sluice test RULES --input INPUT`; answers the exit code, stdout lines and stderr.
fn sluice_test(rules: &std::path::Path, input: &std::path::Path) -> (i32, Vec<Value>, String) {
    let output = sluice()
        .arg("test")
        .arg(rules)
        .arg("--input")
        .arg(input)
        .output()
        .expect("run");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each action is a JSON line"))
        .collect();
    (
        output.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn test_command_runs_the_managers_policies_on_a_simulated_clock() {
    let (code, actions, stderr) =
        sluice_test(&fixture("groups.json"), &fixture("nodecellar.jsonl"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("4 passed, 0 failed"), "{stderr}");
    let fired: Vec<(&str, &str, i64)> = actions
        .iter()
        .map(|line| {
            (
                line["action"]["workflow"].as_str().unwrap_or_default(),
                line["action"]["node_id"].as_str().unwrap_or_default(),
                line["at_ms"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    // Scale once the breach held 20 s; heal at the first 5 s sweep past the 60 s ttl.
    assert_eq!(
        fired,
        vec![
            ("scale", "vm_1", 1_700_000_020_000),
            ("heal", "vm_2", 1_700_000_095_000)
        ]
    );
}

#[test]
fn test_command_runs_generic_rules_and_keeps_header_values_out_of_its_output() {
    let (code, actions, stderr) =
        sluice_test(&fixture("standalone.toml"), &fixture("standalone.jsonl"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["action"]["kind"], "webhook");
    assert_eq!(actions[0]["action"]["group"], "standalone");
    assert_eq!(actions[1]["action"]["workflow"], "heal");
    let printed = actions.iter().map(Value::to_string).collect::<String>() + &stderr;
    assert!(!printed.contains("not-a-real-token"));
}

#[test]
fn test_command_fails_an_unmet_expectation_and_names_its_line() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let input = dir.join("wrong.jsonl");
    let recorded = std::fs::read_to_string(fixture("nodecellar.jsonl")).expect("fixture");
    // Expect the breach to fire before its stability time has passed.
    let wrong = recorded.replacen(
        r#"{"expect": {"count": 0}}"#,
        r#"{"expect": {"workflow": "scale"}}"#,
        1,
    );
    std::fs::write(&input, wrong).expect("write");
    let (code, _, stderr) = sluice_test(&fixture("groups.json"), &input);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("FAIL line 5: expected 1 matching action(s), found 0"),
        "{stderr}"
    );
    assert!(stderr.contains("3 passed, 1 failed"), "{stderr}");
}

#[test]
fn test_command_reports_a_bad_rules_file_with_the_rule_and_field() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let rules = dir.join("bad.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"hot\"\ncondition = { kind = \"threshold\", stat = \"avg\", window = \"1 minnit\", op = \">\", value = 1.0 }\n",
    )
    .expect("write");
    let (code, _, stderr) = sluice_test(&rules, &fixture("standalone.jsonl"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("hot") && stderr.contains("condition.window"),
        "{stderr}"
    );
}
