//! sluice's own Prometheus counters, scraped from its admin endpoint once a second during a run,
//! and reported as per-stage deltas: where the messages went, and where the time went.
//!
//! The text format is simple enough to read by hand: `# ` lines are comments, every other line is
//! `name{labels} value [timestamp]`. Only counters (`*_total`) and the `_sum` / `_count` of
//! histograms and summaries are kept; they only ever grow, so last minus first is what the run
//! did. A summary's quantile lines are gauges of the process's whole life and are left out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One series of the exposition: `sluice_acked_total`, `{source="metrics"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// The label set as written, braces included, or empty.
    pub labels: String,
    pub value: f64,
}

impl Sample {
    pub fn key(&self) -> String {
        format!("{}{}", self.name, self.labels)
    }
}

/// Parses Prometheus text exposition; lines that do not parse are skipped.
pub fn parse_text(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    // Label values may hold spaces, so the labels end at the last `}` when there are any.
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], &line[open..=close], &line[close + 1..])
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], "", &line[space..])
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels: labels.to_owned(),
        value,
    })
}

/// True for the series whose difference over a run means something: counters and the running
/// sums and counts of histograms and summaries.
fn is_cumulative(name: &str) -> bool {
    name.ends_with("_total") || name.ends_with("_sum") || name.ends_with("_count")
}

/// The cumulative `sluice_*` series of one scrape, by key.
pub fn cumulative_series(text: &str) -> BTreeMap<String, f64> {
    parse_text(text)
        .into_iter()
        .filter(|sample| sample.name.starts_with("sluice_") && is_cumulative(&sample.name))
        .map(|sample| (sample.key(), sample.value))
        .collect()
}

/// One scrape, `seconds` after the scraper started.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub seconds: f64,
    pub series: BTreeMap<String, f64>,
}

/// What changed between the first and the last scrape of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageDeltas {
    /// Every cumulative series that moved, by key, with how much.
    pub deltas: BTreeMap<String, f64>,
    /// Mean seconds per write for each histogram/summary `<name>{labels}`, e.g.
    /// `sluice_sink_write_seconds{sink="influx"}`: its `_sum` delta over its `_count` delta.
    pub means: BTreeMap<String, f64>,
    /// `sluice_written_total` (all sinks) per scrape interval, as a rate per second.
    pub written_per_second: Vec<f64>,
    pub scrapes: usize,
}

impl StageDeltas {
    pub fn between(scrapes: &[Scrape]) -> Self {
        let (Some(first), Some(last)) = (scrapes.first(), scrapes.last()) else {
            return Self::default();
        };
        let mut deltas = BTreeMap::new();
        for (key, &after) in &last.series {
            let before = first.series.get(key).copied().unwrap_or(0.0);
            if after != before {
                deltas.insert(key.clone(), after - before);
            }
        }
        let mut means = BTreeMap::new();
        for (key, &sum) in &deltas {
            let Some((name, labels)) = split_key(key) else {
                continue;
            };
            let Some(stem) = name.strip_suffix("_sum") else {
                continue;
            };
            let count = deltas
                .get(&format!("{stem}_count{labels}"))
                .copied()
                .unwrap_or(0.0);
            if count > 0.0 {
                means.insert(format!("{stem}{labels}"), sum / count);
            }
        }
        let written = |scrape: &Scrape| -> f64 {
            scrape
                .series
                .iter()
                .filter(|(key, _)| {
                    split_key(key).is_some_and(|(name, _)| name == "sluice_written_total")
                })
                .map(|(_, value)| value)
                .sum()
        };
        let written_per_second = scrapes
            .windows(2)
            .map(|pair| {
                let seconds = pair[1].seconds - pair[0].seconds;
                if seconds > 0.0 {
                    (written(&pair[1]) - written(&pair[0])) / seconds
                } else {
                    0.0
                }
            })
            .collect();
        Self {
            deltas,
            means,
            written_per_second,
            scrapes: scrapes.len(),
        }
    }

    /// The delta of one series by its exact key, or the sum over a name's label sets.
    pub fn delta(&self, name: &str) -> f64 {
        self.deltas
            .iter()
            .filter(|(key, _)| {
                key.as_str() == name || split_key(key).is_some_and(|(series, _)| series == name)
            })
            .map(|(_, delta)| delta)
            .sum()
    }

