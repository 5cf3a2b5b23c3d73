//! Charts drawn on the server as SVG with `plotters` (no fonts needed: its SVG text is `<text>`
//! the browser lays out), so a page needs nothing from the network and a script gets the same
//! picture a browser shows.

use chrono::{DateTime, Duration, Utc};
use plotters::prelude::*;

use crate::data::{Candle, Share, SnapshotPoint};
use crate::{Error, Result};

const UP: RGBColor = RGBColor(22, 163, 74);
const DOWN: RGBColor = RGBColor(220, 38, 38);
const VWAP: RGBColor = RGBColor(37, 99, 235);

fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Internal(format!("chart: {e}"))
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A candlestick chart with the VWAP line over it and volume bars under it.
pub fn candles(candles: &[Candle], title: &str) -> Result<String> {
    let points: Vec<(DateTime<Utc>, &Candle)> = candles
        .iter()
        .filter_map(|c| Some((time(&c.window_start)?, c)))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            root.titled(&format!("{title}: no candles"), ("sans-serif", 18))
                .map_err(drawing)?;
            root.present().map_err(drawing)?;
            drop(root);
            return Ok(svg);
        };
        let width = points
            .get(1)
            .map_or(Duration::minutes(1), |(t, _)| *t - first.0)
            .max(Duration::seconds(1));
        let (start, end) = (first.0 - width, last.0 + width);
        let low = points
            .iter()
            .map(|(_, c)| Candle::float(&c.low))
            .fold(f64::INFINITY, f64::min);
        let high = points
            .iter()
            .map(|(_, c)| Candle::float(&c.high))
            .fold(f64::NEG_INFINITY, f64::max);
        let pad = ((high - low) * 0.05).max(high.abs() * 1e-6).max(1e-9);
        let (upper, lower) = root.split_vertically(340);
        let mut chart = ChartBuilder::on(&upper)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(80)
            .build_cartesian_2d(start..end, (low - pad)..(high + pad))
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|t| t.format("%m-%d %H:%M").to_string())
            .draw()
            .map_err(drawing)?;
        let bar = ((860.0 / points.len() as f64) * 0.7).clamp(1.0, 12.0) as u32;
        chart
            .draw_series(points.iter().map(|(t, c)| {
                CandleStick::new(
                    *t,
                    Candle::float(&c.open),
                    Candle::float(&c.high),
                    Candle::float(&c.low),
                    Candle::float(&c.close),
                    UP.filled(),
                    DOWN.filled(),
                    bar,
                )
            }))
            .map_err(drawing)?;
        chart
            .draw_series(LineSeries::new(
                points
                    .iter()
                    .filter_map(|(t, c)| Some((*t, Candle::float(c.vwap.as_ref()?)))),
                VWAP.stroke_width(2),
            ))
            .map_err(drawing)?
            .label("VWAP")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], VWAP));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(drawing)?;
        volume_bars(&lower, &points, start..end)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

fn volume_bars(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    points: &[(DateTime<Utc>, &Candle)],
    range: std::ops::Range<DateTime<Utc>>,
) -> Result<()> {
    let volume = |c: &Candle| c.volume.as_ref().map_or(0.0, |v| Candle::float(v));
    let max = points
        .iter()
        .map(|(_, c)| volume(c))
        .fold(0.0, f64::max)
        .max(1e-9);
    let half = points
        .get(1)
        .map_or(Duration::seconds(20), |(t, _)| (*t - points[0].0) / 3);
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .x_label_area_size(0)
        .y_label_area_size(80)
        .build_cartesian_2d(range, 0.0..max * 1.05)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .y_labels(3)
        .y_desc("volume")
        .disable_x_mesh()
        .draw()
        .map_err(drawing)?;
    chart
        .draw_series(points.iter().map(|(t, c)| {
            let color = if Candle::float(&c.close) >= Candle::float(&c.open) {
                UP
            } else {
                DOWN
            };
            Rectangle::new([(*t - half, 0.0), (*t + half, volume(c))], color.filled())
        }))
        .map_err(drawing)?;
    Ok(())
}

/// A table's live data files after each snapshot: compaction shows as a drop.
pub fn files_over_time(history: &[SnapshotPoint], title: &str) -> Result<String> {
    let points: Vec<(DateTime<Utc>, f64)> = history
        .iter()
        .filter_map(|p| Some((time(&p.committed_at)?, p.files as f64)))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            root.titled(&format!("{title}: no snapshots"), ("sans-serif", 16))
                .map_err(drawing)?;
            root.present().map_err(drawing)?;
            drop(root);
            return Ok(svg);
        };
        let max = points.iter().map(|p| p.1).fold(1.0, f64::max);
        let end = if last.0 > first.0 {
            last.0
        } else {
            first.0 + Duration::seconds(1)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(60)
            .build_cartesian_2d(first.0..end, 0.0..max * 1.1)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(4)
            .y_desc("data files")
            .x_label_formatter(&|t| t.format("%m-%d %H:%M").to_string())
            .draw()
            .map_err(drawing)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                VWAP.stroke_width(2),
            ))
            .map_err(drawing)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(t, f)| Circle::new((*t, *f), 3, VWAP.filled())),
            )
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// Line colours, one per asset in turn.
const PALETTE: [RGBColor; 6] = [
    RGBColor(37, 99, 235),
    RGBColor(234, 88, 12),
    RGBColor(22, 163, 74),
    RGBColor(147, 51, 234),
    RGBColor(220, 38, 38),
    RGBColor(100, 116, 139),
];

