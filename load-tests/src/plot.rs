//! The sweep's SVG plot: throughput (top) and open-loop p99 latency (bottom) against the swept
//! setting's values, which sit evenly spaced on the x axis whatever they are (numbers, durations).

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// One value of the swept setting and what was measured at it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotPoint {
    pub label: String,
    /// sluice's pre-load drain, messages/s.
    pub drain_rate: Option<f64>,
    /// The null consumer's drain of the same count in the same run, messages/s.
    pub null_consumer_rate: Option<f64>,
    /// Open-loop p99, milliseconds.
    pub p99_ms: Option<f64>,
}

const WIDTH: u32 = 900;
const PANEL_HEIGHT: u32 = 360;

/// Draws the plot into `path` (an SVG file).
pub fn plot_sweep(
    path: &Path,
    title: &str,
    setting: &str,
    points: &[PlotPoint],
) -> anyhow::Result<()> {
    let has_rates = points
        .iter()
        .any(|point| point.drain_rate.is_some() || point.null_consumer_rate.is_some());
    let has_latency = points.iter().any(|point| point.p99_ms.is_some());
    let panels = u32::from(has_rates) + u32::from(has_latency);
    if points.is_empty() || panels == 0 {
        return Err(anyhow!(
            "nothing to plot: no point has a drain rate or a p99"
        ));
    }
    let root = SVGBackend::new(path, (WIDTH, PANEL_HEIGHT * panels)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let areas = root.split_evenly((panels as usize, 1));
    let mut areas = areas.iter();
    if has_rates && let Some(area) = areas.next() {
        let series = [
            (
                "sluice drain (msgs/s)",
                BLUE,
                points
                    .iter()
                    .map(|point| point.drain_rate)
                    .collect::<Vec<_>>(),
            ),
            (
                "null consumer (msgs/s)",
                RGBColor(150, 150, 150),
                points
                    .iter()
                    .map(|point| point.null_consumer_rate)
                    .collect(),
            ),
        ];
        draw_panel(
            area,
            &format!("{title}: throughput"),
            setting,
            "messages/s",
            points,
            &series,
        )?;
    }
    if has_latency && let Some(area) = areas.next() {
        let series = [(
            "open-loop p99 (ms)",
            RED,
            points.iter().map(|point| point.p99_ms).collect::<Vec<_>>(),
        )];
        draw_panel(
            area,
            &format!("{title}: p99 latency"),
            setting,
            "ms",
            points,
            &series,
        )?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    setting: &str,
    unit: &str,
    points: &[PlotPoint],
    series: &[(&str, RGBColor, Vec<Option<f64>>)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let highest = series
        .iter()
        .flat_map(|(_, _, values)| values.iter().flatten())
        .fold(0.0f64, |highest, &value| highest.max(value));
    let top = if highest > 0.0 { highest * 1.15 } else { 1.0 };
    let labels: Vec<String> = points.iter().map(|point| point.label.clone()).collect();
    let count = i32::try_from(points.len()).context("too many points to plot")?;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((0..count).into_segmented(), 0.0..top)
        .map_err(plot_error)?;
    let label_of = |value: &SegmentValue<i32>| match value {
        SegmentValue::CenterOf(index) | SegmentValue::Exact(index) => usize::try_from(*index)
            .ok()
            .and_then(|index| labels.get(index).cloned())
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc(setting)
        .y_desc(unit)
        .x_labels(points.len())
        .x_label_formatter(&label_of)
        .disable_x_mesh()
        .draw()
        .map_err(plot_error)?;
    for (name, color, values) in series {
        let line: Vec<(SegmentValue<i32>, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(index, value)| Some((SegmentValue::CenterOf(index as i32), (*value)?)))
            .collect();
        if line.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                line.into_iter()
                    .map(|point| Circle::new(point, 4, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow!("drawing the plot: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, drain: Option<f64>, p99: Option<f64>) -> PlotPoint {
        PlotPoint {
            label: label.to_owned(),
            drain_rate: drain,
            null_consumer_rate: drain.map(|rate| rate * 2.0),
            p99_ms: p99,
        }
    }

    #[test]
    fn writes_an_svg_with_both_panels_and_every_series() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sweep.svg");
        let points = [
            point("100", Some(12_000.0), Some(40.0)),
            point("1000", Some(22_000.0), Some(25.0)),
            point("5000", Some(21_000.0), None),
        ];
        plot_sweep(&path, "batch size", "influx.batch_max_points", &points).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "batch size: throughput",
            "batch size: p99 latency",
            "sluice drain (msgs/s)",
            "null consumer (msgs/s)",
            "open-loop p99 (ms)",
            "influx.batch_max_points",
            "1000",
            "5000",
        ] {
            // plotters writes each text on a line of its own, between the tags.
            assert!(
                svg.lines().any(|line| line.trim() == text),
                "the plot lacks the text {text:?}"
            );
        }
        // Each series is a line in its colour (and a mark in the legend).
        for colour in ["#0000FF", "#969696", "#FF0000"] {
            let lines = svg
                .lines()
                .filter(|line| line.starts_with("<polyline") && line.contains(colour))
                .count();
            assert_eq!(lines, 2, "series {colour}: its line and its legend mark");
        }
    }

    #[test]
    fn a_drain_only_sweep_has_one_panel() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("drain.svg");
        plot_sweep(
            &path,
            "prefetch",
            "amqp.prefetch",
            &[point("1000", Some(1.0), None)],
        )
        .expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg written");
        assert!(svg.contains("prefetch: throughput"));
        assert!(!svg.contains("p99 latency"));
    }

    #[test]
    fn nothing_measured_is_an_error_not_an_empty_plot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("empty.svg");
        assert!(plot_sweep(&path, "x", "y", &[point("1", None, None)]).is_err());
        assert!(plot_sweep(&path, "x", "y", &[]).is_err());
    }
}