    /// One indented line per series that moved, and per mean.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .deltas
            .iter()
            .map(|(key, delta)| format!("  {key} +{delta}"))
            .collect();
        lines.extend(self.means.iter().map(|(key, mean)| {
            if key.contains("_seconds") {
                format!("  {key} mean {:.2} ms", mean * 1000.0)
            } else {
                format!("  {key} mean {mean:.1}")
            }
        }));
        lines
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "deltas": self.deltas,
            "means": self.means,
            "written_per_second": self.written_per_second,
            "scrapes": self.scrapes,
        })
    }
}

/// `name{labels}` into `name` and `{labels}` (empty when there are none).
fn split_key(key: &str) -> Option<(&str, &str)> {
    match key.find('{') {
        Some(open) => Some((&key[..open], &key[open..])),
        None => Some((key, "")),
    }
}

/// Reads `url` (sluice's `/metrics`) once.
pub async fn scrape_once(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| {
            format!("cannot scrape sluice's counters at {url}: is sluice running, with admin.listen there?")
        })?;
    if !response.status().is_success() {
        bail!("scraping {url}: {}", response.status());
    }
    let text = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    Ok(cumulative_series(&text))
}

/// How many deliveries sluice has acked so far, across its consumers (`sluice_acked_total`).
/// sluice acks a delivery only once what it became is written or dead-lettered, so this is
/// the cheapest exact "done" signal: polling the store instead (a `count()` over everything
/// written) costs the store more CPU the further the drain gets.
pub async fn acked(client: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let series = scrape_once(client, url).await?;
    let acked: f64 = series
        .iter()
        .filter(|(key, _)| key.starts_with("sluice_acked_total"))
        .map(|(_, value)| value)
        .sum();
    Ok(acked as u64)
}

