//! A from-scratch reader for MATLAB 5.0 (level 5) MAT-files: numeric arrays, plain or
//! zlib-compressed (`miCOMPRESSED`), in either byte order. Cells, structs, sparse and character
//! arrays are listed by name and class but their contents are skipped.

use crate::files::read_file;
use crate::DataError;
use flate2::read::ZlibDecoder;
use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

/// Bytes in a MAT-file header (text, subsystem offset, version, endian indicator).
const HEADER_BYTES: usize = 128;
/// How the header text of a level 5 MAT-file begins.
const HEADER_TEXT: &[u8] = b"MATLAB 5.0 MAT-file";

/// Data element type `miINT8`.
const MI_INT8: u32 = 1;
/// Data element type `miUINT8`.
const MI_UINT8: u32 = 2;
/// Data element type `miINT32`.
const MI_INT32: u32 = 5;
/// Data element type `miUINT32`.
const MI_UINT32: u32 = 6;
/// Data element type `miMATRIX`: one array (flags, dimensions, name, data).
const MI_MATRIX: u32 = 14;
/// Data element type `miCOMPRESSED`: a zlib stream holding further elements.
const MI_COMPRESSED: u32 = 15;
/// Data element type `miUTF8`.
const MI_UTF8: u32 = 16;

/// Array flag bit: the array has an imaginary part.
const FLAG_COMPLEX: u32 = 0x0800;

/// A parsed MAT-file: its variables in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct MatFile {
    /// Whether the file is big-endian (endian indicator `MI`) rather than little-endian (`IM`).
    pub big_endian: bool,
    /// The variables, in the order they appear.
    pub variables: Vec<MatVariable>,
}

impl MatFile {
    /// The first variable called `name`.
    pub fn get(&self, name: &str) -> Option<&MatVariable> {
        self.variables.iter().find(|v| v.name == name)
    }
}

/// One variable (a top-level `miMATRIX`) of a MAT-file.
#[derive(Clone, Debug, PartialEq)]
pub struct MatVariable {
    /// The variable's name.
    pub name: String,
    /// The MATLAB array class code (`mxDOUBLE_CLASS` = 6, `mxUINT8_CLASS` = 9, ...).
    pub class: u8,
    /// Dimensions, in MATLAB order (the data is column-major: the first index varies fastest).
    pub dims: Vec<usize>,
    /// Whether the array has an imaginary part (which this reader skips).
    pub complex: bool,
    /// The real part of a numeric array; `None` for other classes.
    pub real: Option<MatNumeric>,
}

impl MatVariable {
    /// The MATLAB name of the array class (`double`, `uint8`, `cell`, ...).
    pub fn class_name(&self) -> &'static str {
        match self.class {
            1 => "cell",
            2 => "struct",
            3 => "object",
            4 => "char",
            5 => "sparse",
            6 => "double",
            7 => "single",
            8 => "int8",
            9 => "uint8",
            10 => "int16",
            11 => "uint16",
            12 => "int32",
            13 => "uint32",
            14 => "int64",
            15 => "uint64",
            _ => "unknown",
        }
    }
}

/// The stored values of a numeric array, in the storage type the writer chose (which may be
/// narrower than the array's class: MATLAB stores small whole doubles as `miUINT8`, say).
#[derive(Clone, Debug, PartialEq)]
pub struct MatNumeric {
    data_type: u32,
    big_endian: bool,
    bytes: Vec<u8>,
}

/// Bytes per value of a numeric data element type, or `None` if it is not one.
fn element_size(data_type: u32) -> Option<usize> {
    match data_type {
        1 | 2 => Some(1),
        3 | 4 => Some(2),
        5..=7 => Some(4),
        9 | 12 | 13 => Some(8),
        _ => None,
    }
}

