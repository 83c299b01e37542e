//! IDX files (MNIST, Fashion-MNIST): big-endian magic and dimensions, then unsigned bytes.

use crate::files::{maybe_gunzip, read_file};
use crate::sets::{locate, Split};
use crate::{DataError, Dataset};
use std::path::Path;

/// Magic number of an IDX file of unsigned-byte images: type code 0x08, 3 dimensions.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels: type code 0x08, 1 dimension.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The Fashion-MNIST class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Height and width of MNIST and Fashion-MNIST images.
const MNIST_SIDE: usize = 28;

/// The images of an IDX image file.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxImages {
    /// The number of images.
    pub count: usize,
    /// Rows (height) of one image.
    pub rows: usize,
    /// Columns (width) of one image.
    pub cols: usize,
    /// `count * rows * cols` bytes, image-major, each image row-major.
    pub pixels: Vec<u8>,
}

fn describe_magic(magic: u32) -> String {
    let [a, b, ty, dims] = magic.to_be_bytes();
    format!("{magic} (bytes {a:02x} {b:02x} {ty:02x} {dims:02x})")
}

/// Checks the magic number and reads the dimensions; returns them and the offset of the data.
fn header(
    bytes: &[u8],
    path: &Path,
    magic: u32,
    what: &str,
) -> Result<(Vec<usize>, usize), DataError> {
    let ndims = usize::from(magic.to_be_bytes()[3]);
    let found =
        bytes.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(|| {
            DataError::format(
                path,
                format!("truncated: {} bytes, too short for an IDX magic number", bytes.len()),
            )
        })?;
    if found != magic {
        return Err(DataError::format(
            path,
            format!(
                "wrong magic number for an IDX {what} file: expected {} (u8 data, {ndims} dimension{}), found {}",
                describe_magic(magic),
                if ndims == 1 { "" } else { "s" },
                describe_magic(found),
            ),
        ));
    }
    let data_start = 4 + 4 * ndims;
    let dims_bytes = bytes.get(4..data_start).ok_or_else(|| {
        DataError::format(
            path,
            format!(
                "truncated header: {} bytes, the {ndims} dimensions need {data_start}",
                bytes.len()
            ),
        )
    })?;
    let dims = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    Ok((dims, data_start))
}

/// Checks that exactly `expected` data bytes (or `None` on overflow) follow the header.
fn check_length(
    bytes: &[u8],
    path: &Path,
    start: usize,
    expected: Option<usize>,
    what: &str,
) -> Result<(), DataError> {
    let have = bytes.len() - start;
    match expected {
        Some(n) if n == have => Ok(()),
        Some(n) if n > have => Err(DataError::format(
            path,
            format!(
                "truncated: the header promises {what} ({n} data bytes), the file holds {have}"
            ),
        )),
        Some(n) => Err(DataError::format(
            path,
            format!("{} unexpected bytes after the {what} the header promises", have - n),
        )),
        None => Err(DataError::format(
            path,
            format!("the header's dimensions ({what}) are impossibly large"),
        )),
    }
}

/// Parses an IDX image file (magic 2051: u8 data, 3 dimensions), raw or gzip-compressed.
/// `path` only names the source in errors.
pub fn parse_idx_images(bytes: &[u8], path: &Path) -> Result<IdxImages, DataError> {
    let bytes = maybe_gunzip(bytes, path)?;
    let (dims, start) = header(&bytes, path, IDX_IMAGES_MAGIC, "images")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(DataError::format(
            path,
            format!("images of {rows}x{cols} pixels have no pixels"),
        ));
    }
    let what = format!("{count} images of {rows}x{cols}");
    check_length(
        &bytes,
        path,
        start,
        count.checked_mul(rows).and_then(|n| n.checked_mul(cols)),
        &what,
    )?;
    Ok(IdxImages { count, rows, cols, pixels: bytes[start..].to_vec() })
}

/// Parses an IDX label file (magic 2049: u8 data, 1 dimension), raw or gzip-compressed.
/// `path` only names the source in errors.
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = maybe_gunzip(bytes, path)?;
    let (dims, start) = header(&bytes, path, IDX_LABELS_MAGIC, "labels")?;
    check_length(&bytes, path, start, Some(dims[0]), &format!("{} labels", dims[0]))?;
    Ok(bytes[start..].to_vec())
}

/// Reads an IDX image file, raw or gzip-compressed (detected by content).
pub fn read_idx_images(path: &Path) -> Result<IdxImages, DataError> {
    parse_idx_images(&read_file(path)?, path)
}

/// Reads an IDX label file, raw or gzip-compressed (detected by content).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    parse_idx_labels(&read_file(path)?, path)
}

/// Reads MNIST or Fashion-MNIST (`name` is `mnist` or `fashion-mnist`) from the files
/// `{train,t10k}-{images-idx3,labels-idx1}-ubyte` in `dir`, each raw or with `.gz` appended.
/// Checks the 28x28 size, that the image and label counts agree and that every label is below 10.
pub fn read_mnist_like(dir: &Path, name: &str, split: Split) -> Result<Dataset, DataError> {
    let class_names: Vec<String> = match name {
        "mnist" => (0..10).map(|d| d.to_string()).collect(),
        "fashion-mnist" => FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        other => {
            return Err(DataError::Invalid(format!(
                "'{other}' is not an IDX data set (expected mnist or fashion-mnist)"
            )))
        }
    };
    let found = locate(name, dir, split)?;
    let (images_path, labels_path) = (&found[0], &found[1]);
    let images = read_idx_images(images_path)?;
    let labels = read_idx_labels(labels_path)?;
    if (images.rows, images.cols) != (MNIST_SIDE, MNIST_SIDE) {
        return Err(DataError::format(
            images_path,
            format!(
                "{name} images must be {MNIST_SIDE}x{MNIST_SIDE}, found {}x{}",
                images.rows, images.cols
            ),
        ));
    }
    if images.count != labels.len() {
        return Err(DataError::format(
            labels_path,
            format!(
                "{} labels for {} images in {}",
                labels.len(),
                images.count,
                images_path.display()
            ),
        ));
    }
    if images.count == 0 {
        return Err(DataError::format(images_path, "no images"));
    }
    check_labels(&labels, 10, labels_path)?;
    let shape = [1, images.rows, images.cols];
    Ok(Dataset::from_pixels(name, images.pixels, 255, labels, shape, class_names))
}

/// Checks that every label is below `classes`, naming the first offender.
pub(crate) fn check_labels(labels: &[u8], classes: usize, path: &Path) -> Result<(), DataError> {
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        None => Ok(()),
        Some(i) => Err(DataError::format(
            path,
            format!(
                "label {} of sample {i} is out of range (expected 0..={})",
                labels[i],
                classes - 1
            ),
        )),
    }
}
