//! Times each backend operation of one training step of paper 2's CNN (3x32x32 inputs) on candle
//! or on the ndarray backend, at a given batch size, waiting for the device after each: where a
//! step's time goes. On candle, also the other forms each convolution VJP could take, side by
//! side with the backend's.
//!
//! Usage: `cargo run --release -p ar-candle --example cnn_ops -- [cpu|cuda|ndarray] [BATCH] [REPS]`
//! (`cpu` and `cuda` are candle's devices, f32; CUDA needs the `cuda` feature, see docs/cuda.md).

use ar_backend::{Activation, Backend, ConvGeometry, PoolGeometry, Precision};
use ar_candle::Candle;
use ar_ndarray::NdArray;
use candle_core::Tensor;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = args.first().map_or("cpu", String::as_str);
    let batch: usize = args.get(1).map_or(Ok(1024), |s| s.parse())?;
    let reps: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    println!("{device}, f32, paper-2 CNN shapes at batch {batch}, mean of {reps} calls");
    match device {
        "ndarray" => time_ops(NdArray::<f32>::new(), &|| (), batch, reps),
        "cpu" | "cuda" => {
            let be = if device == "cpu" {
                Candle::cpu(Precision::F32)
            } else {
                Candle::cuda(0, Precision::F32)?
            };
            let sync_with = be.clone();
            let sync = move || sync_with.device().synchronize().expect("the device synchronises");
            time_ops(be.clone(), &sync, batch, reps);
            time_vjp_forms(&be, &sync, batch, reps)?;
        }
        other => return Err(format!("unknown device {other:?} (cpu, cuda or ndarray)").into()),
    }
    Ok(())
}

/// Runs and times each operation `reps` times on `be`, calling `sync` before reading the clock.
fn time_ops<B: Backend>(be: B, sync: &dyn Fn(), batch: usize, reps: usize) {
    let fill = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        be.from_host(
            &(0..n).map(|i| ((i * 7919) % 1000) as f64 / 1000.0 - 0.5).collect::<Vec<_>>(),
            shape,
        )
    };
    let (g, pool) = (ConvGeometry { stride: 1, padding: 0 }, PoolGeometry { kernel: 2, stride: 2 });
    let (x, k1, b1) = (fill(&[batch, 3, 32, 32]), fill(&[6, 3, 5, 5]), fill(&[6]));
    let (a1, h1) = (fill(&[batch, 6, 28, 28]), fill(&[batch, 6, 14, 14]));
    let (k2, b2, a2) = (fill(&[16, 6, 5, 5]), fill(&[16]), fill(&[batch, 16, 10, 10]));
    let (flat, w3, a3) = (fill(&[batch, 1600]), fill(&[120, 1600]), fill(&[batch, 120]));
    let (_, argmax) = be.max_pool2d(&a1, pool);

    let mut total = 0.0;
    let mut time = |name: &str, f: &mut dyn FnMut()| {
        let ms = per_call(sync, reps, &mut || {
            f();
            Ok(())
        })
        .expect("backend operations do not fail");
        total += ms;
        println!("{name:<44} {ms:>9.3} ms");
    };
    let mut out = be.zeros(&[batch, 6, 28, 28]);
    time("conv1 forward 3->6 5x5, 32x32", &mut || be.conv2d_into(&x, &k1, &b1, g, &mut out));
    time("conv1 weight gradient", &mut || {
        be.conv2d_weight_grad_into(&a1, &x, g, 1.0, &mut k1.clone())
    });
    time("conv1 bias gradient", &mut || be.sum_channels_into(1.0, &a1, &mut b1.clone()));
    time("tanh [b,6,28,28]", &mut || be.activate_into(Activation::Tanh, &a1, &mut out));
    time("tanh' [b,6,28,28]", &mut || be.activate_derivative_into(Activation::Tanh, &a1, &mut out));
    time("mul [b,6,28,28]", &mut || be.mul_into(&a1, &a1, &mut out));
    time("axpby [b,6,28,28]", &mut || be.axpby(0.9, &a1, 0.1, &mut out));
    time("max-pool 2 forward", &mut || drop(be.max_pool2d(&a1, pool)));
    time("max-pool 2 VJP", &mut || be.max_pool2d_vjp(&h1, &argmax, pool, 1.0, 0.0, &mut out));
    let mut out2 = be.zeros(&[batch, 16, 10, 10]);
    time("conv2 forward 6->16 5x5, 14x14", &mut || be.conv2d_into(&h1, &k2, &b2, g, &mut out2));
    let mut dh = be.zeros(&[batch, 6, 14, 14]);
    time("conv2 input VJP", &mut || be.conv2d_input_vjp(&a2, &k2, g, 1.0, 0.0, &mut dh));
    time("conv2 weight gradient", &mut || {
        be.conv2d_weight_grad_into(&a2, &h1, g, 1.0, &mut k2.clone())
    });
    let mut y3 = be.zeros(&[batch, 120]);
    time("fc1 forward [b,1600] x [1600,120]", &mut || {
        be.gemm(1.0, &flat, false, &w3, true, 0.0, &mut y3)
    });
    let mut dflat = be.zeros(&[batch, 1600]);
    time("fc1 input VJP", &mut || be.gemm(1.0, &a3, false, &w3, false, 0.0, &mut dflat));
    let mut gw3 = be.zeros(&[120, 1600]);
    time("fc1 weight gradient", &mut || be.gemm(1.0, &a3, true, &flat, false, 0.0, &mut gw3));
    time("flatten reshape", &mut || drop(be.reshape(&a2, &[batch, 1600])));
    println!("{:<44} {total:>9.3} ms", "sum");
}