/// Dominance % per asset over time (seed 004's dashboard): one line per symbol.
pub fn dominance_over_time(rows: &[Share], title: &str) -> Result<String> {
    let mut lines: std::collections::BTreeMap<&str, Vec<(DateTime<Utc>, f64)>> =
        std::collections::BTreeMap::new();
    for r in rows {
        if let (Some(t), Some(d)) = (time(&r.snapshot_time), r.dominance_pct) {
            lines.entry(r.symbol.as_str()).or_default().push((t, d));
        }
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let first = lines.values().flatten().map(|p| p.0).min();
        let last = lines.values().flatten().map(|p| p.0).max();
        let (Some(first), Some(last)) = (first, last) else {
            root.titled(&format!("{title}: no snapshots"), ("sans-serif", 16))
                .map_err(drawing)?;
            root.present().map_err(drawing)?;
            drop(root);
            return Ok(svg);
        };
        let end = last.max(first + Duration::seconds(1));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(50)
            .build_cartesian_2d(first..end, 0.0..100.0)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .y_desc("dominance %")
            .x_label_formatter(&|t| t.format("%m-%d %H:%M").to_string())
            .draw()
            .map_err(drawing)?;
        for (i, (symbol, points)) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(drawing)?
                .label(*symbol)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// One run on the timeline: its job (a lane), its span and its state.
#[derive(Debug, Clone)]
pub struct RunSpan {
    pub job: String,
    pub start: DateTime<Utc>,
    /// The end, or now for a run still going.
    pub end: DateTime<Utc>,
    pub state: String,
}

/// The colour of a run's state on the timeline.
pub fn state_color(state: &str) -> RGBColor {
    match state {
        "SUCCEEDED" => UP,
        "FAILED" | "TIMEOUT" => DOWN,
        "RUNNING" | "STARTING" => VWAP,
        _ => RGBColor(148, 163, 184),
    }
}

/// The run history as a timeline: one lane per job, one bar per run from its start to its end,
/// coloured by its state.
pub fn runs_timeline(runs: &[RunSpan]) -> Result<String> {
    let mut lanes: Vec<&str> = runs.iter().map(|r| r.job.as_str()).collect();
    lanes.sort_unstable();
    lanes.dedup();
    let mut svg = String::new();
    {
        let height = 80 + 36 * lanes.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let first = runs.iter().map(|r| r.start).min();
        let last = runs.iter().map(|r| r.end).max();
        let (Some(first), Some(last)) = (first, last) else {
            root.titled("runs: none yet", ("sans-serif", 16))
                .map_err(drawing)?;
            root.present().map_err(drawing)?;
            drop(root);
            return Ok(svg);
        };
        let span = (last - first).max(Duration::seconds(1));
        // A bar at least 0.4 % of the axis wide, so a run of a few milliseconds shows.
        let least = span / 250;
        let mut chart = ChartBuilder::on(&root)
            .caption("runs", ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(140)
            .build_cartesian_2d(
                first..first + span + least,
                (0..lanes.len()).into_segmented(),
            )
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .disable_y_mesh()
            .label_style(("sans-serif", 13))
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) => {
                    lanes.get(*i).map_or(String::new(), |l| (*l).to_string())
                }
                _ => String::new(),
            })
            .x_label_formatter(&|t| t.format("%m-%d %H:%M:%S").to_string())
            .draw()
            .map_err(drawing)?;
        chart
            .draw_series(runs.iter().map(|r| {
                let lane = lanes.iter().position(|l| *l == r.job).unwrap_or(0);
                let end = r.end.max(r.start + least);
                Rectangle::new(
                    [
                        (r.start, SegmentValue::Exact(lane)),
                        (end, SegmentValue::Exact(lane + 1)),
                    ],
                    state_color(&r.state).filled(),
                )
            }))
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn n(v: &str) -> Box<RawValue> {
        RawValue::from_string(v.into()).unwrap()
    }

    fn candle(minute: u32, open: &str, close: &str) -> Candle {
        Candle {
            symbol: "BTC-USD".into(),
            window_start: format!("2026-11-30T10:{minute:02}:00Z"),
            window_end: format!("2026-11-30T10:{:02}:00Z", minute + 1),
            open: n(open),
            high: n("43100.5"),
            low: n("42900.25"),
            close: n(close),
            volume: Some(n("1.5")),
            vwap: Some(n("43000")),
            notional: None,
            quote_count: 60,
            trade_count: 3,
        }
    }

    #[test]
    fn a_candle_chart_draws_one_body_per_candle_and_the_vwap() {
        let svg = candles(
            &[candle(0, "43000", "43050"), candle(1, "43050", "42950")],
            "BTC-USD 1m",
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("BTC-USD 1m") && svg.contains("VWAP"));
        // One rising (green) and one falling (red) body, and two volume bars of those colours.
        assert_eq!(svg.matches("fill=\"#16A34A\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("fill=\"#DC2626\"").count(), 2, "{svg}");
        let empty = candles(&[], "ETH-USD 1h").unwrap();
        assert!(empty.contains("ETH-USD 1h: no candles"));
    }
}
