//! Elementwise activation functions and their derivatives, as scalar reference definitions
//! that every backend applies.

use num_traits::Float;
use std::fmt;
use std::str::FromStr;

/// An elementwise nonlinearity `h = f(a)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `f(a) = a`.
    Identity,
    /// `f(a) = max(a, 0)`; `f'(0) = 0` as in PyTorch.
    Relu,
    /// `f(a) = a` for `a > 0`, `0.01 a` otherwise; `f'(0) = 0.01`.
    LeakyRelu,
    /// `f(a) = tanh(a)`.
    Tanh,
    /// `f(a) = 1 / (1 + e^-a)`.
    Sigmoid,
    /// `f(a) = ln(1 + e^a)`, computed without overflow.
    Softplus,
}

/// The negative slope of [`Activation::LeakyRelu`] (PyTorch's default).
pub const LEAKY_RELU_SLOPE: f64 = 0.01;

impl Activation {
    /// Every activation, for tests and help texts.
    pub const ALL: [Activation; 6] = [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
    ];

    /// The name used on the command line and in model specs.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky-relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softplus => "softplus",
        }
    }

    /// Whether the function has a kink (a point where its derivative jumps) at `a = 0`.
    pub fn has_kink(self) -> bool {
        matches!(self, Activation::Relu | Activation::LeakyRelu)
    }

    /// `f(a)`.
    pub fn apply<F: Float>(self, a: F) -> F {
        let zero = F::zero();
        match self {
            Activation::Identity => a,
            Activation::Relu => {
                if a > zero {
                    a
                } else {
                    zero
                }
            }
            Activation::LeakyRelu => {
                if a > zero {
                    a
                } else {
                    a * F::from(LEAKY_RELU_SLOPE).unwrap()
                }
            }
            Activation::Tanh => a.tanh(),
            Activation::Sigmoid => sigmoid(a),
            // ln(1 + e^a) = max(a, 0) + ln(1 + e^-|a|), which never overflows.
            Activation::Softplus => a.max(zero) + (-a.abs()).exp().ln_1p(),
        }
    }

    /// `f'(a)`.
    pub fn derivative<F: Float>(self, a: F) -> F {
        let (zero, one) = (F::zero(), F::one());
        match self {
            Activation::Identity => one,
            Activation::Relu => {
                if a > zero {
                    one
                } else {
                    zero
                }
            }
            Activation::LeakyRelu => {
                if a > zero {
                    one
                } else {
                    F::from(LEAKY_RELU_SLOPE).unwrap()
                }
            }
            // 1 - tanh(a)^2 = 4 e / (1 + e)^2 with e = exp(-2 |a|): accurate to the last bit
            // near saturation, where 1 - t^2 subtracts two numbers close to 1 (docs/models.md).
            Activation::Tanh => {
                let e = (-(a.abs() + a.abs())).exp();
                let d = one + e;
                F::from(4.0).unwrap() * e / (d * d)
            }
            Activation::Sigmoid => {
                let s = sigmoid(a);
                s * (one - s)
            }
            // d/da ln(1 + e^a) = e^a / (1 + e^a) = sigmoid(a).
            Activation::Softplus => sigmoid(a),
        }
    }
}

