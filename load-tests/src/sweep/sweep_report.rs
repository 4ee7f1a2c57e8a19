//! A sweep's results: each value's median round (one round can say more about the broker's
//! minute than about the value), the best value by the latency target, and the table, JSON and
//! SVG plot made from them. Not [`crate::report`], which is one drain beside the null consumer's.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use super::measurement::PointResult;
use crate::plot::{PlotPoint, plot_sweep};
use crate::scenario::setting_key;

/// The latency target: the best setting is the fastest whose p99 stays under it.
pub const P99_TARGET_MS: f64 = 50.0;

/// A whole sweep's results.
#[derive(Debug, Clone)]
pub struct SweepReport {
    pub scenario: String,
    /// The swept variable, e.g. `SLUICE_INFLUX__BATCH_MAX_POINTS`.
    pub setting: String,
    /// How many times each value was measured (`[sweep] rounds`).
    pub rounds: u32,
    /// Every measurement, round by round.
    pub points: Vec<PointResult>,
    pub commit: Option<String>,
}

/// The median round of one value, and how far the rounds of that value spread.
#[derive(Debug, Clone, Copy)]
pub struct MedianPoint<'a> {
    pub point: &'a PointResult,
    pub rounds: usize,
    /// The median, lowest and highest drain ratio over the value's rounds.
    pub ratio: Option<f64>,
    pub ratio_range: Option<(f64, f64)>,
    /// The median of the rounds' drain rates (the median round's own), and of their open-loop
    /// p99s, taken on its own: a round with a fast drain may have had a slow open loop.
    pub drain_rate: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The median of what was measured (the lower middle value for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len().checked_sub(1)? / 2).copied()
}

impl SweepReport {
    /// For each value, in the sweep's order, its median round: the broker's speed drifts from
    /// minute to minute, so one round of a value can say more about the broker than about the
    /// value. The median is a real round (the lower middle one for an even count), so its
    /// figures belong together.
    pub fn medians(&self) -> Vec<MedianPoint<'_>> {
        let mut values: Vec<&Option<String>> = Vec::new();
        for point in &self.points {
            if !values.contains(&&point.value) {
                values.push(&point.value);
            }
        }
        values
            .into_iter()
            .filter_map(|value| {
                let mut rounds: Vec<&PointResult> = self
                    .points
                    .iter()
                    .filter(|point| &point.value == value)
                    .collect();
                rounds.sort_by(|a, b| {
                    let rank = |point: &PointResult| point.rank().unwrap_or(f64::NAN);
                    rank(a).total_cmp(&rank(b))
                });
                let ratios: Vec<f64> = rounds
                    .iter()
                    .filter_map(|point| point.drain.as_ref()?.comparison.rate_ratio())
                    .collect();
                let ratio_range = ratios
                    .iter()
                    .copied()
                    .reduce(f64::min)
                    .zip(ratios.iter().copied().reduce(f64::max));
                let ratio = median(ratios);
                let p99_ms = median(
                    rounds
                        .iter()
                        .filter_map(|point| Some(point.open_loop.as_ref()?.report.latency.p99_ms))
                        .collect(),
                );
                let point = rounds.get((rounds.len().checked_sub(1)?) / 2)?;
                Some(MedianPoint {
                    point,
                    rounds: rounds.len(),
                    ratio,
                    ratio_range,
                    // The rounds are ranked by drain rate, so the median round has the median.
                    drain_rate: point
                        .drain
                        .as_ref()
                        .and_then(|drain| drain.comparison.sluice.messages_per_second()),
                    p99_ms,
                })
            })
            .collect()
    }

    /// The best value: the fastest drain among the values whose p99 (when measured) is under
    /// [`P99_TARGET_MS`] (or the fastest of all, when none is); without drains, the lowest p99.
    /// Each value is judged by the median of its rounds' drain rates and of their p99s.
    pub fn best(&self) -> Option<(&PointResult, String)> {
        let medians = self.medians();
        let (index, why) = best_of(&medians)?;
        Some((medians[index].point, why))
    }
}

