//! Shared test helpers: unique temporary directories, seeded random bytes, and writers of small
//! valid files in each format (IDX, CIFAR binary, MATLAB 5.0 MAT-files).

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name includes `label`, the process id and a counter.
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ar-data-it-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `name` (creating parent folders) and returns the full path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` bytes from a ChaCha8 generator seeded with `seed`.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

/// Gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An IDX image file: magic 2051, then count, rows, cols big-endian, then the pixels.
pub fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// An IDX label file: magic 2049, then the count big-endian, then the labels.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 1];
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// CIFAR records: each the label bytes then 3072 pixels.
pub fn cifar_records(labels: &[&[u8]], pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (l, p) in labels.iter().zip(pixels.chunks_exact(3072)) {
        out.extend_from_slice(l);
        out.extend_from_slice(p);
    }
    out
}

/// The numeric storage of one MAT-file array.
#[derive(Clone, Debug)]
pub enum MatData {
    /// `miUINT8` values.
    U8(Vec<u8>),
    /// `miDOUBLE` values.
    F64(Vec<f64>),
}

/// One array to write: name, MATLAB class code, dimensions and data.
pub struct MatArray<'a> {
    pub name: &'a str,
    pub class: u8,
    pub dims: Vec<u32>,
    pub data: MatData,
}

/// A minimal MATLAB 5.0 MAT-file writer, independent of the reader: header, then one
/// `miMATRIX` per array, each optionally wrapped in `miCOMPRESSED`.
pub struct MatWriter {
    pub big_endian: bool,
    pub compress: bool,
}

impl MatWriter {
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// One data element with a full 8-byte tag, or the small form when it fits in 4 bytes.
    fn element(&self, out: &mut Vec<u8>, ty: u32, data: &[u8]) {
        if data.len() <= 4 {
            out.extend_from_slice(&self.u32(((data.len() as u32) << 16) | ty));
            let mut d = data.to_vec();
            d.resize(4, 0);
            out.extend_from_slice(&d);
            return;
        }
        out.extend_from_slice(&self.u32(ty));
        out.extend_from_slice(&self.u32(data.len() as u32));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(8) * 8, 0);
    }

    /// The whole file.
    pub fn write(&self, arrays: &[MatArray]) -> Vec<u8> {
        let mut out = b"MATLAB 5.0 MAT-file, Platform: ar-data tests".to_vec();
        out.resize(116, b' ');
        out.extend_from_slice(&[0; 8]);
        if self.big_endian {
            out.extend_from_slice(&[0x01, 0x00, b'M', b'I']);
        } else {
            out.extend_from_slice(&[0x00, 0x01, b'I', b'M']);
        }
        for a in arrays {
            let mut m = Vec::new();
            let mut flags = self.u32(u32::from(a.class)).to_vec();
            flags.extend_from_slice(&[0; 4]);
            self.element(&mut m, 6, &flags);
            let dims: Vec<u8> = a.dims.iter().flat_map(|&d| self.u32(d)).collect();
            self.element(&mut m, 5, &dims);
            self.element(&mut m, 1, a.name.as_bytes());
            match &a.data {
                MatData::U8(v) => self.element(&mut m, 2, v),
                MatData::F64(v) => {
                    let bytes: Vec<u8> = v
                        .iter()
                        .flat_map(
                            |x| if self.big_endian { x.to_be_bytes() } else { x.to_le_bytes() },
                        )
                        .collect();
                    self.element(&mut m, 9, &bytes)
                }
            }
            let mut matrix = Vec::new();
            matrix.extend_from_slice(&self.u32(14));
            matrix.extend_from_slice(&self.u32(m.len() as u32));
            matrix.extend_from_slice(&m);
            if self.compress {
                let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
                z.write_all(&matrix).unwrap();
                let z = z.finish().unwrap();
                out.extend_from_slice(&self.u32(15));
                out.extend_from_slice(&self.u32(z.len() as u32));
                out.extend_from_slice(&z);
            } else {
                out.extend_from_slice(&matrix);
            }
        }
        out
    }
}

/// A little-endian MAT-file with everything after the header wrapped in one `miCOMPRESSED`
/// element, whatever those bytes are.
pub fn compress_mat_body(file: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
    z.write_all(&file[128..]).unwrap();
    let z = z.finish().unwrap();
    let mut out = file[..128].to_vec();
    out.extend_from_slice(&15u32.to_le_bytes());
    out.extend_from_slice(&(z.len() as u32).to_le_bytes());
    out.extend_from_slice(&z);
    out
}

/// SVHN test data: `X` in MATLAB order (`X(row, col, c, n)` at `row + 32 col + 1024 c + 3072 n`),
/// raw labels 1..=10, and the expected CHW pixels.
pub struct SvhnSample {
    pub x: Vec<u8>,
    pub y: Vec<f64>,
    pub chw: Vec<u8>,
}

/// `n` random SVHN images (seeded) with labels cycling through 10, 1, 2, ...
pub fn svhn_sample(n: usize, seed: u64) -> SvhnSample {
    let x = random_bytes(3072 * n, seed);
    let y: Vec<f64> = (0..n).map(|i| if i % 10 == 0 { 10.0 } else { (i % 10) as f64 }).collect();
    let mut chw = vec![0; x.len()];
    for s in 0..n {
        for c in 0..3 {
            for row in 0..32 {
                for col in 0..32 {
                    chw[s * 3072 + c * 1024 + row * 32 + col] =
                        x[row + 32 * col + 1024 * c + 3072 * s];
                }
            }
        }
    }
    SvhnSample { x, y, chw }
}

/// An SVHN MAT-file of `sample` with the given writer; `y` stored as doubles.
pub fn svhn_mat(sample: &SvhnSample, writer: &MatWriter) -> Vec<u8> {
    let n = sample.y.len() as u32;
    writer.write(&[
        MatArray {
            name: "X",
            class: 9,
            dims: vec![32, 32, 3, n],
            data: MatData::U8(sample.x.clone()),
        },
        MatArray { name: "y", class: 6, dims: vec![n, 1], data: MatData::F64(sample.y.clone()) },
    ])
}
