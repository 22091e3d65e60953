//! A time chart in plain SVG (no JS dependency): a UTC time axis with ticks that fit the
//! window, a value axis with units and nice ticks, several series told apart by dash pattern and
//! label as well as colour, gaps where buckets have no samples (shaded, and "no data" on hover)
//! and a "no data in this window" face distinct from a zero line, one hover column per bucket
//! whose `<title>` names every series' value with its unit, and vertical event markers with
//! their label on hover. Server-rendered, so it reads without wasm. Each legend item carries
//! `data-series` (its label) and `data-last` (the newest bucket's value; empty without samples).

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::model::charts::{ChartMarker, MarkerKind};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 190.0;
const PAD_LEFT: f64 = 68.0;
const PAD_RIGHT: f64 = 14.0;
const PAD_TOP: f64 = 14.0;
const PAD_BOTTOM: f64 = 26.0;
/// Time ticks at most this many (labels are ~60 px wide).
const MAX_TIME_TICKS: i64 = 6;
/// Series styles (colour + dash) cycle after this many; CSS defines `series-0` … `series-5`.
pub const SERIES_STYLES: usize = 6;

/// What the values measure, for axis labels and hover text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    RequestsPerSecond,
    Percent,
    Milliseconds,
}

impl Unit {
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::RequestsPerSecond => "req/s",
            Unit::Percent => "%",
            Unit::Milliseconds => "ms",
        }
    }

    /// A value with its unit, with as many decimals as its size needs.
    pub fn format(self, value: f64) -> String {
        let abs = value.abs();
        let number = if abs == 0.0 {
            "0".to_owned()
        } else if abs >= 100.0 {
            format!("{value:.0}")
        } else if abs >= 10.0 {
            format!("{value:.1}")
        } else if abs >= 0.1 {
            format!("{value:.2}")
        } else {
            format!("{value:.3}")
        };
        match self {
            Unit::Percent => format!("{number} %"),
            other => format!("{number} {}", other.suffix()),
        }
    }
}

impl Unit {
    /// An axis tick with as many decimals as the tick step needs, so a column of ticks reads
    /// evenly ("0.1 req/s, 0.2 req/s", "5 %, 10 %").
    pub fn format_tick(self, value: f64, step: f64) -> String {
        let decimals = if step > 0.0 && step < 1.0 { (-step.log10().floor()) as usize } else { 0 };
        let number = format!("{value:.decimals$}");
        match self {
            Unit::Percent => format!("{number} %"),
            other => format!("{number} {}", other.suffix()),
        }
    }
}

/// One line on a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSeries {
    pub label: String,
    /// One value per bucket; `None` where the bucket had no samples.
    pub values: Vec<Option<f64>>,
}

/// 1, 2 or 5 times a power of ten: the smallest such step at or above `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let scaled = raw / magnitude;
    let nice = if scaled <= 1.0 {
        1.0
    } else if scaled <= 2.0 {
        2.0
    } else if scaled <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Value-axis ticks from 0 to a nice top at or above `max` (about four steps). A chart of
/// zeros or of nothing still gets an axis (0 to 1).
pub fn value_ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let step = nice_step(max / 4.0);
    let steps = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=steps).map(|i| i as f64 * step).collect()
}

/// Tick sizes for the time axis, in seconds.
const TIME_STEPS: [i64; 17] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200];

/// The time-axis tick step (seconds) for a span: the smallest round step giving at most
/// [`MAX_TIME_TICKS`] ticks; a day for spans beyond 3.5 days.
pub fn time_tick_step(span_seconds: i64) -> i64 {
    TIME_STEPS.into_iter().find(|step| span_seconds / step <= MAX_TIME_TICKS).unwrap_or(86_400)
}

/// Tick times (epoch ms) inside `[from, to]`, on multiples of the step since the epoch (so UTC
/// minutes and hours).
pub fn time_ticks(from_ms: i64, to_ms: i64) -> Vec<i64> {
    let step = time_tick_step((to_ms - from_ms) / 1000) * 1000;
    let first = from_ms.div_euclid(step) * step + if from_ms.rem_euclid(step) == 0 { 0 } else { step };
    (0..).map(|i| first + i * step).take_while(|&ms| ms <= to_ms).collect()
}

