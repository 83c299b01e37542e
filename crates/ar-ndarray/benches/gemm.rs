//! Criterion bench of the GEMM candidates at activation relaxation's shapes (paper 1's MLP at
//! batch 64 and 256, both transposes): ndarray's `matrixmultiply`, the `gemm` crate on one thread
//! and with its own rayon parallelism, and this backend's `Backend::gemm` (the `gemm` crate in
//! fixed blocks) on rayon pools of one and two threads. Throughput is in FLOP.

use ar_backend::Backend;
use ar_ndarray::NdArray;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, Ix2};
use std::hint::black_box;

fn filled(rows: usize, cols: usize, salt: f32) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 31 + j * 17) as f32 * salt).sin())
}

/// The `gemm` crate called directly: `c <- a b` with the given parallelism.
#[allow(unsafe_code)]
fn gemm_crate(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
    par: gemm::Parallelism,
) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    // SAFETY: the views' pointers and strides describe live m x k, k x n and m x n arrays; `c`
    // is borrowed uniquely; f32 is a type `gemm` supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c.strides()[1],
            c.strides()[0],
            false,
            a.as_ptr(),
            a.strides()[1],
            a.strides()[0],
            b.as_ptr(),
            b.strides()[1],
            b.strides()[0],
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn candidates(c: &mut Criterion) {
    let be = NdArray::<f32>::new();
    let pools: Vec<(usize, rayon::ThreadPool)> = [1, 2]
        .into_iter()
        .map(|n| (n, rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()))
        .collect();
    // (name, m, k, n, transpose a, transpose b) at batch 64 and 256. The MLP: relaxation and
    // forward products, a product with b transposed, the weight gradients (a transposed). Paper
    // 2's CNN on 3x32x32 (im2col): each conv's forward, input VJP and weight gradient.
    let mut shapes = Vec::new();
    for batch in [64, 256] {
        shapes.extend([
            ("mlp e.W 300x300", batch, 300, 300, false, false),
            ("mlp e.W 100x300", batch, 100, 300, false, false),
            ("mlp x.W 784x300", batch, 784, 300, false, false),
            ("mlp x.W^T 300x300", batch, 300, 300, false, true),
            ("mlp x^T.e 784x300", 784, batch, 300, true, false),
            ("mlp x^T.e 300x300", 300, batch, 300, true, false),
        ]);
        for (o, c, plane) in [(6, 3 * 25, 28 * 28), (16, 6 * 25, 10 * 10)] {
            shapes.extend([
                ("cnn conv forward", o, c, batch * plane, false, false),
                ("cnn conv input vjp", c, o, batch * plane, true, false),
                ("cnn conv weight grad", o, batch * plane, c, false, true),
            ]);
        }
    }
    {
        for (name, m, k, n, ta, tb) in shapes {
            let a = if ta { filled(k, m, 0.01) } else { filled(m, k, 0.01) };
            let b = if tb { filled(n, k, 0.02) } else { filled(k, n, 0.02) };
            let av = if ta { a.t() } else { a.view() };
            let bv = if tb { b.t() } else { b.view() };
            let mut out = Array2::<f32>::zeros((m, n));
            let mut group = c.benchmark_group(format!("gemm-f32/{m}x{k}x{n} {name}"));
            group.throughput(Throughput::Elements((2 * m * k * n) as u64));
            group.bench_function("matrixmultiply", |bn| {
                bn.iter(|| general_mat_mul(1.0, &av, &bv, 0.0, &mut out))
            });
            group.bench_function("gemm-crate 1 thread", |bn| {
                bn.iter(|| gemm_crate(av, bv, out.view_mut(), gemm::Parallelism::None))
            });
            group.bench_function("gemm-crate rayon 2", |bn| {
                bn.iter(|| gemm_crate(av, bv, out.view_mut(), gemm::Parallelism::Rayon(2)))
            });
            let ad: ArrayD<f32> = a.clone().into_dyn();
            let bd: ArrayD<f32> = b.clone().into_dyn();
            let mut cd: ArrayD<f32> = out.clone().into_dyn();
            for (threads, pool) in &pools {
                group.bench_function(format!("ours (blocks) {threads} thread(s)"), |bn| {
                    pool.install(|| bn.iter(|| be.gemm(1.0, &ad, ta, &bd, tb, 0.0, &mut cd)))
                });
            }
            black_box(cd.into_dimensionality::<Ix2>().unwrap());
            group.finish();
        }
    }
}

criterion_group!(benches, candidates);
criterion_main!(benches);
