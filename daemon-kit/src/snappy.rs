//! Snappy (block format, as remote_write uses) decoded within a bound: the length the
//! block declares is checked before anything is allocated, so a small body cannot make
//! a daemon allocate gigabytes.

/// Why a block was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnappyError {
    /// The header is not a snappy block's.
    Header(String),
    /// The block declares more than the bound.
    TooLarge {
        /// What it declares.
        declared: usize,
        /// The bound.
        max: usize,
    },
    /// The block is corrupt.
    Body(String),
}

/// Decodes `block` if it declares at most `max` bytes.
pub fn decompress_bounded(block: &[u8], max: usize) -> Result<Vec<u8>, SnappyError> {
    let declared =
        snap::raw::decompress_len(block).map_err(|e| SnappyError::Header(e.to_string()))?;
    if declared > max {
        return Err(SnappyError::TooLarge { declared, max });
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|e| SnappyError::Body(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_within_the_bound_and_refuses_a_large_declaration_before_allocating() {
        let block = snap::raw::Encoder::new()
            .compress_vec(&[7u8; 1000])
            .expect("compress");
        assert_eq!(decompress_bounded(&block, 1000), Ok(vec![7u8; 1000]));
        assert_eq!(
            decompress_bounded(&block, 999),
            Err(SnappyError::TooLarge {
                declared: 1000,
                max: 999
            })
        );
        // A header declaring 2^32-ish bytes in five bytes.
        assert!(matches!(
            decompress_bounded(b"\xff\xff\xff\xff\x0f", 1 << 20),
            Err(SnappyError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress_bounded(b"\x05abc", 1 << 20),
            Err(SnappyError::Body(_))
        ));
    }
}