impl MatNumeric {
    /// The storage data type code (`miUINT8` = 2, `miDOUBLE` = 9, ...).
    pub fn data_type(&self) -> u32 {
        self.data_type
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        // The constructor guarantees a known, non-zero size.
        self.bytes.len() / element_size(self.data_type).unwrap_or(1)
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Value `i` (column-major) as `f64`; 64-bit integers beyond 2^53 are rounded. Panics if
    /// `i >= len()`.
    pub fn get(&self, i: usize) -> f64 {
        let size = element_size(self.data_type).unwrap_or(1);
        let b = &self.bytes[i * size..(i + 1) * size];
        macro_rules! num {
            ($t:ty) => {{
                let arr = b.try_into().expect("slice of the element size");
                if self.big_endian {
                    <$t>::from_be_bytes(arr) as f64
                } else {
                    <$t>::from_le_bytes(arr) as f64
                }
            }};
        }
        match self.data_type {
            1 => num!(i8),
            2 => num!(u8),
            3 => num!(i16),
            4 => num!(u16),
            5 => num!(i32),
            6 => num!(u32),
            7 => num!(f32),
            9 => num!(f64),
            12 => num!(i64),
            _ => num!(u64),
        }
    }

    /// All values as bytes (borrowed when stored as `miUINT8`), if every value is a whole number
    /// in 0..=255; otherwise the index and value of the first that is not.
    pub fn to_u8(&self) -> Result<Cow<'_, [u8]>, (usize, f64)> {
        if self.data_type == MI_UINT8 {
            return Ok(Cow::Borrowed(&self.bytes));
        }
        (0..self.len())
            .map(|i| {
                let v = self.get(i);
                if (0.0..=255.0).contains(&v) && v.fract() == 0.0 {
                    Ok(v as u8)
                } else {
                    Err((i, v))
                }
            })
            .collect::<Result<Vec<u8>, _>>()
            .map(Cow::Owned)
    }
}

/// Walks the data elements of one buffer (the file after its header, a decompressed stream or
/// the inside of a matrix).
struct Elements<'a> {
    bytes: &'a [u8],
    pos: usize,
    big_endian: bool,
    path: &'a Path,
}

impl<'a> Elements<'a> {
    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn error(&self, context: &str, message: impl std::fmt::Display) -> DataError {
        DataError::format(self.path, format!("{context}: {message}"))
    }

    /// The next element's type and data; handles the 8-byte tag and the small (4-byte) form.
    fn next(&mut self, context: &str) -> Result<(u32, &'a [u8]), DataError> {
        let at = self.pos;
        let first = self.u32_at(at).ok_or_else(|| {
            self.error(context, format!("truncated: no room for a data element tag at byte {at}"))
        })?;
        if first >> 16 != 0 {
            // Small data element: size in the upper 16 bits, type in the lower, data in the
            // following 4 bytes.
            let (data_type, n) = (first & 0xffff, (first >> 16) as usize);
            if n > 4 {
                return Err(self.error(
                    context,
                    format!("small data element at byte {at} claims {n} bytes (at most 4)"),
                ));
            }
            let data = self.bytes.get(at + 4..at + 4 + n).ok_or_else(|| {
                self.error(
                    context,
                    format!("truncated: small data element at byte {at} runs past the end"),
                )
            })?;
            self.pos = (at + 8).min(self.bytes.len());
            return Ok((data_type, data));
        }
        let n = self.u32_at(at + 4).ok_or_else(|| {
            self.error(context, format!("truncated: data element tag at byte {at} is cut off"))
        })? as usize;
        let data = self.bytes.get(at + 8..).and_then(|rest| rest.get(..n)).ok_or_else(|| {
            self.error(
                context,
                format!(
                    "truncated: data element at byte {at} (type {first}) claims {n} bytes, only {} remain",
                    self.bytes.len().saturating_sub(at + 8)
                ),
            )
        })?;
        // Elements are padded to 8 bytes, except compressed ones.
        let padded = if first == MI_COMPRESSED { n } else { n.div_ceil(8) * 8 };
        self.pos = (at + 8 + padded).min(self.bytes.len());
        Ok((first, data))
    }
}