/// A tick label that fits the span: seconds for short windows, the date for long ones.
pub fn time_label(at: DateTime<Utc>, span_seconds: i64) -> String {
    let step = time_tick_step(span_seconds);
    if span_seconds > 86_400 {
        at.format("%d %b %H:%M").to_string()
    } else if step < 60 {
        at.format("%H:%M:%S").to_string()
    } else {
        at.format("%H:%M").to_string()
    }
}

/// Runs of consecutive present values, as (bucket index, value) — one polyline each.
pub fn segments(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut runs = vec![Vec::new()];
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(v) if v.is_finite() => runs.last_mut().expect("never empty").push((i, *v)),
            _ => {
                if runs.last().is_some_and(|r| !r.is_empty()) {
                    runs.push(Vec::new());
                }
            }
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

fn marker_glyph(kind: MarkerKind) -> &'static str {
    match kind {
        MarkerKind::HealthDown => "✕",
        MarkerKind::HealthUp => "●",
        MarkerKind::Release => "◆",
    }
}

fn marker_class(kind: MarkerKind) -> &'static str {
    match kind {
        MarkerKind::HealthDown => "chart-marker is-down",
        MarkerKind::HealthUp => "chart-marker is-up",
        MarkerKind::Release => "chart-marker is-release",
    }
}