/// Waits until sluice has acked `count` deliveries, every one of them then written or
/// dead-lettered, asking every 50 ms until `deadline`.
pub async fn wait_for_acks(
    client: &reqwest::Client,
    metrics_url: &str,
    count: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut last = Ok(0);
    while Instant::now() < deadline {
        // A sluice started just before this may not be listening yet: keep asking.
        last = acked(client, metrics_url).await;
        if last.as_ref().is_ok_and(|&acked| acked >= count) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match last {
        Ok(acked) => bail!("timed out: sluice acked {acked} of {count} deliveries"),
        Err(error) => Err(error.context("timed out waiting for sluice's acks")),
    }
}

/// Scrapes in the background every `interval` until [`Scraper::finish`].
#[derive(Debug)]
pub struct Scraper {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Vec<Scrape>>,
}

impl Scraper {
    /// Scrapes once now (failing with a clear error when sluice does not answer), then keeps
    /// scraping every `interval`; a later failed scrape is skipped.
    pub async fn start(url: &str, interval: Duration) -> anyhow::Result<Self> {
        Self::start_with(url, interval, false).await
    }

    /// The same for a process that has just started: its counters began at zero, which is the
    /// baseline, so what it counted before the first scrape is not lost.
    pub async fn start_from_zero(url: &str, interval: Duration) -> anyhow::Result<Self> {
        Self::start_with(url, interval, true).await
    }

    async fn start_with(url: &str, interval: Duration, from_zero: bool) -> anyhow::Result<Self> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let first = scrape_once(&client, url).await?;
        let url = url.to_owned();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut scrapes = Vec::new();
            if from_zero {
                scrapes.push(Scrape {
                    seconds: 0.0,
                    series: first.keys().map(|key| (key.clone(), 0.0)).collect(),
                });
            }
            scrapes.push(Scrape {
                seconds: started.elapsed().as_secs_f64(),
                series: first,
            });
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                let last = tokio::select! {
                    _ = ticks.tick() => false,
                    _ = &mut stopped => true,
                };
                if let Ok(series) = scrape_once(&client, &url).await {
                    scrapes.push(Scrape {
                        seconds: started.elapsed().as_secs_f64(),
                        series,
                    });
                }
                if last {
                    return scrapes;
                }
            }
        });
        Ok(Self {
            stop: Some(stop),
            task,
        })
    }

    /// Scrapes one last time and returns every scrape.
    pub async fn finish(mut self) -> anyhow::Result<Vec<Scrape>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.context("the scraper task failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# TYPE sluice_received_total counter
sluice_received_total{source="metrics"} 1500
sluice_acked_total 1490
# TYPE sluice_sink_write_seconds summary
sluice_sink_write_seconds{sink="influx",quantile="0.5"} 0.004
sluice_sink_write_seconds_sum{sink="influx"} 0.5
sluice_sink_write_seconds_count{sink="influx"} 10
sluice_dead_lettered_total{stage="normalise",reason="invalid json, really"} 15
sluice_written_total{sink="influx"} 1485 1700000000000
sluice_batch_items_bucket{le="+Inf"} 10
process_cpu_seconds_total 3.5
garbage line without a value
"#;

    #[test]
    fn parses_names_labels_and_values() {
        let samples = parse_text(EXPOSITION);
        assert_eq!(
            samples[0],
            Sample {
                name: "sluice_received_total".into(),
                labels: "{source=\"metrics\"}".into(),
                value: 1500.0
            }
        );
        assert_eq!(samples[1].labels, "");
        // A label value with a comma and spaces stays in the label set; a timestamp is ignored.
        let dead = samples
            .iter()
            .find(|sample| sample.name == "sluice_dead_lettered_total")
            .expect("dead letters");
        assert_eq!(dead.value, 15.0);
        let bucket = samples
            .iter()
            .find(|sample| sample.name == "sluice_batch_items_bucket")
            .expect("bucket");
        assert_eq!(
            (bucket.labels.as_str(), bucket.value),
            ("{le=\"+Inf\"}", 10.0)
        );
        assert!(!samples.iter().any(|sample| sample.name == "garbage"));
    }

    #[test]
    fn keeps_only_cumulative_sluice_series() {
        let series = cumulative_series(EXPOSITION);
        assert!(series.contains_key("sluice_received_total{source=\"metrics\"}"));
        assert!(series.contains_key("sluice_sink_write_seconds_sum{sink=\"influx\"}"));
        assert!(!series.keys().any(|key| key.contains("quantile")));
        assert!(!series.keys().any(|key| key.starts_with("process_")));
        assert!(!series.keys().any(|key| key.contains("_bucket")));
    }

    fn scrape(seconds: f64, text: &str) -> Scrape {
        Scrape {
            seconds,
            series: cumulative_series(text),
        }
    }

    #[test]
    fn deltas_means_and_rates_between_the_first_and_last_scrape() {
        let first = scrape(
            0.0,
            "sluice_received_total{source=\"metrics\"} 100\nsluice_written_total{sink=\"influx\"} 0\n\
             sluice_sink_write_seconds_sum{sink=\"influx\"} 1.0\nsluice_sink_write_seconds_count{sink=\"influx\"} 100\n\
             sluice_requeued_total 0\n",
        );
        let middle = scrape(1.0, "sluice_written_total{sink=\"influx\"} 400\n");
        let last = scrape(
            3.0,
            "sluice_received_total{source=\"metrics\"} 1100\nsluice_written_total{sink=\"influx\"} 1000\n\
             sluice_sink_write_seconds_sum{sink=\"influx\"} 1.2\nsluice_sink_write_seconds_count{sink=\"influx\"} 110\n\
             sluice_requeued_total 0\nsluice_acked_total 1000\n",
        );
        let deltas = StageDeltas::between(&[first, middle, last]);
        assert_eq!(deltas.delta("sluice_received_total"), 1000.0);
        assert_eq!(
            deltas.delta("sluice_received_total{source=\"metrics\"}"),
            1000.0
        );
        // A series that first appears mid-run counts from zero; one that did not move is left out.
        assert_eq!(deltas.delta("sluice_acked_total"), 1000.0);
        assert!(!deltas.deltas.contains_key("sluice_requeued_total"));
        // 0.2 s over 10 writes.
        let mean = deltas.means["sluice_sink_write_seconds{sink=\"influx\"}"];
        assert!((mean - 0.02).abs() < 1e-9);
        assert_eq!(deltas.written_per_second, vec![400.0, 300.0]);
        assert!(
            deltas
                .lines()
                .iter()
                .any(|line| line.contains("mean 20.00 ms"))
        );
        assert_eq!(deltas.scrapes, 3);
    }

    #[test]
    fn no_scrapes_no_deltas() {
        assert_eq!(StageDeltas::between(&[]), StageDeltas::default());
    }

    #[tokio::test]
    async fn an_unreachable_sluice_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/metrics", listener.local_addr().expect("address"));
        drop(listener);
        let error = Scraper::start(&url, Duration::from_secs(1))
            .await
            .expect_err("nothing listens there");
        assert!(format!("{error:#}").contains("is sluice running"));
    }
}
