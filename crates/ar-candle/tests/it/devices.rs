//! Device selection: asking for CUDA never panics and explains itself.

use ar_backend::Backend;
use ar_candle::{Candle, CandleError, Precision, CUDA_COMPILED};

#[test]
fn cuda_in_a_build_without_it_is_a_clear_error() {
    if CUDA_COMPILED {
        return;
    }
    for precision in [Precision::F32, Precision::F64] {
        let err = Candle::cuda(1, precision).unwrap_err();
        assert!(matches!(err, CandleError::CudaNotCompiled { ordinal: 1 }), "{err:?}");
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "one line: {msg}");
        for needle in [
            "CUDA support was not compiled in",
            "cuda:1",
            "cargo xtask-cuda",
            "scripts/build-cuda.sh",
        ] {
            assert!(msg.contains(needle), "'{needle}' missing from: {msg}");
        }
    }
}

/// With the feature, a missing GPU or driver is an error too (never a panic); with a GPU, the
/// name carries the ordinal.
#[cfg(feature = "cuda")]
#[test]
fn cuda_with_the_feature_opens_or_explains() {
    match Candle::cuda(0, Precision::F32) {
        Ok(be) => assert_eq!(be.name(), "candle-cuda:0-f32"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("cannot open CUDA device 0"), "{msg}");
        }
    }
}

#[test]
fn names_and_precisions() {
    let be = Candle::cpu(Precision::F64);
    assert_eq!(
        (be.name(), be.precision(), be.dtype()),
        ("candle-cpu-f64".to_string(), Precision::F64, candle_core::DType::F64)
    );
    assert_eq!(Candle::cpu(Precision::F32).name(), "candle-cpu-f32");
}
