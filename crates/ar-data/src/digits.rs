//! The UCI optical digits (8x8 pixels valued 0..16, 1797 samples), bundled with the project.

use crate::{DataError, Dataset};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// The bundled `digits.csv.gz` (UCI "Optical Recognition of Handwritten Digits", CC BY 4.0),
/// the same file the scikit-learn wheel carries.
pub const DIGITS_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// Pixels per digits image.
const PIXELS: usize = 64;

/// The bundled digits set: 1797 samples of 1x8x8 pixels in 0..=16, 10 classes.
pub fn digits_bundled() -> Dataset {
    let text = gunzip(DIGITS_GZ, Path::new("<bundled digits.csv.gz>"))
        .expect("the bundled digits file is a valid gzip stream");
    read_digits_csv(&text, Path::new("<bundled digits.csv.gz>"))
        .expect("the bundled digits file is valid")
}

/// Reads a digits file: gzip-compressed CSV if the name ends in `.gz`, plain CSV otherwise.
pub fn read_digits(path: &Path) -> Result<Dataset, DataError> {
    let bytes =
        std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        gunzip(&bytes, path)?
    } else {
        String::from_utf8(bytes).map_err(|e| {
            DataError::format(
                path,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            )
        })?
    };
    read_digits_csv(&text, path)
}

fn gunzip(bytes: &[u8], path: &Path) -> Result<String, DataError> {
    let mut text = String::new();
    GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| DataError::format(path, format!("not a gzip-compressed text file: {e}")))?;
    Ok(text)
}

/// Parses digits CSV text: one sample per line, 64 pixel values in 0..=16, then the label 0..=9.
/// `path` only names the source in errors.
pub fn read_digits_csv(text: &str, path: &Path) -> Result<Dataset, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != PIXELS + 1 {
            return Err(DataError::format(
                path,
                format!(
                    "line {}: expected {} comma-separated values, found {}",
                    i + 1,
                    PIXELS + 1,
                    fields.len()
                ),
            ));
        }
        for (j, field) in fields.iter().enumerate() {
            let value: f64 = field.trim().parse().map_err(|_| {
                DataError::format(
                    path,
                    format!("line {}, column {}: '{field}' is not a number", i + 1, j + 1),
                )
            })?;
            let (max, what) = if j == PIXELS { (9.0, "label") } else { (16.0, "pixel") };
            if !(0.0..=max).contains(&value) || value.fract() != 0.0 {
                return Err(DataError::format(
                    path,
                    format!(
                        "line {}, column {}: {what} {value} is not a whole number in 0..={max}",
                        i + 1,
                        j + 1
                    ),
                ));
            }
            if j == PIXELS {
                labels.push(value as u8);
            } else {
                pixels.push(value as u8);
            }
        }
    }
    if labels.is_empty() {
        return Err(DataError::format(path, "no samples"));
    }
    let class_names = (0..10).map(|d| d.to_string()).collect();
    Ok(Dataset::from_pixels("digits", pixels, 16, labels, [1, 8, 8], class_names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_digits_have_the_documented_size_and_balance() {
        let d = digits_bundled();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.pixels().unwrap().len(), 1797 * 64);
        let mut counts = [0usize; 10];
        d.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(counts.iter().all(|&c| (174..=183).contains(&c)), "{counts:?}");
        // First row of the file: 0,0,5,13,9,1,0,0,... label 0.
        assert_eq!(&d.pixels().unwrap()[..8], &[0, 0, 5, 13, 9, 1, 0, 0]);
        assert_eq!(d.labels[0], 0);
    }

    #[test]
    fn malformed_lines_name_line_and_column() {
        let p = Path::new("bad.csv");
        let short = read_digits_csv("1,2,3\n", p).unwrap_err().to_string();
        assert!(
            short.contains("bad.csv") && short.contains("line 1") && short.contains("found 3"),
            "{short}"
        );
        let mut row = vec!["0"; 65];
        row[10] = "17";
        let out = read_digits_csv(&row.join(","), p).unwrap_err().to_string();
        assert!(out.contains("column 11") && out.contains("pixel 17"), "{out}");
        row[10] = "x";
        assert!(read_digits_csv(&row.join(","), p).unwrap_err().to_string().contains("'x'"));
        assert!(read_digits_csv("", p).unwrap_err().to_string().contains("no samples"));
    }

    #[test]
    fn missing_and_non_gzip_files_are_errors() {
        let err = read_digits(Path::new("/nonexistent/digits.csv.gz")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/digits.csv.gz"), "{err}");
        let dir = std::env::temp_dir().join(format!("ar-data-digits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("digits.csv.gz");
        std::fs::write(&f, b"plain text, not gzip").unwrap();
        let err = read_digits(&f).unwrap_err().to_string();
        assert!(err.contains("gzip"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