/// Parses the inside of one `miMATRIX` element.
fn parse_matrix(
    data: &[u8],
    big_endian: bool,
    path: &Path,
    index: usize,
) -> Result<MatVariable, DataError> {
    let mut el = Elements { bytes: data, pos: 0, big_endian, path };
    let unnamed = format!("variable #{}", index + 1);
    let (ty, flags) = el.next(&format!("{unnamed}: array flags"))?;
    if ty != MI_UINT32 || flags.len() != 8 {
        return Err(el.error(
            &unnamed,
            format!(
                "expected array flags (type {MI_UINT32}, 8 bytes), found type {ty} of {} bytes",
                flags.len()
            ),
        ));
    }
    let word = Elements { bytes: flags, pos: 0, big_endian, path }.u32_at(0).unwrap_or(0);
    let (class, complex) = ((word & 0xff) as u8, word & FLAG_COMPLEX != 0);
    let (ty, dims_bytes) = el.next(&format!("{unnamed}: dimensions"))?;
    if ty != MI_INT32 || dims_bytes.is_empty() || dims_bytes.len() % 4 != 0 {
        return Err(el.error(
            &unnamed,
            format!(
                "expected dimensions (type {MI_INT32}, 4 bytes each), found type {ty} of {} bytes",
                dims_bytes.len()
            ),
        ));
    }
    let dim_reader = Elements { bytes: dims_bytes, pos: 0, big_endian, path };
    let mut dims = Vec::with_capacity(dims_bytes.len() / 4);
    for k in 0..dims_bytes.len() / 4 {
        let d = dim_reader.u32_at(4 * k).unwrap_or(0) as i32;
        if d < 0 {
            return Err(el.error(&unnamed, format!("negative dimension {d}")));
        }
        dims.push(d as usize);
    }
    let (ty, name_bytes) = el.next(&format!("{unnamed}: name"))?;
    if ![MI_INT8, MI_UINT8, MI_UTF8].contains(&ty) {
        return Err(el.error(
            &unnamed,
            format!("expected the array name (type {MI_INT8}), found type {ty}"),
        ));
    }
    let name = String::from_utf8_lossy(name_bytes).into_owned();
    let mut var = MatVariable { name, class, dims, complex, real: None };
    if !(6..=15).contains(&class) {
        return Ok(var); // not numeric: contents skipped
    }
    let context = format!("variable '{}'", var.name);
    let (data_type, values) = el.next(&format!("{context}: real part"))?;
    let size = element_size(data_type).ok_or_else(|| {
        el.error(&context, format!("real part has non-numeric data type {data_type}"))
    })?;
    let count = var.dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if values.len() % size != 0 || count != Some(values.len() / size) {
        return Err(el.error(
            &context,
            format!(
                "dimensions {:?} need {} values, the real part holds {} bytes of {size}-byte values",
                var.dims,
                count.map_or("too many".to_string(), |c| c.to_string()),
                values.len()
            ),
        ));
    }
    var.real = Some(MatNumeric { data_type, big_endian, bytes: values.to_vec() });
    Ok(var)
}

/// Parses the top-level elements of `bytes` (the file after its header, or a decompressed
/// stream when `inside_compressed`), appending to `out`.
fn parse_elements(
    bytes: &[u8],
    big_endian: bool,
    path: &Path,
    inside_compressed: bool,
    out: &mut Vec<MatVariable>,
) -> Result<(), DataError> {
    let mut el = Elements { bytes, pos: 0, big_endian, path };
    while !el.done() {
        let at = el.pos;
        let context = format!("variable #{}", out.len() + 1);
        let (ty, data) = el.next(&context)?;
        match ty {
            MI_MATRIX if data.is_empty() => {}
            MI_MATRIX => out.push(parse_matrix(data, big_endian, path, out.len())?),
            MI_COMPRESSED if !inside_compressed => {
                let mut inflated = Vec::new();
                ZlibDecoder::new(data)
                    .read_to_end(&mut inflated)
                    .map_err(|e| el.error(&context, format!("corrupt zlib stream in the compressed element at byte {at}: {e}")))?;
                parse_elements(&inflated, big_endian, path, true, out)?;
            }
            _ => {
                return Err(el.error(
                    &context,
                    format!("unexpected data element type {ty} at byte {at} (expected {MI_MATRIX} matrix or {MI_COMPRESSED} compressed)"),
                ))
            }
        }
    }
    Ok(())
}

