//! The command line without services: configuration checks, `sluice normalise` and `sluice
//! test`, the version, completions and manual page, and how `sluice run` writes its logs.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use sluice_testing::names::free_port;

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

/// The commit of the checkout the tests run in, as `build.rs` abbreviates it.
fn checkout_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let output = sluice().arg("--version").output().expect("run");
    assert!(output.status.success());
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let commit = match std::env::var("SLUICE_GIT_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        // Outside a git checkout (a source archive) build.rs has nothing to name.
        _ => checkout_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    assert_eq!(
        version,
        format!("sluice {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line_definition() {
    let subcommands = [
        "run",
        "validate",
        "normalise",
        "test",
        "config-schema",
        "completions",
        "dead-letters",
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = sluice().args(["completions", shell]).output().expect("run");
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        for subcommand in subcommands {
            assert!(script.contains(subcommand), "{shell}: no {subcommand}");
        }
        // An option of a subcommand, so the script completes below the top level too.
        assert!(script.contains("log-format"), "{shell}: no --log-format");
    }
    let output = sluice().arg("man").output().expect("run");
    assert!(output.status.success());
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(page.contains(".TH sluice 1"), "{page}");
    for subcommand in subcommands {
        // roff escapes the hyphens of names.
        let named = format!("sluice\\-{}(1)", subcommand.replace('-', "\\-"));
        assert!(page.contains(&named), "the page does not name {named}");
    }
    // The pages it names exist: one per subcommand, written with `--dir`.
    let dir = std::env::temp_dir().join(format!("sluice-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let output = sluice()
        .arg("man")
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for subcommand in subcommands {
        let page = std::fs::read_to_string(dir.join(format!("sluice-{subcommand}.1")))
            .unwrap_or_else(|error| panic!("sluice-{subcommand}.1: {error}"));
        assert!(
            page.contains(".TH sluice-"),
            "sluice-{subcommand}.1: {page}"
        );
    }
    assert!(dir.join("sluice.1").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `sluice run` against a broker port nothing listens on, with `arguments`, and answers
/// the first `lines` lines it logs (it logs as it retries the broker, so lines keep coming).
fn first_log_lines(arguments: &[&str], lines: usize) -> Vec<String> {
    first_log_lines_with(arguments, &[("SLUICE_EVENTS__ENABLED", "false")], lines)
}

fn first_log_lines_with(
    arguments: &[&str],
    environment: &[(&str, &str)],
    lines: usize,
) -> Vec<String> {
    use std::io::BufRead as _;

    let mut child = sluice()
        .arg("run")
        .args(arguments)
        .env(
            "SLUICE_AMQP__URL",
            format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port()),
        )
        .env("SLUICE_ADMIN__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SLUICE_RULES__ENABLED", "false")
        .env("RUST_LOG", "info")
        .envs(environment.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut logged = Vec::new();
    while logged.len() < lines {
        match receiver.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) => logged.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(logged.len(), lines, "sluice logged only {logged:?}");
    logged
}

#[test]
fn logs_to_a_pipe_are_plain_text_without_colour_codes() {
    let lines = first_log_lines(&[], 3);
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
        assert!(
            line.contains("INFO") || line.contains("WARN") || line.contains("ERROR"),
            "{line:?}"
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line_and_keep_the_broker_password_out() {
    let lines = first_log_lines(&["--log-format", "json"], 3);
    for line in &lines {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
        assert!(entry["level"].is_string(), "{line}");
        assert!(entry["fields"].is_object(), "{line}");
        assert!(!line.contains("guest:guest"), "{line}");
    }
}

#[test]
fn a_store_that_does_not_answer_at_start_is_named_once_with_the_settings_that_fix_it() {
    let closed_port = free_port();
    let url = format!("http://127.0.0.1:{closed_port}");
    // The broker is down too, so sluice keeps logging its retries: twenty lines are enough for
    // the start-up messages and a few retries, and show the store is named only once.
    let lines = first_log_lines_with(
        &["--log-format", "plain"],
        &[("SLUICE_ELASTICSEARCH__URL", url.as_str())],
        20,
    );
    let named: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("Elasticsearch does not answer"))
        .collect();
    assert_eq!(named.len(), 1, "{lines:#?}");
    for what in [
        "elasticsearch.url",
        "SLUICE_ELASTICSEARCH__URL",
        "events.enabled = false",
        "SLUICE_EVENTS__ENABLED=false",
        &closed_port.to_string(),
    ] {
        assert!(named[0].contains(what), "{what} is not in {}", named[0]);
    }
    // InfluxDB answers (deploy/services.sh), so it is not named.
    assert!(
        !lines
            .iter()
            .any(|line| line.contains("InfluxDB does not answer")),
        "{lines:#?}"
    );
}

#[test]
fn top_says_where_it_looked_when_no_sluice_answers() {
    let admin = format!("127.0.0.1:{}", free_port());
    let output = sluice()
        .args(["top", "--once", "--admin", &admin])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("http://{admin}/status")) && stderr.contains("is sluice running"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no frame without figures");
}
