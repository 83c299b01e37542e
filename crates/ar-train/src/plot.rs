//! SVG line charts for run directories and reports (accuracy curves, gradient angles), drawn
//! with plotters: round-number axis ticks, a band per series where given, the legend beside
//! the plot; and charts of many series as panels (one column per group of series, a row
//! zoomed on the band where they differ), every line with its own colour and dash.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
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
    axes(&mut chart, (x_label, y_label), 8)?;
    for (i, s) in series.iter().enumerate() {
        let st = style(i);
        draw_line(&mut chart, s, st, (y0, y1))?;
        let y = (LEGEND_TOP + LEGEND_ROW * i as u32) as i32;
        legend_key(&legend, st, (8, 30), y)?;
        legend.draw(&Text::new(s.name.clone(), (36, y - 7), ("sans-serif", 13)))?;
    }
    root.present()?;
    Ok(())
}

type Chart<'c, 'a> = ChartContext<'c, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Drawn<'a> = Result<(), Box<dyn std::error::Error + 'a>>;

/// The axes of `chart`: about `ticks` round-number ticks each, no minor grid lines.
fn axes<'a>(
    chart: &mut Chart<'_, 'a>,
    (x_label, y_label): (&str, &str),
    ticks: usize,
) -> Drawn<'a> {
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(ticks)
        .y_labels(ticks)
        .max_light_lines(0)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    Ok(())
}

/// Series `s` in style `st` on a chart showing `y0..y1`: its band (clamped to the range), then
/// its line, cut where it leaves the range (a single point drawn as a dot). Non-finite points
/// are left out.
fn draw_line<'a>(
    chart: &mut Chart<'_, 'a>,
    s: &Series,
    st: Style,
    (y0, y1): (f64, f64),
) -> Drawn<'a> {
    let band: Vec<(f64, f64, f64)> = s
        .band
        .iter()
        .filter(|b| b.0.is_finite() && b.1.is_finite() && b.2.is_finite())
        .map(|&(x, lo, hi)| (x, lo.clamp(y0, y1), hi.clamp(y0, y1)))
        .collect();
    if band.len() > 1 {
        let upper = band.iter().map(|&(x, _, hi)| (x, hi));
        let outline: Vec<(f64, f64)> =
            upper.chain(band.iter().rev().map(|&(x, lo, _)| (x, lo))).collect();
        chart.draw_series(std::iter::once(Polygon::new(outline, st.color.mix(0.12).filled())))?;
    }
    let points: Vec<(f64, f64)> = s.points.iter().copied().filter(finite).collect();
    if points.len() == 1 && (y0..=y1).contains(&points[0].1) {
        chart.draw_series(std::iter::once(Circle::new(points[0], 3, st.color.filled())))?;
    }
    for run in clip(&points, y0, y1) {
        let line = st.color.stroke_width(2);
        match st.dash {
            None => chart.draw_series(LineSeries::new(run, line))?,
            Some((on, off)) => chart.draw_series(DashedLineSeries::new(run, on, off, line))?,
        };
    }
    Ok(())
}

/// A legend's key for style `st`: a short thick line from `x.0` to `x.1` at height `y`.
fn legend_key<'a>(
    area: &DrawingArea<SVGBackend<'a>, Shift>,
    st: Style,
    x: (i32, i32),
    y: i32,
) -> Drawn<'a> {
    let (key, line) = (vec![(x.0, y), (x.1, y)], st.color.stroke_width(3));
    match st.dash {
        None => area.draw(&PathElement::new(key, line))?,
        Some((on, off)) => area.draw(&DashedPathElement::new(key, on, off, line))?,
    }
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

/// How a line is drawn: a colour and a dash (solid, dashed, dotted), the `i`-th of 24 distinct
/// pairs (8 colours, then the same colours dashed, then dotted).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Style {
    color: RGBColor,
    dash: Option<(u32, u32)>,
}

fn style(i: usize) -> Style {
    let dash = [None, Some((7, 4)), Some((2, 3))][(i / COLORS.len()) % 3];
    Style { color: COLORS[i % COLORS.len()], dash }
}

/// The reference lines (e.g. backprop) of a panel chart: black, then grey.
const REFERENCE: [RGBColor; 2] = [RGBColor(0, 0, 0), RGBColor(0x77, 0x77, 0x77)];

/// One panel's size, and the legend's row height under each column.
const PANEL: (u32, u32) = (400, 290);

