//! The status page in a real browser: the real `sluice` on the real RabbitMQ and InfluxDB, a
//! load published to it, and Debian's Chromium driven through chromedriver (WebDriver). The
//! page must load without a console error, show a non-zero received rate while the load runs
//! and fall back to zero once it stops; `sluice top --once` must show the same figures.
//!
//! Chromium and chromedriver come from `deploy/browser.sh` (which `deploy/test.sh` runs). When
//! they are missing the test fails and says so; it never skips.
//!
//! The screenshot taken under load is written to `target/tmp/status-page.png`, and with
//! `SLUICE_UPDATE_SCREENSHOT=1` also to `pipeline/sluice/docs/status-page.png` (the README's).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Broker, Sluice, TestNames, eventually, free_port, influx_url};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sluice_testing::influx::TestDatabase;

const WAIT: Duration = Duration::from_secs(60);
const CHROMIUM: &str = "/usr/bin/chromium";

/// Flags without which Chromium misbehaves on a machine with no network beyond loopback (it
/// keeps trying to reach update, sync and QUIC endpoints), plus a window the page fits in.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,1300",
];

fn chromedriver_path() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromedriver"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) if Path::new(CHROMIUM).is_file() => path,
        _ => panic!(
            "Chromium ({CHROMIUM}) and chromedriver are needed for the status page's browser test: \
             run deploy/browser.sh (it installs Debian's chromium and chromium-driver)"
        ),
    }
}

