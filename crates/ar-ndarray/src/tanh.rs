//! tanh and tanh' for f32 slices, computed in f64 with a branch-free exponential that the
//! compiler vectorises, so that the CNN's activations do not call libm's scalar `tanhf` once per
//! element (docs/performance.md, "Where the time goes").
//!
//! Accuracy: the f64 intermediate is within a few f64 ulps of the exact value, so the f32 result
//! is the correctly rounded one except when the exact value lies within about 1e-15 (relative)
//! of a rounding boundary. The derivative is `4 e / (1 + e)^2` with `e = exp(-2 |a|)`, accurate
//! to the last bit near saturation, where `1 - tanh(a)^2` from an f32 `tanh` is off by percents
//! (docs/models.md). Every instruction set runs the same IEEE operations (no
//! fused multiply-add), so the result does not depend on which one the CPU has.

use crate::map_each;

/// `log2(e)`.
const LOG2E: f64 = std::f64::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for the `n` used here (fdlibm's constants,
/// 0.693147180369123816490 and 1.90821492927058770002e-10).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// `1.5 * 2^52`: adding it rounds an f64 of magnitude below 2^51 to an integer held in the low
/// bits of the sum.
const SHIFTER: f64 = 6_755_399_441_055_744.0;
/// Below this `|a|`, tanh is its odd Taylor polynomial (`1 - e` would cancel).
const SMALL: f64 = 1.0 / 1024.0;
/// `exp` is evaluated at no less than this (its result stays a normal number).
const EXP_FLOOR: f64 = -708.0;

/// `exp(x)` for `x <= 0` (NaN stays NaN), relative error below 1e-14: `x = n ln 2 + r` with
/// `|r| <= ln 2 / 2`, `exp(r)` by its Taylor polynomial of degree 12, times `2^n` built in the
/// exponent bits.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    let x = if x < EXP_FLOOR { EXP_FLOOR } else { x };
    let shifted = x * LOG2E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Horner from the 1/12! term down.
    let mut p = 1.0 / 479_001_600.0;
    for c in [
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // The integer n sits in the low bits of `shifted`; 2^n is (n + 1023) in the exponent field.
    let n_bits = shifted.to_bits().wrapping_sub(SHIFTER.to_bits());
    p * f64::from_bits(n_bits.wrapping_add(1023) << 52)
}

/// `tanh(a)` for one element.
#[inline(always)]
fn tanh_one(a: f32) -> f32 {
    let y = f64::from(a).abs();
    let e = exp_nonpositive(-2.0 * y);
    let y2 = y * y;
    let taylor = y * (1.0 + y2 * (-1.0 / 3.0 + y2 * (2.0 / 15.0)));
    let ratio = (1.0 - e) / (1.0 + e);
    let t = if y < SMALL { taylor } else { ratio };
    (t.copysign(f64::from(a))) as f32
}

/// `tanh'(a) = 4 e / (1 + e)^2`, `e = exp(-2 |a|)`, for one element.
#[inline(always)]
fn tanh_derivative_one(a: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * f64::from(a).abs());
    let d = 1.0 + e;
    (4.0 * e / (d * d)) as f32
}

/// tanh of each element of `a` into `out`.
pub(crate) fn tanh_f32(a: &[f32], out: &mut [f32]) {
    dispatch(a, out, tanh_one)
}

/// tanh' of each element of `a` into `out`.
pub(crate) fn tanh_derivative_f32(a: &[f32], out: &mut [f32]) {
    dispatch(a, out, tanh_derivative_one)
}

/// `map_each` with `one`, compiled once for the baseline instruction set and once for each
/// wider one, run as the widest the CPU has.
fn dispatch(a: &[f32], out: &mut [f32], one: impl Fn(f32) -> f32) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512(a: &[f32], out: &mut [f32], one: impl Fn(f32) -> f32) {
            map_each(a, out, one)
        }
        #[target_feature(enable = "avx2")]
        fn avx2(a: &[f32], out: &mut [f32], one: impl Fn(f32) -> f32) {
            map_each(a, out, one)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, the only feature `avx512` is compiled for.
            #[allow(unsafe_code)]
            return unsafe { avx512(a, out, one) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, the only feature `avx2` is compiled for.
            #[allow(unsafe_code)]
            return unsafe { avx2(a, out, one) };
        }
    }
    map_each(a, out, one)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in f32 ulps (same sign assumed, as for tanh against tanh).
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Every 97th f32 in [-12, 12] and the special values, against f64 libm rounded to f32.
    fn samples() -> Vec<f32> {
        let mut v: Vec<f32> =
            (0..=12.0f32.to_bits()).step_by(97).map(f32::from_bits).flat_map(|x| [x, -x]).collect();
        v.extend([0.0, -0.0, 1e-30, f32::MIN_POSITIVE, 20.0, 44.0, 60.0, 1e30, f32::INFINITY]);
        v.extend([-f32::INFINITY, f32::MAX, -f32::MAX]);
        v
    }

    /// `kernel` on `x`, in a fresh vector.
    fn run(kernel: impl Fn(&[f32], &mut [f32]), x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        kernel(x, &mut out);
        out
    }

    #[test]
    fn tanh_is_within_one_ulp_of_the_correctly_rounded_value() {
        let x = samples();
        for (&a, &g) in x.iter().zip(&run(tanh_f32, &x)) {
            let want = (f64::from(a)).tanh() as f32;
            assert!(ulps(g, want) <= 1, "tanh({a:e}) = {g:e}, want {want:e}");
            assert_eq!(g.is_sign_negative(), a.is_sign_negative(), "sign of tanh({a:e})");
        }
    }

    #[test]
    fn the_derivative_is_accurate_near_saturation() {
        let x = samples();
        for (&a, &g) in x.iter().zip(&run(tanh_derivative_f32, &x)) {
            // 1 / cosh^2 in f64: accurate where the f64 cosh does not overflow.
            let c = f64::from(a).cosh();
            let want = if c.is_finite() { (1.0 / (c * c)) as f32 } else { 0.0 };
            assert!(ulps(g, want) <= 1, "tanh'({a:e}) = {g:e}, want {want:e}");
        }
    }

    #[test]
    fn nan_stays_nan() {
        assert!(run(tanh_f32, &[f32::NAN; 2]).iter().all(|v| v.is_nan()));
        assert!(run(tanh_derivative_f32, &[f32::NAN; 2]).iter().all(|v| v.is_nan()));
    }

    /// The vectorised paths give the same bits as the baseline one.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let x = samples();
        for (fast, one, name) in [
            (run(tanh_f32, &x), tanh_one as fn(f32) -> f32, "tanh"),
            (run(tanh_derivative_f32, &x), tanh_derivative_one, "tanh'"),
        ] {
            let base = run(|a, out| map_each(a, out, one), &x);
            for i in 0..x.len() {
                assert_eq!(fast[i].to_bits(), base[i].to_bits(), "{name}({:e})", x[i]);
            }
        }
    }
}
