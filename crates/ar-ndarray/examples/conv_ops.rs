//! Per-operation times of the CPU backend's convolutions at the residual CNN's shapes
//! (`res-cnn-8-16` on 3x32x32, docs/models.md) or paper 2's CNN's (`paper`), f32: the forward
//! convolution, its input VJP and its weight gradient for each distinct convolution, median
//! milliseconds and GFLOP/s (of the three together), for docs/performance.md.
//!
//! `cargo run --release -p ar-ndarray --example conv_ops -- [BATCH] [REPS] [res|paper]`
//! (default 64, 20, res).

use ar_backend::{Backend, ConvGeometry};
use ar_ndarray::NdArray;
use std::time::Instant;

/// (name, in channels, out channels, input side, kernel, stride, padding)
type ConvShape = (&'static str, usize, usize, usize, usize, usize, usize);

const RES_CNN: [ConvShape; 7] = [
    ("stem 3->16 3x3 p1 @32", 3, 16, 32, 3, 1, 1),
    ("16->16 3x3 p1 @32", 16, 16, 32, 3, 1, 1),
    ("16->32 3x3 s2 p1 @32", 16, 32, 32, 3, 2, 1),
    ("16->32 1x1 s2 @32", 16, 32, 32, 1, 2, 0),
    ("32->32 3x3 p1 @16", 32, 32, 16, 3, 1, 1),
    ("32->64 3x3 s2 p1 @16", 32, 64, 16, 3, 2, 1),
    ("64->64 3x3 p1 @8", 64, 64, 8, 3, 1, 1),
];

const PAPER_CNN: [ConvShape; 2] =
    [("3->6 5x5 @32", 3, 6, 32, 5, 1, 0), ("6->16 5x5 @14", 6, 16, 14, 5, 1, 0)];

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map_or(64, |s| s.parse().expect("BATCH: a whole number"));
    let reps: usize = args.next().map_or(20, |s| s.parse().expect("REPS: a whole number"));
    let shapes: &[ConvShape] = match args.next().as_deref() {
        None | Some("res") => &RES_CNN,
        Some("paper") => &PAPER_CNN,
        Some(other) => panic!("the third argument is res or paper, not {other:?}"),
    };
    let be = NdArray::<f32>::new();
    let fill = |n: usize, salt: f64| -> Vec<f64> {
        (0..n).map(|i| ((i as f64 + salt) * 0.7139).sin()).collect()
    };
    println!("batch {batch}, {} threads, median of {reps}", rayon::current_num_threads());
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>8}",
        "convolution", "fwd ms", "input ms", "weight ms", "GFLOP/s"
    );
    let mut total = 0.0;
    for &(name, c, o, side, k, stride, padding) in shapes {
        let g = ConvGeometry { stride, padding };
        let out = g.output_len(side, k).expect("the kernel fits");
        let x = be.from_host(&fill(batch * c * side * side, 1.0), &[batch, c, side, side]);
        let kernel = be.from_host(&fill(o * c * k * k, 2.0), &[o, c, k, k]);
        let bias = be.from_host(&fill(o, 3.0), &[o]);
        let e = be.from_host(&fill(batch * o * out * out, 4.0), &[batch, o, out, out]);
        let mut y = be.zeros(&[batch, o, out, out]);
        let mut dx = be.zeros(&[batch, c, side, side]);
        let mut dk = be.zeros(&[o, c, k, k]);
        let fwd = median_ms(reps, || be.conv2d_into(&x, &kernel, &bias, g, &mut y));
        let input = median_ms(reps, || be.conv2d_input_vjp(&e, &kernel, g, 1.0, 0.0, &mut dx));
        let weight = median_ms(reps, || be.conv2d_weight_grad_into(&e, &x, g, 1.0, &mut dk));
        let flop = 2.0 * (batch * o * out * out * c * k * k) as f64;
        let ms = fwd + input + weight;
        total += ms;
        println!(
            "{name:<24} {fwd:>10.3} {input:>10.3} {weight:>10.3} {:>8.1}",
            3.0 * flop / ms / 1e6
        );
    }
    println!("sum of the rows: {total:.3} ms");
}