/// The logistic function, evaluated so that neither branch overflows.
fn sigmoid<F: Float>(a: F) -> F {
    let one = F::one();
    if a >= F::zero() {
        one / (one + (-a).exp())
    } else {
        let e = a.exp();
        e / (one + e)
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "linear" | "id" | "none" => "identity",
            "leaky_relu" | "leakyrelu" => "leaky-relu",
            other => other,
        };
        Activation::ALL.into_iter().find(|f| f.name() == alias).ok_or_else(|| {
            let names: Vec<_> = Activation::ALL.iter().map(|f| f.name()).collect();
            format!("unknown activation '{s}' (expected one of: {})", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64) -> bool {
        (x - y).abs() <= 1e-15 * (1.0 + y.abs())
    }

    /// tanh' near saturation in f32 is the f64 value rounded, to a few ulps: `1 - t^2` from the
    /// f32 `t` would be off by percents there (t = 1 - 1e-6 holds 17 significant bits).
    #[test]
    fn tanh_derivative_stays_accurate_in_f32_near_saturation() {
        for a in [3.0f32, 5.5, 7.2, 8.3, 10.0, 20.0, 40.0] {
            let want = 1.0 / f64::from(a).cosh().powi(2);
            let got = f64::from(Activation::Tanh.derivative(a));
            assert!(
                (got - want).abs() <= 4.0 * f64::from(f32::EPSILON) * want,
                "tanh'({a}) = {got:e}, want {want:e}"
            );
        }
    }

    /// Golden values, each with the calculus that gives it.
    #[test]
    fn golden_values_of_each_activation_and_derivative() {
        use Activation::*;
        let e = std::f64::consts::E;
        let cases: &[(Activation, f64, f64, f64)] = &[
            // identity: f(a) = a, f'(a) = 1.
            (Identity, -2.5, -2.5, 1.0),
            (Identity, 3.0, 3.0, 1.0),
            // relu: f(2) = 2, f'(2) = 1; f(-3) = 0, f'(-3) = 0; at the kink f'(0) = 0 (PyTorch).
            (Relu, 2.0, 2.0, 1.0),
            (Relu, -3.0, 0.0, 0.0),
            (Relu, 0.0, 0.0, 0.0),
            // leaky relu: f(-2) = -0.02, f'(-2) = 0.01; f(1.5) = 1.5, f'(1.5) = 1; f'(0) = 0.01.
            (LeakyRelu, -2.0, -0.02, 0.01),
            (LeakyRelu, 1.5, 1.5, 1.0),
            (LeakyRelu, 0.0, 0.0, 0.01),
            // tanh(1) = (e^2 - 1)/(e^2 + 1); tanh'(a) = 1 - tanh(a)^2 = 4 e^2 / (e^2 + 1)^2.
            (
                Tanh,
                1.0,
                (e * e - 1.0) / (e * e + 1.0),
                4.0 * e * e / ((e * e + 1.0) * (e * e + 1.0)),
            ),
            // tanh is odd, tanh' even.
            (
                Tanh,
                -1.0,
                -(e * e - 1.0) / (e * e + 1.0),
                4.0 * e * e / ((e * e + 1.0) * (e * e + 1.0)),
            ),
            (Tanh, 0.0, 0.0, 1.0),
            // sigmoid(0) = 1/2, sigmoid'(0) = 1/2 * 1/2; sigmoid(ln 3) = 3/4, sigmoid' = 3/4 * 1/4.
            (Sigmoid, 0.0, 0.5, 0.25),
            (Sigmoid, 3f64.ln(), 0.75, 0.1875),
            // sigmoid(-ln 3) = 1/4, derivative the same 3/16 by symmetry.
            (Sigmoid, -(3f64.ln()), 0.25, 0.1875),
            // softplus(0) = ln 2, softplus'(0) = sigmoid(0) = 1/2; softplus(ln 3) = ln 4, ' = 3/4.
            (Softplus, 0.0, 2f64.ln(), 0.5),
            (Softplus, 3f64.ln(), 4f64.ln(), 0.75),
        ];
        for &(f, a, value, slope) in cases {
            assert!(close(f.apply(a), value), "{f}({a}) = {} want {value}", f.apply(a));
            assert!(close(f.derivative(a), slope), "{f}'({a}) = {} want {slope}", f.derivative(a));
        }
    }

    #[test]
    fn large_inputs_do_not_overflow() {
        for a in [-1000.0f64, 1000.0] {
            for f in Activation::ALL {
                assert!(f.apply(a).is_finite() && f.derivative(a).is_finite(), "{f} at {a}");
            }
        }
        // softplus(1000) = 1000 + ln(1 + e^-1000) = 1000 to rounding.
        assert_eq!(Activation::Softplus.apply(1000.0f64), 1000.0);
        assert_eq!(Activation::Sigmoid.apply(-1000.0f64), 0.0);
    }

    #[test]
    fn derivatives_match_central_differences_away_from_kinks() {
        for f in Activation::ALL {
            for a in [-2.3f64, -0.7, 0.4, 1.9] {
                let h = 1e-6;
                let fd = (f.apply(a + h) - f.apply(a - h)) / (2.0 * h);
                assert!((fd - f.derivative(a)).abs() < 1e-8, "{f}'({a}): fd {fd}");
            }
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_rejected() {
        for f in Activation::ALL {
            assert_eq!(f.name().parse::<Activation>().unwrap(), f);
        }
        assert_eq!("linear".parse::<Activation>().unwrap(), Activation::Identity);
        let err = "swish".parse::<Activation>().unwrap_err();
        assert!(err.contains("swish") && err.contains("relu"), "{err}");
    }
}