/// Milliseconds per call of `f`, over `reps` calls after one warm-up, waiting with `sync`.
fn per_call<T>(
    sync: &dyn Fn(),
    reps: usize,
    f: &mut dyn FnMut() -> candle_core::Result<T>,
) -> candle_core::Result<f64> {
    f()?;
    sync();
    let start = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    sync();
    Ok(start.elapsed().as_secs_f64() * 1e3 / reps as f64)
}

/// The forms each convolution VJP could take on candle, timed side by side: the input VJP as
/// candle's transposed convolution and as the backend computes it (at stride 1, a forward
/// convolution with the turned kernel: cuDNN on CUDA); the weight gradient as the backend
/// computes it (im2col and a batched product) and as one forward convolution of the input with
/// the output gradient (candle's own backprop's form). Each pair's results are compared. Then
/// each forward convolution with each of cuDNN's algorithms (on CUDA; "heuristics" is candle's
/// default, a query of cuDNN's heuristics on every call).
fn time_vjp_forms(
    be: &Candle,
    sync: &dyn Fn(),
    batch: usize,
    reps: usize,
) -> candle_core::Result<()> {
    let fill = |shape: &[usize]| Tensor::rand(-0.5f32, 0.5, shape, be.device());
    println!("convolution VJPs in other forms, ms per call (max |difference| between forms)");
    let (x, h1) = (fill(&[batch, 3, 32, 32])?, fill(&[batch, 6, 14, 14])?);
    let (e1, e2) = (fill(&[batch, 6, 28, 28])?, fill(&[batch, 16, 10, 10])?);
    let (k1, k2) = (fill(&[6, 3, 5, 5])?, fill(&[16, 6, 5, 5])?);
    let max_diff = |a: &Tensor, b: &Tensor| -> candle_core::Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    };
    let g = ConvGeometry { stride: 1, padding: 0 };
    let mut dh = be.zeros(&[batch, 6, 14, 14]);
    let transposed = per_call(sync, reps, &mut || e2.conv_transpose2d(&k2, 0, 0, 1, 1))?;
    let backend = per_call(sync, reps, &mut || {
        be.conv2d_input_vjp(&e2, &k2, g, 1.0, 0.0, &mut dh);
        Ok(dh.clone())
    })?;
    let turned = k2.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?;
    let turning = per_call(sync, reps, &mut || k2.flip(&[2, 3])?.transpose(0, 1)?.contiguous())?;
    let diff = max_diff(&e2.conv_transpose2d(&k2, 0, 0, 1, 1)?, &dh)?;
    println!("{:<44} {transposed:>9.3} ms", "conv2 input VJP, transposed convolution");
    println!("{:<44} {backend:>9.3} ms ({diff:.1e})", "conv2 input VJP, the backend's");
    println!("{:<44} {turning:>9.3} ms", "  of which turning the kernel");
    for (name, e, input, k) in
        [("conv1", &e1, &x, [6, 3, 5, 5]), ("conv2", &e2, &h1, [16, 6, 5, 5])]
    {
        let mut gk = be.zeros(&k);
        let im2col = per_call(sync, reps, &mut || {
            be.conv2d_weight_grad_into(e, input, g, 1.0, &mut gk);
            Ok(gk.clone())
        })?;
        let as_conv = || {
            input
                .transpose(0, 1)?
                .conv2d(&e.transpose(0, 1)?.contiguous()?, 0, 1, 1, 1)?
                .transpose(0, 1)
        };
        let conv = per_call(sync, reps, &mut || as_conv())?;
        be.conv2d_weight_grad_into(e, input, g, 1.0, &mut gk);
        let diff = max_diff(&gk, &as_conv()?)?;
        println!("{:<44} {im2col:>9.3} ms", format!("{name} weight gradient, the backend's"));
        println!(
            "{:<44} {conv:>9.3} ms ({diff:.1e})",
            format!("{name} weight gradient, one convolution")
        );
    }
    if !be.device().is_cuda() {
        return Ok(());
    }
    use candle_core::conv::CudnnFwdAlgo as A;
    let algorithms = [
        ("heuristics", None),
        ("implicit GEMM", Some(A::ImplicitGemm)),
        ("implicit precomputed GEMM", Some(A::ImplicitPrecompGemm)),
        ("GEMM", Some(A::Gemm)),
        ("FFT", Some(A::Fft)),
        ("FFT tiling", Some(A::FftTiling)),
        ("Winograd", Some(A::Winograd)),
        ("Winograd non-fused", Some(A::WinogradNonFused)),
    ];
    println!("cuDNN's forward algorithms, ms per call");
    for (name, input, kernel, padding) in [
        ("conv1 forward", &x, &k1, 0),
        ("conv2 forward", &h1, &k2, 0),
        ("conv2 input VJP as convolution", &e2, &turned, 4),
    ] {
        for (algorithm, choice) in algorithms {
            let timed = per_call(sync, reps, &mut || {
                input.conv2d_with_algo(kernel, padding, 1, 1, 1, choice)
            });
            match timed {
                Ok(ms) => println!("{:<44} {ms:>9.3} ms", format!("{name}, {algorithm}")),
                Err(_) => println!("{:<44} {:>12}", format!("{name}, {algorithm}"), "unsupported"),
            }
        }
    }
    Ok(())
}
