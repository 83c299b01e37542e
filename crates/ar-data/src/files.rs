//! Shared helpers for the readers: whole-file reads and transparent gzip decompression.

use crate::DataError;
use flate2::read::MultiGzDecoder;
use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::io(path, source))
}

/// The bytes themselves, or their decompressed content if they start with the gzip magic.
/// Detection is by content, not by name, so a `.gz` file that a mirror served decompressed is
/// still read.
pub(crate) fn maybe_gunzip<'a>(bytes: &'a [u8], path: &Path) -> Result<Cow<'a, [u8]>, DataError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(path, format!("corrupt gzip stream: {e}")))?;
    Ok(Cow::Owned(out))
}