/// Parses a MATLAB 5.0 MAT-file held in memory; `path` only names the source in errors.
pub fn parse_mat(bytes: &[u8], path: &Path) -> Result<MatFile, DataError> {
    if bytes.len() < HEADER_BYTES {
        return Err(DataError::format(
            path,
            format!(
                "truncated: {} bytes, too short for the {HEADER_BYTES}-byte MAT-file header",
                bytes.len()
            ),
        ));
    }
    if bytes.starts_with(b"MATLAB 7.3 MAT-file") {
        return Err(DataError::format(
            path,
            "a MATLAB 7.3 (HDF5) MAT-file; only MATLAB 5.0 MAT-files are supported (save with -v7)",
        ));
    }
    if !bytes.starts_with(HEADER_TEXT) {
        let shown = String::from_utf8_lossy(&bytes[..HEADER_TEXT.len()]).escape_debug().to_string();
        return Err(DataError::format(
            path,
            format!("not a MATLAB 5.0 MAT-file: the header text should begin 'MATLAB 5.0 MAT-file', found '{shown}'"),
        ));
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(DataError::format(
                path,
                format!(
                    "bad endian indicator: expected 'IM' or 'MI', found bytes {:02x} {:02x}",
                    other[0], other[1]
                ),
            ))
        }
    };
    let version = if big_endian {
        u16::from_be_bytes([bytes[124], bytes[125]])
    } else {
        u16::from_le_bytes([bytes[124], bytes[125]])
    };
    if version != 0x0100 {
        return Err(DataError::format(
            path,
            format!("unsupported MAT-file version 0x{version:04x} (expected 0x0100)"),
        ));
    }
    let mut variables = Vec::new();
    parse_elements(&bytes[HEADER_BYTES..], big_endian, path, false, &mut variables)?;
    Ok(MatFile { big_endian, variables })
}

/// Reads and parses a MATLAB 5.0 MAT-file.
pub fn read_mat(path: &Path) -> Result<MatFile, DataError> {
    parse_mat(&read_file(path)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(data_type: u32, big_endian: bool, bytes: &[u8]) -> MatNumeric {
        MatNumeric { data_type, big_endian, bytes: bytes.to_vec() }
    }

    #[test]
    fn numeric_values_decode_every_storage_type_in_both_byte_orders() {
        assert_eq!(numeric(1, false, &[0xff]).get(0), -1.0);
        assert_eq!(numeric(3, true, &[0xff, 0xfe]).get(0), -2.0);
        assert_eq!(numeric(4, false, &[0x01, 0x02]).get(0), 513.0);
        assert_eq!(numeric(5, true, &[0, 0, 1, 0]).get(0), 256.0);
        assert_eq!(numeric(6, false, &[7, 0, 0, 0, 9, 0, 0, 0]).get(1), 9.0);
        assert_eq!(numeric(7, true, &1.5f32.to_be_bytes()).get(0), 1.5);
        assert_eq!(numeric(9, false, &10.0f64.to_le_bytes()).get(0), 10.0);
        assert_eq!(numeric(12, true, &(-3i64).to_be_bytes()).get(0), -3.0);
        assert_eq!(numeric(13, false, &5u64.to_le_bytes()).len(), 1);
        let mixed: Vec<u8> = [3.0f64, 255.0, 256.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(numeric(9, false, &mixed).to_u8(), Err((2, 256.0)));
        assert_eq!(numeric(9, false, &mixed[..16]).to_u8().unwrap().as_ref(), &[3, 255]);
        assert!(matches!(numeric(2, false, &[1, 2]).to_u8(), Ok(Cow::Borrowed(&[1, 2]))));
    }

    #[test]
    fn small_and_full_tags_are_both_read_and_padding_skipped() {
        // A small element (type 1, 2 bytes "ab"), then a full one (type 2, 3 bytes, padded to 8).
        let bytes = [1, 0, 2, 0, b'a', b'b', 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 7, 8, 9, 0, 0, 0, 0, 0];
        let mut el = Elements { bytes: &bytes, pos: 0, big_endian: false, path: Path::new("t") };
        assert_eq!(el.next("x").unwrap(), (1, &b"ab"[..]));
        assert_eq!(el.next("x").unwrap(), (2, &[7u8, 8, 9][..]));
        assert!(el.done());
        let big = [0, 2, 0, 1, b'a', b'b', 0, 0];
        let mut el = Elements { bytes: &big, pos: 0, big_endian: true, path: Path::new("t") };
        assert_eq!(el.next("x").unwrap(), (1, &b"ab"[..]));
        let oversized = [1, 0, 9, 0, 0, 0, 0, 0];
        let mut el =
            Elements { bytes: &oversized, pos: 0, big_endian: false, path: Path::new("t") };
        assert!(el.next("x").unwrap_err().to_string().contains("claims 9 bytes"));
    }
}