/// A chart of many series as a grid of panels sharing their axes: one column per group of
/// `groups` (`(caption, series)`), each panel drawing every `reference` series (black, then
/// grey) and its group over them; a top row on the range of all the data, and where `zoom` gives a y
/// range, a second row with the same panels on it (lines leave the panel where they cross its
/// edge). A legend under each column. Each series has its own colour and dash across the whole
/// chart (24 distinct pairs before they repeat). Non-finite points are left out.
pub fn panel_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    groups: &[(String, Vec<Series>)],
    reference: &[Series],
    zoom: Option<(f64, f64)>,
) -> String {
    let mut svg = String::new();
    draw_panels(&mut svg, title, (x_label, y_label), groups, reference, zoom)
        .expect("drawing into a string cannot fail");
    svg
}

fn draw_panels<'a>(
    svg: &'a mut String,
    title: &str,
    (x_label, y_label): (&str, &str),
    groups: &[(String, Vec<Series>)],
    reference: &[Series],
    zoom: Option<(f64, f64)>,
) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let all: Vec<&Series> = groups.iter().flat_map(|(_, g)| g).chain(reference).collect();
    let owned: Vec<Series> = all
        .iter()
        .map(|s| Series { name: String::new(), points: s.points.clone(), band: s.band.clone() })
        .collect();
    let (x_range, full) = ranges(&owned);
    let columns = groups.len().max(1) as u32;
    let rows: Vec<(f64, f64)> = std::iter::once(full).chain(zoom).collect();
    let lines_of = |g: &[Series]| -> usize {
        g.iter().chain(reference).map(|s| wrap(&s.name, LEGEND_CHARS).len()).sum()
    };
    let legend_rows = groups.iter().map(|(_, g)| lines_of(g)).max().unwrap_or(0);
    let legend_height = 16 + 16 * legend_rows as u32;
    let size = (PANEL.0 * columns, 36 + PANEL.1 * rows.len() as u32 + legend_height);
    let root = SVGBackend::with_string(svg, size).into_drawing_area();
    root.fill(&WHITE)?;
    let area = root.titled(title, ("sans-serif", 17))?;
    let (panels, legends) = area.split_vertically(PANEL.1 * rows.len() as u32);
    let cells = panels.split_evenly((rows.len(), columns as usize));
    let legend_cells = legends.split_evenly((1, columns as usize));
    let mut first = 0;
    for (column, (caption, group)) in groups.iter().enumerate() {
        let styles: Vec<Style> = (first..first + group.len()).map(style).collect();
        first += group.len();
        for (row, &(y0, y1)) in rows.iter().enumerate() {
            let caption = match row {
                0 => caption.clone(),
                _ => format!("{caption}, zoomed to {}-{}", tick(y0), tick(y1)),
            };
            let mut chart = ChartBuilder::on(&cells[row * columns as usize + column])
                .caption(caption, ("sans-serif", 13))
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(46)
                .build_cartesian_2d(x_range.0..x_range.1, y0..y1)?;
            axes(&mut chart, (x_label, y_label), 6)?;
            // The reference first, so that a line of the group lying on it stays visible.
            let references =
                reference.iter().zip(REFERENCE.iter().map(|&color| Style { color, dash: None }));
            let lines = references.chain(group.iter().zip(styles.iter().copied()));
            for (s, st) in lines {
                draw_line(&mut chart, s, st, (y0, y1))?;
            }
        }
        let legend = &legend_cells[column];
        let keys = group.iter().zip(styles).chain(
            reference.iter().zip(REFERENCE.iter().map(|&color| Style { color, dash: None })),
        );
        let mut y = 14;
        for (s, st) in keys {
            legend_key(legend, st, (10, 36), y)?;
            for text in wrap(&s.name, LEGEND_CHARS) {
                legend.draw(&Text::new(text, (42, y - 7), ("sans-serif", 12)))?;
                y += 16;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// Characters of a legend line under a panel (12 px sans-serif beside its key).
const LEGEND_CHARS: usize = 56;

/// `text` in lines of at most `width` characters, broken before a space or a `+` (a word longer
/// than a line stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    let mut word = String::new();
    let flush = |word: &mut String, lines: &mut Vec<String>| {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.chars().count() + word.chars().count() > width {
            lines.push(word.trim_start().to_string());
        } else {
            line.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c == ' ' || c == '+' {
            flush(&mut word, &mut lines);
        }
        word.push(c);
    }
    flush(&mut word, &mut lines);
    lines
}

/// The parts of the polyline `points` inside `y0 <= y <= y1`, each a run of points, with the
/// points where it crosses an edge added (a line leaves the panel, it is not flattened onto
/// its edge).
fn clip(points: &[(f64, f64)], y0: f64, y1: f64) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // The part of a -> b inside the band: a + t (b - a) for t in [t0, t1].
        let dy = b.1 - a.1;
        let (t0, t1) = if dy == 0.0 {
            if (y0..=y1).contains(&a.1) {
                (0.0, 1.0)
            } else {
                continue;
            }
        } else {
            let (ta, tb) = ((y0 - a.1) / dy, (y1 - a.1) / dy);
            (ta.min(tb).max(0.0), ta.max(tb).min(1.0))
        };
        if t0 > t1 {
            continue;
        }
        let at = |t: f64| match t {
            0.0 => a,
            1.0 => b,
            // Where it crosses an edge: that edge's y exactly.
            t => {
                let y = a.1 + t * dy;
                (a.0 + t * (b.0 - a.0), if (y - y0).abs() <= (y - y1).abs() { y0 } else { y1 })
            }
        };
        let (start, end) = (at(t0), at(t1));
        match runs.last_mut() {
            Some(run) if run.last() == Some(&start) => run.push(end),
            _ => runs.push(vec![start, end]),
        }
    }
    runs
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
    fn lines_leave_a_zoomed_panel_where_they_cross_its_edge() {
        let runs =
            clip(&[(1.0, 50.0), (2.0, 95.0), (3.0, 97.0), (4.0, 10.0), (5.0, 12.0)], 90.0, 100.0);
        let want_in = 1.0 + 40.0 / 45.0;
        let want_out = 3.0 + 7.0 / 87.0;
        assert_eq!(runs.len(), 1, "{runs:?}");
        let r = &runs[0];
        assert_eq!(r.len(), 4, "{r:?}");
        assert!((r[0].0 - want_in).abs() < 1e-12 && r[0].1 == 90.0, "{r:?}");
        assert_eq!((r[1], r[2]), ((2.0, 95.0), (3.0, 97.0)));
        assert!((r[3].0 - want_out).abs() < 1e-12 && r[3].1 == 90.0, "{r:?}");
        // Out, in, out and in again: two runs; a line never inside: none.
        let runs = clip(&[(0.0, 0.0), (1.0, 95.0), (2.0, 0.0), (3.0, 95.0)], 90.0, 100.0);
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert!(clip(&[(0.0, 1.0), (1.0, 2.0)], 90.0, 100.0).is_empty());
        // Straight through the band from below to above.
        let runs = clip(&[(0.0, 80.0), (1.0, 110.0)], 90.0, 100.0);
        assert_eq!(runs.len(), 1);
        assert!(runs[0].iter().all(|p| (90.0..=100.0).contains(&p.1)), "{runs:?}");
    }

    #[test]
    fn a_panel_chart_gives_every_line_its_own_colour_and_dash() {
        let line = |name: &str, y: f64| Series {
            name: name.into(),
            points: vec![(1.0, y), (2.0, y + 1.0)],
            band: vec![],
        };
        let groups: Vec<(String, Vec<Series>)> = (0..3)
            .map(|g| {
                (
                    format!("group {g}"),
                    (0..9).map(|i| line(&format!("s{g}-{i}"), 90.0 + i as f64 / 2.0)).collect(),
                )
            })
            .collect();
        let styles: Vec<Style> = (0..27).map(style).collect();
        let distinct = (0..24).all(|i| (0..i).all(|j| styles[i] != styles[j]));
        assert!(distinct, "24 distinct colour and dash pairs");
        let reference = [line("bp", 95.0)];
        let svg = panel_chart("t", "epoch", "acc", &groups, &reference, Some((89.0, 96.0)));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for g in 0..3 {
            assert!(svg.contains(&format!("group {g}, zoomed to 89-96")), "{svg}");
            for i in 0..9 {
                assert!(svg.contains(&format!(">\ns{g}-{i}\n</text>")), "legend s{g}-{i}");
            }
        }
        assert_eq!(svg.matches(">\nbp\n</text>").count(), 3, "the reference in each legend");
    }

    #[test]
    fn legend_names_wrap_before_a_space_or_a_plus() {
        assert_eq!(wrap("short name", 56), ["short name"]);
        let long = "tanh-authors-fc-both ar+learned+no-f'-backward+no-f'-update+conv-transpose";
        let lines = wrap(long, 40);
        assert_eq!(
            lines,
            ["tanh-authors-fc-both ar+learned", "+no-f'-backward+no-f'-update", "+conv-transpose"]
        );
        assert_eq!(lines.concat(), long, "nothing lost at a break before a plus");
        assert_eq!(wrap(&"x".repeat(70), 56), ["x".repeat(70)]);
    }

    #[test]
    fn ticks_are_written_without_trailing_zeros() {
        let shown: Vec<String> = [5.0, 92.5, 0.1 + 0.2, 0.0, -0.0, 2e-5, 1234.0].map(tick).into();
        assert_eq!(shown, ["5", "92.5", "0.3", "0", "0", "2.0e-5", "1234"]);
    }
}