/// A chromedriver of the test's own, on a free port; killed when dropped.
struct ChromeDriver {
    process: Child,
    url: String,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let port = free_port();
        let process = Command::new(chromedriver_path())
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = ChromeDriver {
            process,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let status_url = format!("{}/status", driver.url);
        eventually(
            "chromedriver to answer",
            Duration::from_secs(30),
            || async {
                let answer: Value = client
                    .get(&status_url)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (answer["value"]["ready"] == true).then_some(())
            },
        )
        .await;
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// chromedriver's log endpoint (not in the W3C protocol, which has no way to read the console).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// The console entries the page logged since the last read, as (level, message).
async fn console_entries(browser: &Client) -> Vec<(String, String)> {
    let entries = browser
        .issue_cmd(BrowserLog)
        .await
        .expect("the browser's log");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            (
                entry["level"].as_str().unwrap_or_default().to_owned(),
                entry["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A figure of the page: the number behind `#id` (its `data-value`) and the text shown.
async fn figure(browser: &Client, id: &str) -> Option<(f64, String)> {
    let element = browser.find(Locator::Id(id)).await.ok()?;
    let value = element.attr("data-value").await.ok()??.parse().ok()?;
    Some((value, element.text().await.ok()?))
}

async fn text_of(browser: &Client, id: &str) -> String {
    match browser.find(Locator::Id(id)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Publishes Diamond bodies (and now and then a bad one) until told to stop, `per_tick` every
/// 100 ms, each run with publisher confirms.
fn start_load(
    exchange: String,
    per_tick: usize,
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let broker = Broker::connect().await;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            round += 1;
            let now = jiff::Timestamp::now().as_second();
            let mut bodies: Vec<Vec<u8>> = (0..per_tick)
                .map(|index| {
                    let node = format!("web_{index}");
                    common::diamond("shop", &node, "cpu.total.user", (round % 100) as f64, now)
                })
                .collect();
            if round.is_multiple_of(10) {
                bodies.push(b"{not json".to_vec());
            }
            let messages: Vec<(&str, &str, &[u8])> = bodies
                .iter()
                .map(|body| (exchange.as_str(), "shop", body.as_slice()))
                .collect();
            sluice_load::publish::publish_confirmed(&broker.channel, messages)
                .await
                .expect("publish, confirmed");
            published.fetch_add(bodies.len() as u64, Ordering::Relaxed);
        }
    })
}

fn updating_screenshot() -> bool {
    std::env::var("SLUICE_UPDATE_SCREENSHOT").as_deref() == Ok("1")
}

fn save_screenshot(png: &[u8]) -> PathBuf {
    let in_target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&in_target, png).expect("write the screenshot under target/");
    if updating_screenshot() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs directory");
        std::fs::write(docs.join("status-page.png"), png).expect("write docs/status-page.png");
    }
    in_target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_live_rates_of_a_running_pipeline() {
    let started = Instant::now();
    let driver = ChromeDriver::start().await;
    let names = TestNames::new("status-page");
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    let broker = Broker::connect().await;
    let sluice = Sluice::start(&names, &influx_url(), &[]).await;

    let profile = tempfile::tempdir().expect("a browser profile directory");
    let mut args: Vec<String> = CHROMIUM_FLAGS
        .iter()
        .map(|flag| (*flag).to_owned())
        .collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("an object")
    };
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver");
    browser
        .goto(&format!("http://{}/", sluice.admin))
        .await
        .expect("open the status page");
    assert_eq!(browser.title().await.expect("title"), "sluice status");
    eventually("the page to read /status", WAIT, || async {
        (text_of(&browser, "status-state").await == "live").then_some(())
    })
    .await;
    let (idle_rate, _) = figure(&browser, "received-rate")
        .await
        .expect("the received rate");
    assert_eq!(idle_rate, 0.0, "nothing published yet");

    // Under load: about 200 deliveries a second.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let load = start_load(
        names.exchange.clone(),
        20,
        Arc::clone(&stop),
        Arc::clone(&published),
    );
    let (rate, shown) = eventually("a received rate on the page", WAIT, || async {
        figure(&browser, "received-rate")
            .await
            .filter(|(rate, _)| *rate > 0.0)
    })
    .await;
    assert!(
        shown.ends_with("/s") && shown != "0/s",
        "shown as a rate: {shown:?} ({rate})"
    );
    // Until the page has drawn a few seconds of it: written, acked and dead-lettered too.
    eventually(
        "written, acked and a dead letter on the page",
        WAIT,
        || async {
            let (written, _) = figure(&browser, "written-rate").await?;
            let (acked, _) = figure(&browser, "acked-rate").await?;
            let dead_letters = text_of(&browser, "dead-letters").await;
            (written > 0.0 && acked > 0.0 && dead_letters.contains("normalise.invalid_json"))
                .then_some(())
        },
    )
    .await;
    // The gauges the page shows are on /metrics too, for Prometheus.
    let metrics = sluice.metrics_text().await.unwrap_or_default();
    for series in [
        "sluice_unacked{source=\"metrics\"}",
        "sluice_sink_in_flight{sink=\"influx\"}",
        "sluice_batch_items{sink=\"influx\",quantile=",
    ] {
        assert!(metrics.contains(series), "/metrics serves {series}");
    }
    let graph = text_of(&browser, "graph").await;
    for node in [
        "source metrics",
        "normalise",
        "batch → influx",
        "sink influx",
        "acker",
    ] {
        assert!(graph.contains(node), "the graph shows {node:?}: {graph}");
    }
    if updating_screenshot() {
        // The README's picture: with a sparkline that shows something of the last minute.
        eventually("15 s of history on the page", WAIT, || async {
            let points = browser
                .execute(
                    "return document.querySelector('#sparks polyline').points.length",
                    Vec::new(),
                )
                .await
                .ok()?;
            (points.as_u64()? >= 15).then_some(())
        })
        .await;
    }
    let screenshot = browser.screenshot().await.expect("a screenshot");
    let saved = save_screenshot(&screenshot);

    // The terminal view reads the same figures.
    let top = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "top",
            "--once",
            "--admin",
            &format!("http://{}", sluice.admin),
        ])
        .output()
        .expect("run sluice top --once");
    let frame = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "sluice top: {}",
        String::from_utf8_lossy(&top.stderr)
    );
    for expected in [
        "metrics path",
        "consuming",
        "source metrics",
        "sink   influx",
        "normalise.invalid_json",
    ] {
        assert!(
            frame.contains(expected),
            "{expected:?} in the frame:\n{frame}"
        );
    }
    let received_line = frame
        .lines()
        .find(|line| line.contains("source metrics"))
        .unwrap_or_default();
    assert!(
        !received_line.contains("received       0/s"),
        "top shows the load: {received_line}"
    );

    // The load stops: the rate falls back to zero.
    stop.store(true, Ordering::Relaxed);
    load.await.expect("the load task");
    let total = published.load(Ordering::Relaxed) as f64;
    eventually("sluice to take the whole load", WAIT, || async {
        (sluice.counter("sluice_received_total").await >= total).then_some(())
    })
    .await;
    eventually("the received rate back to zero", WAIT, || async {
        figure(&browser, "received-rate")
            .await
            .filter(|(rate, _)| *rate == 0.0)
    })
    .await;
    assert_eq!(text_of(&browser, "status-state").await, "live");

    let severe: Vec<(String, String)> = console_entries(&browser)
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:#?}");

    browser.close().await.expect("close the browser");
    drop(driver);
    drop(sluice);
    broker.remove(&names).await;
    drop(influx);
    eprintln!(
        "status page test: {:.1} s, screenshot at {}",
        started.elapsed().as_secs_f64(),
        saved.display()
    );
}
