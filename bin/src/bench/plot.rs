//! `latency.svg` / `throughput.svg` and PNG twins, from a report.
//!
//! plotters draws the SVG (its SVG backend needs no font: text stays text).
//! resvg rasterizes that SVG into the PNG with an embedded font (an ASCII
//! subset of DejaVu Sans, see `font/LICENSE-DejaVu.txt`), so no fontconfig or
//! system font is needed. plotters is built without a font feature on
//! purpose: features are unified across the workspace, and criterion (in
//! `benches/`) draws with the same plotters, which a font backend without
//! registered fonts would break.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use resvg::{tiny_skia, usvg};

use super::stats::{LatencySummary, Phase, Report, Second};

static FONT: &[u8] = include_bytes!("font/HalyardBenchSans.ttf");
const FONT_FAMILY: &str = "Halyard Bench Sans";

const SIZE: (u32, u32) = (960, 560);
const RECEIPT_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const E2E_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const SENT_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RECEIVED_COLOR: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const MARK_COLOR: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// Rasterizes an SVG document into PNG bytes with the embedded font.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, String> {
    let mut opt = usvg::Options {
        font_family: FONT_FAMILY.to_string(),
        ..usvg::Options::default()
    };
    let db = opt.fontdb_mut();
    db.load_font_data(FONT.to_vec());
    db.set_sans_serif_family(FONT_FAMILY);
    let tree = usvg::Tree::from_str(svg, &opt).map_err(err)?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| "empty plot".to_string())?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(err)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// x position of a percentile on the "nines" axis: 0 % -> 0, 90 % -> 1,
/// 99 % -> 2, 99.9 % -> 3, ...
pub fn nines(percentile: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 {
        f64::INFINITY
    } else {
        -rest.log10()
    }
}

/// Label for a position on the nines axis.
pub fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let whole = (x - x.round()).abs() < 1e-9;
    let decimals = if whole {
        (x.round() as i64 - 2).max(0) as usize
    } else {
        (x.ceil() as i64 - 1).max(1) as usize
    };
    format!("{p:.decimals$}%")
}

/// Writes the plots into `dir` (created if missing) and returns the files.
pub fn write_plots(dir: &Path, r: &Report) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut plots = Vec::new();
    if r.latency_ms.send_to_receipt.is_some() || r.latency_ms.end_to_end.is_some() {
        let mut svg = String::new();
        draw_latency(
            SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
            r,
        )?;
        plots.push(("latency", svg));
    }
    let mut svg = String::new();
    draw_throughput(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        r,
    )?;
    plots.push(("throughput", svg));
    let mut files = Vec::new();
    for (name, svg) in plots {
        let png = svg_to_png(&svg)?;
        for (ext, bytes) in [("svg", svg.into_bytes()), ("png", png)] {
            let path = dir.join(format!("{name}.{ext}"));
            std::fs::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            files.push(path);
        }
    }
    Ok(files)
}

fn latency_points(s: &LatencySummary) -> Vec<(f64, f64)> {
    s.percentiles
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| (nines(p.percentile), p.ms))
        .collect()
}

fn draw_latency<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    r: &Report,
) -> Result<(), String> {
    let lines: Vec<(&str, &LatencySummary, RGBColor)> = [
        (
            "send -> receipt",
            r.latency_ms.send_to_receipt.as_ref(),
            RECEIPT_COLOR,
        ),
        ("end-to-end", r.latency_ms.end_to_end.as_ref(), E2E_COLOR),
    ]
    .into_iter()
    .filter_map(|(n, s, c)| s.map(|s| (n, s, c)))
    .collect();
    let x_max = lines
        .iter()
        .flat_map(|(_, s, _)| latency_points(s))
        .map(|(x, _)| x)
        .fold(1.0f64, f64::max);
    // Whole nines, without rounding 99.999 % (x = 5.000000001) up to 6.
    let x_max = (x_max - 1e-6).ceil();
    let y_max = lines
        .iter()
        .flat_map(|(_, s, _)| latency_points(s))
        .map(|(_, y)| y)
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.1;
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: latency by percentile", r.label),
            ("sans-serif", 22),
        )
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (name, s, color) in &lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(latency_points(s), color.stroke_width(2)))
            .map_err(err)?
            .label(format!(
                "{name}: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms",
                s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn draw_throughput<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    r: &Report,
) -> Result<(), String> {
    let secs = r.per_second.len().max(1) as f64;
    let y_max = r
        .per_second
        .iter()
        .map(|s| s.sent.max(s.received))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.15;
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: messages per second", r.label),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..secs, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since producers started")
        .y_desc("msg/s")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    // The measured window, as two vertical marks.
    let first = r.per_second.iter().position(|s| s.phase == Phase::Measure);
    let last = r.per_second.iter().rposition(|s| s.phase == Phase::Measure);
    if let (Some(a), Some(b)) = (first, last) {
        let start = r.config.warmup_secs.min(a as f64 + 1.0);
        let end = (r.config.warmup_secs + r.config.duration_secs).min(b as f64 + 1.0);
        for (i, x) in [start, end].into_iter().enumerate() {
            let s = chart
                .draw_series(DashedLineSeries::new(
                    vec![(x, 0.0), (x, y_max)],
                    6,
                    4,
                    MARK_COLOR.stroke_width(2),
                ))
                .map_err(err)?;
            if i == 0 {
                s.label("measured window").legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], MARK_COLOR.stroke_width(2))
                });
            }
        }
    }
    // Received drawn first and wider, so sent stays visible on top when the
    // two are equal.
    type Line = (&'static str, RGBColor, u32, fn(&Second) -> u64);
    let series: [Line; 2] = [
        ("received", RECEIVED_COLOR, 5, |s| s.received),
        ("sent", SENT_COLOR, 2, |s| s.sent),
    ];
    for (name, color, width, get) in series {
        // Each second's count drawn as a step over that second.
        let pts: Vec<(f64, f64)> = r
            .per_second
            .iter()
            .flat_map(|s| {
                let v = get(s) as f64;
                [(s.second as f64, v), (s.second as f64 + 1.0, v)]
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(width)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!(nines(100.0).is_infinite());
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
        assert_eq!(nines_label(0.5), "68.4%");
    }

    #[test]
    fn writes_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("halyard-bench-plot-{}", std::process::id()));
        let r = super::super::stats::tests::sample_report();
        let files = write_plots(&dir, &r).expect("plots");
        assert_eq!(files.len(), 4);
        let svg = std::fs::read_to_string(dir.join("latency.svg")).expect("svg");
        assert!(svg.contains("<svg") && svg.contains("latency by percentile"));
        assert!(svg.contains("99.9%"));
        let png = std::fs::read(dir.join("throughput.png")).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
