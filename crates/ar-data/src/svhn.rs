//! SVHN "cropped digits" MAT-files (`{train,test}_32x32.mat`): `X` is uint8 32x32x3xN in MATLAB's
//! column-major order, `y` is Nx1 with 10 meaning the digit 0.

use crate::files::read_file;
use crate::mat::{parse_mat, MatFile, MatVariable};
use crate::sets::{locate, Split};
use crate::{DataError, Dataset};
use std::path::Path;

/// Side of an SVHN image.
const SIDE: usize = 32;
/// Channels of an SVHN image.
const CHANNELS: usize = 3;

fn variable<'a>(mat: &'a MatFile, name: &str, path: &Path) -> Result<&'a MatVariable, DataError> {
    let var = mat.get(name).ok_or_else(|| {
        let found: Vec<&str> = mat.variables.iter().map(|v| v.name.as_str()).collect();
        DataError::format(path, format!("variable '{name}' is missing (the file holds {found:?})"))
    })?;
    if var.complex {
        return Err(DataError::format(
            path,
            format!("variable '{name}' is complex, expected real numbers"),
        ));
    }
    if var.real.is_none() {
        return Err(DataError::format(
            path,
            format!("variable '{name}' is of class {}, expected a numeric array", var.class_name()),
        ));
    }
    Ok(var)
}

/// Converts the `X` and `y` variables of an SVHN MAT-file into a data set: pixel `(c, y=row,
/// x=col)` of sample `n` is `X(row, col, c, n)`, and label 10 becomes 0. `X` may be of any
/// numeric class holding whole numbers 0..=255, `y` of any numeric class holding 1..=10.
/// `path` only names the source in errors.
pub fn svhn_from_mat(mat: &MatFile, path: &Path) -> Result<Dataset, DataError> {
    let x = variable(mat, "X", path)?;
    let y = variable(mat, "y", path)?;
    // MATLAB drops trailing singleton dimensions, so one image is 32x32x3.
    let mut xdims = x.dims.clone();
    while xdims.len() > 4 && xdims.last() == Some(&1) {
        xdims.pop();
    }
    if xdims.len() == 3 {
        xdims.push(1);
    }
    if xdims.len() != 4 || xdims[..3] != [SIDE, SIDE, CHANNELS] {
        return Err(DataError::format(
            path,
            format!("variable 'X' has dimensions {:?}, expected [32, 32, 3, N]", x.dims),
        ));
    }
    let n = xdims[3];
    if n == 0 {
        return Err(DataError::format(path, "variable 'X' holds no images"));
    }
    let ny = match y.dims.as_slice() {
        [a, 1] | [1, a] | [a] => *a,
        other => {
            return Err(DataError::format(
                path,
                format!("variable 'y' has dimensions {other:?}, expected [N, 1]"),
            ))
        }
    };
    if ny != n {
        return Err(DataError::format(
            path,
            format!("variable 'y' has {ny} labels but 'X' has {n} images"),
        ));
    }
    let raw = x.real.as_ref().expect("checked numeric").to_u8().map_err(|(i, v)| {
        DataError::format(
            path,
            format!("variable 'X': value {v} at index {i} is not a whole number in 0..=255"),
        )
    })?;
    let yv = y.real.as_ref().expect("checked numeric");
    // The MAT reader already matches values to dimensions; checked again so that no index below
    // can go out of bounds.
    if raw.len() != n * CHANNELS * SIDE * SIDE || yv.len() != n {
        return Err(DataError::format(
            path,
            "variables 'X' and 'y' hold fewer values than their dimensions say",
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = yv.get(i);
        if !(1.0..=10.0).contains(&v) || v.fract() != 0.0 {
            return Err(DataError::format(
                path,
                format!("variable 'y': label {v} of sample {i} is out of range (expected a whole number in 1..=10)"),
            ));
        }
        labels.push((v as u8) % 10);
    }
    let plane = SIDE * SIDE;
    let sample = CHANNELS * plane;
    let mut pixels = vec![0u8; raw.len()];
    for (src_sample, dst_sample) in raw.chunks_exact(sample).zip(pixels.chunks_exact_mut(sample)) {
        for c in 0..CHANNELS {
            let (src, dst) =
                (&src_sample[c * plane..][..plane], &mut dst_sample[c * plane..][..plane]);
            for col in 0..SIDE {
                for row in 0..SIDE {
                    dst[row * SIDE + col] = src[row + SIDE * col];
                }
            }
        }
    }
    let class_names = (0..10).map(|d| d.to_string()).collect();
    Ok(Dataset::from_pixels("svhn", pixels, 255, labels, [CHANNELS, SIDE, SIDE], class_names))
}

/// Parses an SVHN MAT-file held in memory; `path` only names the source in errors.
pub fn parse_svhn(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    svhn_from_mat(&parse_mat(bytes, path)?, path)
}

/// Reads one SVHN MAT-file.
pub fn read_svhn_file(path: &Path) -> Result<Dataset, DataError> {
    // The file's bytes are dropped before the conversion, which copies the images once more.
    let mat = parse_mat(&read_file(path)?, path)?;
    svhn_from_mat(&mat, path)
}

/// Reads SVHN from `dir`: `train_32x32.mat` for [`Split::Train`], `test_32x32.mat` for
/// [`Split::Test`].
pub fn read_svhn(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let found = locate("svhn", dir, split)?;
    read_svhn_file(&found[0])
}
