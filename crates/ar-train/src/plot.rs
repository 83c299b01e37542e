//! SVG line charts for run directories and reports (accuracy curves, gradient angles), drawn
//! with plotters: round-number axis ticks, a band per series where given, the legend beside
//! the plot.

use plotters::prelude::*;

/// One named line of `(x, y)` points, optionally with a shaded band around it.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// `(x, low, high)` in drawing order: a band drawn under the line (e.g. the range over
    /// seeds); empty for none.
    pub band: Vec<(f64, f64, f64)>,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The plot's size; the legend column on its right is as wide as its longest name needs.
const PLOT: (u32, u32) = (560, 420);
/// Legend rows: first row's baseline, spacing, and the width of a character (13 px sans-serif).
const LEGEND_TOP: u32 = 40;
const LEGEND_ROW: u32 = 20;
const CHAR_WIDTH: f64 = 7.5;

/// An SVG line chart with axes, ticks, a title and a legend. Non-finite points are left out.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let mut svg = String::new();
    draw(&mut svg, title, x_label, y_label, series).expect("drawing into a string cannot fail");
    svg
}

fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// The drawn ranges: every finite point and band end, the y range padded by 5%.
fn ranges(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let band_ends =
        series.iter().flat_map(|s| s.band.iter().flat_map(|&(x, l, h)| [(x, l), (x, h)]));
    let points = series.iter().flat_map(|s| s.points.iter().copied()).chain(band_ends);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points.filter(finite) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        y1 = y0 + 1.0;
    }
    let pad = 0.05 * (y1 - y0);
    ((x0, x1), (y0 - pad, y1 + pad))
}

fn draw<'a>(
    svg: &'a mut String,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let ((x0, x1), (y0, y1)) = ranges(series);
    let longest = series.iter().map(|s| s.name.chars().count()).max().unwrap_or(0);
    let legend_width = 50 + (CHAR_WIDTH * longest as f64).ceil() as u32;
    let height = PLOT.1.max(LEGEND_TOP + LEGEND_ROW * series.len() as u32 + 10);
    let root = SVGBackend::with_string(svg, (PLOT.0 + legend_width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(PLOT.0);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(8)
        .y_labels(8)
        .max_light_lines(0)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let band: Vec<&(f64, f64, f64)> = s
            .band
            .iter()
            .filter(|b| b.0.is_finite() && b.1.is_finite() && b.2.is_finite())
            .collect();
        if band.len() > 1 {
            let upper = band.iter().map(|&&(x, _, hi)| (x, hi));
            let outline: Vec<(f64, f64)> =
                upper.chain(band.iter().rev().map(|&&(x, lo, _)| (x, lo))).collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.15).filled())))?;
        }
        let points: Vec<(f64, f64)> = s.points.iter().copied().filter(finite).collect();
        if points.len() == 1 {
            chart.draw_series(std::iter::once(Circle::new(points[0], 3, color.filled())))?;
        } else {
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        }
        let y = (LEGEND_TOP + LEGEND_ROW * i as u32) as i32;
        legend.draw(&PathElement::new(vec![(8, y), (30, y)], color.stroke_width(3)))?;
        legend.draw(&Text::new(s.name.clone(), (36, y - 7), ("sans-serif", 13)))?;
    }
    root.present()?;
    Ok(())
}

/// A tick label: round values without trailing zeros (`5`, `92.5`), tiny ones in exponent form.
fn tick(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        return format!("{v:.1e}");
    }
    let fixed = format!("{v:.4}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_line_per_series_and_escapes_text() {
        let s = vec![
            Series {
                name: "ar <test>".into(),
                points: vec![(1.0, 0.5), (2.0, 0.9)],
                band: vec![(1.0, 0.4, 0.6), (2.0, 0.85, 0.97)],
            },
            Series {
                name: "bp".into(),
                points: vec![(1.0, 0.6), (2.0, f64::NAN), (3.0, 0.95)],
                band: vec![],
            },
        ];
        let svg = line_chart("accuracy", "epoch", "test accuracy", &s);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Each series: its line and its legend key, in its colour (the axes are black).
        let upper = svg.to_uppercase();
        for color in ["STROKE=\"#1F77B4\"", "STROKE=\"#D62728\""] {
            let lines = upper.lines().filter(|l| l.starts_with("<POLYLINE") && l.contains(color));
            assert_eq!(lines.count(), 2, "{color}: {svg}");
        }
        assert_eq!(svg.matches("<polygon").count(), 1, "one band");
        assert!(svg.contains("ar &lt;test&gt;"));
        assert!(!svg.contains("NaN"));
        assert!(
            svg.contains(">\n1\n</text>") && svg.contains(">\n2.5\n</text>"),
            "round ticks: {svg}"
        );
    }

    #[test]
    fn the_legend_column_fits_its_longest_name_and_every_row() {
        let names = ["a", &"x".repeat(100)];
        let many: Vec<Series> = (0..30)
            .map(|i| Series {
                name: names[i % 2].to_string(),
                points: vec![(0.0, i as f64)],
                band: vec![],
            })
            .collect();
        let svg = line_chart("t", "x", "y", &many);
        let size = |key: &str| -> u32 {
            let at = svg.find(&format!("{key}=\"")).unwrap() + key.len() + 2;
            svg[at..].split('"').next().unwrap().parse().unwrap()
        };
        assert!(size("width") >= 560 + 750, "{}", size("width"));
        assert!(size("height") >= 40 + 20 * 30, "{}", size("height"));
    }

    #[test]
    fn ticks_are_written_without_trailing_zeros() {
        let shown: Vec<String> = [5.0, 92.5, 0.1 + 0.2, 0.0, -0.0, 2e-5, 1234.0].map(tick).into();
        assert_eq!(shown, ["5", "92.5", "0.3", "0", "0", "2.0e-5", "1234"]);
    }
}