/// [`SweepReport::best`] over the values' medians; returns the index of the best.
fn best_of(points: &[MedianPoint<'_>]) -> Option<(usize, String)> {
    let rate = |point: &MedianPoint<'_>| point.drain_rate;
    let p99 = |point: &MedianPoint<'_>| point.p99_ms;
    let fastest = |candidates: Vec<usize>| {
        candidates
            .into_iter()
            .filter_map(|index| Some((index, rate(&points[index])?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    let all: Vec<usize> = (0..points.len()).collect();
    if points.iter().any(|point| rate(point).is_some()) {
        let within: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&index| p99(&points[index]).is_none_or(|p99| p99 <= P99_TARGET_MS))
            .collect();
        if let Some((index, rate)) = fastest(within) {
            let reason = if points.iter().any(|point| p99(point).is_some()) {
                format!("the fastest drain ({rate:.0} msgs/s) with p99 under {P99_TARGET_MS} ms")
            } else {
                format!("the fastest drain ({rate:.0} msgs/s)")
            };
            return Some((index, reason));
        }
        let (index, rate) = fastest(all)?;
        return Some((
            index,
            format!(
                "the fastest drain ({rate:.0} msgs/s); no value kept p99 under {P99_TARGET_MS} ms"
            ),
        ));
    }
    let (index, p99) = all
        .into_iter()
        .filter_map(|index| Some((index, p99(&points[index])?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((index, format!("the lowest open-loop p99 ({p99:.1} ms)")))
}

impl SweepReport {
    /// The results as a Markdown table (it reads as plain text too): a row per value, from its
    /// median round; with more than one round, then a row per round.
    pub fn table(&self) -> String {
        let key = setting_key(&self.setting);
        let header = [
            format!(
                "| {key} | drain msgs/s | null consumer msgs/s | ratio | CPU-bound ratio | sluice CPU µs/msg | CPU ratio | sluice switches/msg | peak RSS MiB | open-loop msg/s | p50 ms | p99 ms | p99.9 ms | max ms | written | mean write ms |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_owned(),
        ];
        let mut lines = header.to_vec();
        for median in self.medians() {
            let value = median.point.value.as_deref().unwrap_or("–");
            let mut label = value.to_owned();
            if median.rounds > 1 {
                label.push_str(&format!(" (median of {}", median.rounds));
                if let (Some(ratio), Some((lowest, highest))) = (median.ratio, median.ratio_range) {
                    label.push_str(&format!(
                        "; median ratio {ratio:.2}, from {lowest:.2} to {highest:.2}"
                    ));
                }
                if let Some(p99) = median.p99_ms {
                    label.push_str(&format!("; median p99 {p99:.1} ms"));
                }
                label.push(')');
            }
            lines.push(table_row(median.point, label));
        }
        if self.rounds > 1 {
            lines.push(String::new());
            lines.push("Every round:".to_owned());
            lines.push(String::new());
            lines.extend(header);
            for point in &self.points {
                let value = point.value.as_deref().unwrap_or("–");
                let first = match &point.drain {
                    Some(drain) if drain.null_consumer_first => " (null consumer first)",
                    _ => "",
                };
                lines.push(table_row(point, format!("{value} #{}{first}", point.round)));
            }
        }
        lines.join("\n")
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "scenario": self.scenario,
            "setting": self.setting,
            "setting_key": setting_key(&self.setting),
            "commit": self.commit,
            "best": self.best().map(|(point, reason)| json!({
                "value": point.value,
                "why": reason,
            })),
            "rounds": self.rounds,
            "medians": self.medians().iter().map(|median| json!({
                "value": median.point.value,
                "median_round": median.point.round,
                "rounds": median.rounds,
                "drain_messages_per_second": median.drain_rate,
                "open_loop_p99_ms": median.p99_ms,
                "rate_ratio_median": median.ratio,
                "rate_ratio_min": median.ratio_range.map(|(lowest, _)| lowest),
                "rate_ratio_max": median.ratio_range.map(|(_, highest)| highest),
            })).collect::<Vec<_>>(),
            "points": self.points.iter().map(PointResult::to_json).collect::<Vec<_>>(),
        })
    }

    /// Writes `<stem>.json` and `<stem>.svg` into `dir`; returns their paths.
    pub fn write_files(&self, dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json_path = dir.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(&self.to_json())?;
        std::fs::write(&json_path, text + "\n")
            .with_context(|| format!("writing {}", json_path.display()))?;
        let svg_path = dir.join(format!("{stem}.svg"));
        let points: Vec<PlotPoint> = self
            .medians()
            .iter()
            .map(|median| median.point.plot_point())
            .collect();
        plot_sweep(
            &svg_path,
            &self.scenario,
            &setting_key(&self.setting),
            &points,
        )
        .with_context(|| format!("drawing {}", svg_path.display()))?;
        Ok((json_path, svg_path))
    }
}

/// One row of [`SweepReport::table`], with `label` in the first column.
fn table_row(point: &PointResult, label: String) -> String {
    let number = |value: Option<f64>, decimals: usize| match value {
        Some(value) => format!("{value:.decimals$}"),
        None => "–".to_owned(),
    };
    let drain = point.drain.as_ref();
    let open = point.open_loop.as_ref();
    let sluice = drain.map(|drain| drain.comparison.sluice);
    let write_mean = drain
        .map(|drain| &drain.stages)
        .or(open.map(|open| &open.stages))
        .and_then(|stages| {
            stages
                .means
                .iter()
                .find(|(key, _)| key.starts_with("sluice_sink_write_seconds"))
                .map(|(_, mean)| mean * 1000.0)
        });
    let written = match (drain, open) {
        (_, Some(open)) => format!("{}/{}", open.report.written, open.report.good),
        (Some(drain), None) => format!("{}/{}", drain.written, drain.good),
        (None, None) => "–".to_owned(),
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        label,
        number(sluice.and_then(|figures| figures.messages_per_second()), 0),
        number(
            drain.and_then(|drain| drain.comparison.null_consumer.messages_per_second()),
            0
        ),
        number(drain.and_then(|drain| drain.comparison.rate_ratio()), 2),
        number(
            drain.and_then(|drain| drain.comparison.cpu_bound_ratio()),
            2
        ),
        number(
            sluice.and_then(|figures| figures.cpu_micros_per_message()),
            1
        ),
        number(drain.and_then(|drain| drain.comparison.cpu_ratio()), 2),
        number(
            sluice.and_then(|figures| figures.context_switches_per_message()),
            2
        ),
        number(
            sluice
                .and_then(|figures| figures.peak_rss_kib)
                .map(|kib| kib as f64 / 1024.0),
            0
        ),
        number(open.map(|open| open.report.rate), 0),
        number(open.map(|open| open.report.latency.p50_ms), 1),
        number(open.map(|open| open.report.latency.p99_ms), 1),
        number(open.map(|open| open.report.latency.p999_ms), 1),
        number(open.map(|open| open.report.latency.max_ms), 1),
        written,
        number(write_mean, 1),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::latency::LatencySummary;
    use crate::latency_proxy::WriteStats;
    use crate::open_loop::OpenLoopReport;
    use crate::report::{Comparison, DrainFigures};
    use crate::scrape::StageDeltas;
    use crate::sweep::{DrainResult, OpenLoopResult};

    fn drain(rate: f64) -> DrainResult {
        let figures = |rate: f64| DrainFigures {
            messages: 100_000,
            elapsed: Duration::from_secs_f64(100_000.0 / rate),
            cpu: Some(Duration::from_secs(2)),
            peak_rss_kib: Some(40 * 1024),
            context_switches: None,
            broker_cpu: None,
            store_cpu: None,
            machine_busy: None,
        };
        DrainResult {
            comparison: Comparison {
                sluice: figures(rate),
                null_consumer: figures(rate * 2.0),
            },
            null_consumer_first: false,
            good: 99_000,
            written: 99_000,
            dead_lettered: 1_000,
            stages: StageDeltas::default(),
        }
    }

    fn open_loop(p99_ms: f64) -> OpenLoopResult {
        OpenLoopResult {
            report: OpenLoopReport {
                rate: 5_000.0,
                published: 1_000,
                good: 990,
                bad: 10,
                written: 990,
                latency: LatencySummary {
                    count: 990,
                    p50_ms: 3.0,
                    p90_ms: 3.5,
                    p99_ms,
                    p999_ms: p99_ms * 1.5,
                    max_ms: p99_ms * 2.0,
                    mean_ms: 4.0,
                },
                publish_lag: LatencySummary::default(),
                written_per_second: vec![990],
                published_in: Duration::from_millis(200),
                proxy: WriteStats::default(),
                harness_cpu: Duration::from_millis(100),
            },
            dead_lettered: 10,
            stages: StageDeltas::default(),
        }
    }

    fn report(points: Vec<(&str, Option<f64>, Option<f64>)>) -> SweepReport {
        SweepReport {
            scenario: "batch size".into(),
            setting: "SLUICE_INFLUX__BATCH_MAX_POINTS".into(),
            points: points
                .into_iter()
                .map(|(value, rate, p99)| PointResult {
                    value: Some(value.to_owned()),
                    round: 1,
                    drain: rate.map(drain),
                    open_loop: p99.map(open_loop),
                })
                .collect(),
            rounds: 1,
            commit: Some("abc1234".into()),
        }
    }

    #[test]
    fn the_best_value_is_the_fastest_within_the_latency_target() {
        let sweep = report(vec![
            ("100", Some(10_000.0), Some(20.0)),
            ("1000", Some(30_000.0), Some(45.0)),
            ("5000", Some(40_000.0), Some(300.0)),
        ]);
        let (point, why) = sweep.best().expect("a best value");
        assert_eq!(point.value.as_deref(), Some("1000"));
        assert!(why.contains("p99 under 50 ms"), "{why}");
    }

    #[test]
    fn without_a_value_within_the_target_the_fastest_wins_and_says_so() {
        let sweep = report(vec![
            ("1", Some(1.0), Some(90.0)),
            ("2", Some(2.0), Some(80.0)),
        ]);
        let (point, why) = sweep.best().expect("a best value");
        assert_eq!(point.value.as_deref(), Some("2"));
        assert!(why.contains("no value kept p99"));
    }

    #[test]
    fn an_open_loop_only_sweep_picks_the_lowest_p99() {
        let sweep = report(vec![("10ms", None, Some(30.0)), ("20ms", None, Some(12.0))]);
        assert_eq!(
            sweep.best().and_then(|(point, _)| point.value.as_deref()),
            Some("20ms")
        );
    }

    /// Rounds of values: (value, round, sluice's drain rate); the null consumer drains at
    /// twice the rate in every round, so each ratio is 0.5 unless `null_rate` says otherwise.
    fn rounds(points: Vec<(&str, u32, f64, f64)>, rounds: u32) -> SweepReport {
        let mut sweep = report(Vec::new());
        sweep.rounds = rounds;
        sweep.points = points
            .into_iter()
            .map(|(value, round, rate, null_rate)| {
                let mut drain = drain(rate);
                drain.comparison.null_consumer.elapsed =
                    Duration::from_secs_f64(100_000.0 / null_rate);
                PointResult {
                    value: Some(value.to_owned()),
                    round,
                    drain: Some(drain),
                    open_loop: None,
                }
            })
            .collect();
        sweep
    }

    #[test]
    fn each_value_is_its_median_round_with_the_spread_of_its_ratios() {
        let sweep = rounds(
            vec![
                ("1", 1, 30_000.0, 40_000.0),
                ("2", 1, 50_000.0, 50_000.0),
                ("1", 2, 10_000.0, 40_000.0),
                ("2", 2, 20_000.0, 40_000.0),
                ("1", 3, 20_000.0, 40_000.0),
                ("2", 3, 25_000.0, 50_000.0),
            ],
            3,
        );
        let medians = sweep.medians();
        assert_eq!(medians.len(), 2);
        assert_eq!(medians[0].point.value.as_deref(), Some("1"));
        assert_eq!(
            medians[0].point.round, 3,
            "20,000 is the middle of 10, 20 and 30 thousand"
        );
        assert_eq!(medians[0].rounds, 3);
        let close = |range: Option<(f64, f64)>, (lowest, highest): (f64, f64)| {
            range.is_some_and(|(low, high)| {
                (low - lowest).abs() < 1e-6 && (high - highest).abs() < 1e-6
            })
        };
        assert!(
            close(medians[0].ratio_range, (0.25, 0.75)),
            "{:?}",
            medians[0].ratio_range
        );
        assert!(
            medians[0]
                .ratio
                .is_some_and(|ratio| (ratio - 0.5).abs() < 1e-6)
        );
        assert_eq!(medians[1].point.round, 3);
        assert!(
            close(medians[1].ratio_range, (0.5, 1.0)),
            "{:?}",
            medians[1].ratio_range
        );
        // Value 2 has the one fastest round (50,000), and also the faster median (25,000).
        let (best, _) = sweep.best().expect("a best value");
        assert_eq!((best.value.as_deref(), best.round), (Some("2"), 3));
    }

    #[test]
    fn one_lucky_round_does_not_make_a_value_the_best() {
        let sweep = rounds(
            vec![
                ("1", 1, 90_000.0, 40_000.0),
                ("2", 1, 30_000.0, 40_000.0),
                ("1", 2, 10_000.0, 40_000.0),
                ("2", 2, 31_000.0, 40_000.0),
            ],
            2,
        );
        // With two rounds the median is the lower one: 10,000 for value 1, 30,000 for value 2.
        let (best, why) = sweep.best().expect("a best value");
        assert_eq!(best.value.as_deref(), Some("2"));
        assert!(why.contains("30000 msgs/s"), "{why}");
    }

    #[test]
    fn one_slow_open_loop_does_not_rule_a_value_out() {
        let mut sweep = rounds(
            vec![
                ("1", 1, 30_000.0, 40_000.0),
                ("2", 1, 20_000.0, 40_000.0),
                ("1", 2, 31_000.0, 40_000.0),
                ("2", 2, 21_000.0, 40_000.0),
                ("1", 3, 32_000.0, 40_000.0),
                ("2", 3, 22_000.0, 40_000.0),
            ],
            3,
        );
        // Value 1's median drain (round 2) met a busy moment in its open loop.
        for (point, p99) in sweep
            .points
            .iter_mut()
            .zip([20.0, 20.0, 120.0, 20.0, 25.0, 20.0])
        {
            point.open_loop = Some(open_loop(p99));
        }
        let medians = sweep.medians();
        assert_eq!(medians[0].point.round, 2);
        assert_eq!(medians[0].p99_ms, Some(25.0));
        let (best, why) = sweep.best().expect("a best value");
        assert_eq!(best.value.as_deref(), Some("1"), "{why}");
        assert!(
            sweep
                .table()
                .lines()
                .nth(2)
                .is_some_and(|row| row.contains("median p99 25.0 ms"))
        );
    }

    #[test]
    fn with_rounds_the_table_labels_medians_and_lists_every_round() {
        let mut sweep = rounds(
            vec![
                ("1", 1, 30_000.0, 40_000.0),
                ("1", 2, 10_000.0, 40_000.0),
                ("1", 3, 20_000.0, 40_000.0),
            ],
            3,
        );
        if let Some(drain) = sweep.points[1].drain.as_mut() {
            drain.null_consumer_first = true;
        }
        let table = sweep.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[2].starts_with(
                "| 1 (median of 3; median ratio 0.50, from 0.25 to 0.75) | 20000 | 40000 | 0.50 |"
            ),
            "{}",
            lines[2]
        );
        assert_eq!(lines[4], "Every round:");
        assert!(lines[8].starts_with("| 1 #1 | 30000 |"), "{}", lines[8]);
        assert!(
            lines[9].starts_with("| 1 #2 (null consumer first) | 10000 |"),
            "{}",
            lines[9]
        );
        assert!(lines[10].starts_with("| 1 #3 | 20000 |"), "{}", lines[10]);
        assert_eq!(lines.len(), 11);
        let json = sweep.to_json();
        assert_eq!(json["rounds"], 3);
        assert_eq!(json["medians"][0]["median_round"], 3);
        assert_eq!(json["medians"][0]["rate_ratio_min"], 0.25);
        assert_eq!(json["points"][1]["round"], 2);
        assert_eq!(json["points"][1]["drain"]["null_consumer_first"], true);
        assert_eq!(json["points"][0]["drain"]["null_consumer_first"], false);
    }

    #[test]
    fn the_table_has_a_row_per_value_and_dashes_for_what_was_not_measured() {
        let sweep = report(vec![
            ("100", Some(20_000.0), None),
            ("500", None, Some(25.0)),
        ]);
        let table = sweep.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("| influx.batch_max_points | drain msgs/s"));
        assert!(
            lines[2].starts_with("| 100 | 20000 | 40000 | 0.50 | – | 20.0 | 1.00 | – | 40 | – |"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with(
                "| 500 | – | – | – | – | – | – | – | – | 5000 | 3.0 | 25.0 | 37.5 | 50.0 | 990/990 |"
            ),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn writes_json_and_svg() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sweep = report(vec![
            ("100", Some(20_000.0), Some(30.0)),
            ("500", Some(25_000.0), Some(40.0)),
        ]);
        let (json_path, svg_path) = sweep
            .write_files(dir.path(), "sweep-batch")
            .expect("written");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json_path).expect("json"))
                .expect("parses");
        assert_eq!(json["best"]["value"], "500");
        assert_eq!(json["points"][0]["drain"]["rate_ratio"], 0.5);
        assert_eq!(json["points"][1]["open_loop"]["latency"]["p99_ms"], 40.0);
        assert_eq!(json["commit"], "abc1234");
        let svg = std::fs::read_to_string(svg_path).expect("svg");
        assert!(svg.contains("sluice drain (msgs/s)") && svg.contains("open-loop p99 (ms)"));
    }
}
