//! Agreement between two gradients: relative error and angle (the papers' "gradient angle").

/// `||a - b|| / ||b||`: the relative error of `a` against the reference `b`
/// (0 when both are zero, infinite when only `b` is).
pub fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "relative_error: lengths differ");
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if diff == 0.0 {
        0.0
    } else {
        diff / norm
    }
}

/// The angle in degrees between `a` and `b` (0 for two zero vectors, 90 when exactly one is
/// zero). Computed as `2 atan2(||a/|a| - b/|b|||, ||a/|a| + b/|b|||)`, which stays accurate
/// near 0 and 180 degrees where `acos` of the cosine loses half the digits.
pub fn angle_degrees(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "angle_degrees: lengths differ");
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if na == 0.0 && nb == 0.0 {
        return 0.0;
    }
    if na == 0.0 || nb == 0.0 {
        return 90.0;
    }
    let (mut minus, mut plus) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (u, w) = (x / na, y / nb);
        minus += (u - w) * (u - w);
        plus += (u + w) * (u + w);
    }
    (2.0 * minus.sqrt().atan2(plus.sqrt())).to_degrees()
}

/// The largest absolute elementwise difference and its index.
pub fn worst_element(a: &[f64], b: &[f64]) -> (usize, f64) {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).enumerate().fold((0, 0.0), |best, (i, d)| {
        if d > best.1 {
            (i, d)
        } else {
            best
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_metrics() {
        // ||(3,4) - (0,0)|| vs ||(3,4)||: a = 0 gives error 1; angle of orthogonal vectors 90.
        assert_eq!(relative_error(&[0.0, 0.0], &[3.0, 4.0]), 1.0);
        assert_eq!(relative_error(&[3.0, 4.0], &[3.0, 4.0]), 0.0);
        assert!((angle_degrees(&[1.0, 0.0], &[0.0, 2.0]) - 90.0).abs() < 1e-12);
        assert!((angle_degrees(&[1.0, 1.0], &[1.0, 0.0]) - 45.0).abs() < 1e-12);
        assert_eq!(angle_degrees(&[2.0, 2.0], &[1.0, 1.0]), 0.0);
        assert!((angle_degrees(&[1.0, 0.0], &[-1.0, 0.0]) - 180.0).abs() < 1e-12);
        // A tiny angle survives: (1, 1e-9) against (1, 0) is 1e-9 rad.
        let tiny = angle_degrees(&[1.0, 1e-9], &[1.0, 0.0]).to_radians();
        assert!((tiny - 1e-9).abs() < 1e-20, "{tiny}");
        assert_eq!(worst_element(&[1.0, 5.0, 2.0], &[1.0, 2.0, 2.5]), (1, 3.0));
    }
}