/// A chart of `series` over the buckets of a window. `y_max` fixes the top (e.g. 100 %).
#[component]
pub fn TimeChart(
    #[prop(into)] title: String,
    unit: Unit,
    buckets: Vec<DateTime<Utc>>,
    bucket_seconds: i64,
    to: DateTime<Utc>,
    series: Vec<ChartSeries>,
    #[prop(optional)] markers: Vec<ChartMarker>,
    #[prop(optional)] y_max: Option<f64>,
    /// What to say when nothing was recorded, e.g. "No requests recorded in this window".
    #[prop(into)]
    empty_text: String,
) -> impl IntoView {
    let plot_w = WIDTH - PAD_LEFT - PAD_RIGHT;
    let plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM;
    let bottom = PAD_TOP + plot_h;
    let bucket_ms = bucket_seconds.max(1) * 1000;
    let x0 = buckets.first().map_or(to.timestamp_millis() - bucket_ms, |b| b.timestamp_millis());
    let x1 = to.timestamp_millis().max(x0 + 1);
    let x = move |ms: i64| PAD_LEFT + ((ms.clamp(x0, x1) - x0) as f64 / (x1 - x0) as f64) * plot_w;
    let centre = move |i: usize| x(x0 + i as i64 * bucket_ms + bucket_ms / 2);

    let has_data = series.iter().any(|s| s.values.iter().any(Option::is_some));
    let data_max = series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0_f64, |a, b| a.max(*b));
    let ticks = value_ticks(y_max.unwrap_or(0.0).max(data_max));
    let top = ticks.last().copied().unwrap_or(1.0);
    let step = ticks.get(1).copied().unwrap_or(top);
    let y = move |v: f64| bottom - (v / top).clamp(0.0, 1.0) * plot_h;

    let value_axis = ticks
        .iter()
        .map(|&tick| {
            view! {
                <line class="chart-grid" x1=PAD_LEFT y1=y(tick) x2=WIDTH - PAD_RIGHT y2=y(tick) />
                // Without data a scale would suggest values: the axis stays, its numbers don't.
                {has_data.then(|| view! {
                    <text class="chart-tick" x=PAD_LEFT - 6.0 y=y(tick) + 3.5 text-anchor="end">{unit.format_tick(tick, step)}</text>
                })}
            }
        })
        .collect_view();
    let span_seconds = (x1 - x0) / 1000;
    let time_axis = time_ticks(x0, x1)
        .into_iter()
        .filter_map(|ms| DateTime::from_timestamp_millis(ms).map(|at| (ms, at)))
        .map(|(ms, at)| {
            view! {
                <line class="chart-axis" x1=x(ms) y1=bottom x2=x(ms) y2=bottom + 4.0 />
                <text class="chart-tick" x=x(ms) y=HEIGHT - 8.0 text-anchor="middle">{time_label(at, span_seconds)}</text>
            }
        })
        .collect_view();

    // What the pointer is on, spelled out above the chart (in the browser; the `<title>`s give
    // the same text as tooltips before hydration).
    let readout = RwSignal::new(None::<String>);
    // One hover column per bucket, naming every series' value (or "no data").
    let columns = buckets
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let values: Vec<String> = series
                .iter()
                .map(|s| match s.values.get(i).copied().flatten() {
                    Some(v) => format!("{} {}", s.label, unit.format(v)),
                    None => format!("{} no data", s.label),
                })
                .collect();
            let empty = series.iter().all(|s| s.values.get(i).copied().flatten().is_none());
            let title = format!("{} UTC — {}", at.format("%Y-%m-%d %H:%M:%S"), values.join(" · "));
            let left = x(at.timestamp_millis());
            let width = (x(at.timestamp_millis() + bucket_ms) - left).max(0.5);
            let text = title.clone();
            view! {
                <rect class="chart-column" class:is-empty=empty x=left y=PAD_TOP width=width height=plot_h
                    on:mouseenter=move |_| readout.set(Some(text.clone()))>
                    <title>{title}</title>
                </rect>
            }
        })
        .collect_view();

    let lines = series
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let class = format!("chart-line series-{}", index % SERIES_STYLES);
            segments(&s.values)
                .into_iter()
                .map(|run| {
                    if let [(i, v)] = run.as_slice() {
                        // A lone bucket between gaps: a dot, or it would be invisible.
                        view! { <circle class=format!("{class} is-dot") cx=centre(*i) cy=y(*v) r=2.5 /> }.into_any()
                    } else {
                        let points: Vec<String> =
                            run.iter().map(|(i, v)| format!("{:.1},{:.1}", centre(*i), y(*v))).collect();
                        view! { <polyline class=class.clone() points=points.join(" ") /> }.into_any()
                    }
                })
                .collect_view()
        })
        .collect_view();

    let marker_views = markers
        .iter()
        .filter(|m| m.at.timestamp_millis() >= x0 && m.at.timestamp_millis() <= x1)
        .map(|m| {
            let mx = x(m.at.timestamp_millis());
            let label = format!("{} UTC — {}", m.at.format("%H:%M:%S"), m.label);
            let text = label.clone();
            view! {
                <g class=marker_class(m.kind) on:mouseenter=move |_| readout.set(Some(text.clone()))>
                    <title>{label}</title>
                    <line class="chart-marker-hit" x1=mx y1=PAD_TOP x2=mx y2=bottom />
                    <line class="chart-marker-line" x1=mx y1=PAD_TOP x2=mx y2=bottom />
                    <text class="chart-marker-glyph" x=mx y=PAD_TOP - 3.0 text-anchor="middle">{marker_glyph(m.kind)}</text>
                </g>
            }
        })
        .collect_view();

    let legend = series
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let class = format!("chart-line series-{}", index % SERIES_STYLES);
            // The newest bucket with samples, for tests and scripts reading the chart.
            let last = s.values.iter().rev().flatten().next().map(|v| v.to_string()).unwrap_or_default();
            view! {
                <li class="chart-legend-item" data-series=s.label.clone() data-last=last>
                    <svg class="chart-legend-swatch" viewBox="0 0 28 10" width="28" height="10" aria-hidden="true">
                        <line class=class x1="1" y1="5" x2="27" y2="5" />
                    </svg>
                    {s.label.clone()}
                </li>
            }
        })
        .collect_view();
    let no_data = (!has_data).then(|| {
        view! {
            <text class="chart-no-data" x=PAD_LEFT + plot_w / 2.0 y=PAD_TOP + plot_h / 2.0 text-anchor="middle">
                {format!("◌ {empty_text}")}
            </text>
        }
    });
    let aria = format!("{title}, in {}", unit.suffix());
    view! {
        <figure class="chart time-chart" data-has-data=has_data.to_string()>
            <figcaption>
                <strong>{title}</strong>
                <span class="muted">{format!(" ({}, UTC)", unit.suffix())}</span>
                <ul class="chart-legend">{legend}</ul>
            </figcaption>
            <p class="chart-readout" aria-hidden="true">{move || readout.get().unwrap_or_default()}</p>
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") class="chart-svg" role="img" aria-label=aria
                on:mouseleave=move |_| readout.set(None)>
                {value_axis}
                <line class="chart-axis" x1=PAD_LEFT y1=bottom x2=WIDTH - PAD_RIGHT y2=bottom />
                <line class="chart-axis" x1=PAD_LEFT y1=PAD_TOP x2=PAD_LEFT y2=bottom />
                {time_axis}
                {columns}
                {lines}
                {marker_views}
                {no_data}
            </svg>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(37.0), 50.0);
        assert_eq!(nice_step(0.0), 1.0);
    }

    #[test]
    fn value_ticks_start_at_zero_and_reach_just_past_the_maximum() {
        assert_eq!(value_ticks(183.0), vec![0.0, 50.0, 100.0, 150.0, 200.0]);
        assert_eq!(value_ticks(100.0), vec![0.0, 50.0, 100.0]);
        assert_eq!(value_ticks(0.0), vec![0.0, 0.5, 1.0], "zeros still get an axis");
        assert_eq!(value_ticks(4.0), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        let ticks = value_ticks(0.037);
        assert!(ticks.last().copied().unwrap_or(0.0) >= 0.037 && ticks.len() <= 6, "{ticks:?}");
    }

    #[test]
    fn time_ticks_fit_the_span_and_sit_on_round_utc_times() {
        assert_eq!(time_tick_step(15 * 60), 300, "15 min: every 5 min");
        assert_eq!(time_tick_step(3600), 600, "1 h: every 10 min");
        assert_eq!(time_tick_step(6 * 3600), 3600);
        assert_eq!(time_tick_step(24 * 3600), 21_600);
        assert_eq!(time_tick_step(7 * 86_400), 86_400);
        let from = DateTime::parse_from_rfc3339("2026-11-30T01:07:30Z").expect("t").timestamp_millis();
        let ticks = time_ticks(from, from + 3_600_000);
        assert_eq!(ticks.len(), 6);
        assert_eq!(DateTime::from_timestamp_millis(ticks[0]).expect("t").format("%H:%M").to_string(), "01:10");
    }

    #[test]
    fn labels_show_seconds_for_short_spans_and_dates_for_long_ones() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T01:10:00Z").expect("t").with_timezone(&Utc);
        assert_eq!(time_label(at, 120), "01:10:00");
        assert_eq!(time_label(at, 3600), "01:10");
        assert_eq!(time_label(at, 3 * 86_400), "30 Nov 01:10");
    }

    #[test]
    fn missing_buckets_break_a_line_into_segments() {
        let runs = segments(&[Some(1.0), Some(2.0), None, None, Some(0.0), None]);
        assert_eq!(runs, vec![vec![(0, 1.0), (1, 2.0)], vec![(4, 0.0)]], "a zero is a value, a None a gap");
        assert!(segments(&[None, None]).is_empty());
    }

    #[test]
    fn values_carry_their_unit() {
        assert_eq!(Unit::RequestsPerSecond.format(0.333), "0.33 req/s");
        assert_eq!(Unit::Percent.format(20.0), "20.0 %");
        assert_eq!(Unit::Milliseconds.format(182.4), "182 ms");
        assert_eq!(Unit::Milliseconds.format(0.0), "0 ms");
        assert_eq!(Unit::RequestsPerSecond.format_tick(0.4, 0.1), "0.4 req/s");
        assert_eq!(Unit::Percent.format_tick(15.0, 5.0), "15 %");
        assert_eq!(Unit::Percent.format_tick(0.25, 0.05), "0.25 %");
    }
}
