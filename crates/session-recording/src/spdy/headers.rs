//! SPDY/3 header blocks: one zlib stream per direction, seeded with the
//! SPDY/3 dictionary, fed every header block (SYN_STREAM, SYN_REPLY, HEADERS)
//! in order and never reset; and the name/value block inside.

use std::sync::OnceLock;

use flate2::{Decompress, FlushDecompress, Status};

use super::SpdyError;
use crate::shared_error::SharedError;

/// Largest decompressed header block accepted.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// The header names the SPDY/3 dictionary starts with, each stored with a
/// 4-byte big-endian length prefix (draft-mbelshe-httpbis-spdy-00 §2.6.10.1).
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail: status codes, reason phrases, dates and common values, unprefixed.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8",
    "charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 zlib dictionary (1423 bytes).
pub fn spdy3_dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut dict = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
            dict.extend_from_slice(word.as_bytes());
        }
        dict.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        dict
    })
}

/// One direction's persistent header-block decompressor.
pub struct HeaderDecompressor {
    inflate: Decompress,
    out: Vec<u8>,
}

impl std::fmt::Debug for HeaderDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecompressor")
            .field("total_in", &self.inflate.total_in())
            .finish()
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A decompressor at the start of the zlib stream.
    pub fn new() -> Self {
        HeaderDecompressor {
            inflate: Decompress::new(true),
            out: Vec::new(),
        }
    }

    /// Decompresses the next header block of this direction (each ends with a
    /// zlib sync flush). Returns the name/value block.
    pub fn decompress(&mut self, block: &[u8]) -> Result<&[u8], SpdyError> {
        self.out.clear();
        let mut consumed = 0usize;
        loop {
            if self.out.len() >= MAX_HEADER_BLOCK {
                return Err(SpdyError::HeaderBlockTooLarge {
                    max: MAX_HEADER_BLOCK,
                });
            }
            if self.out.capacity() - self.out.len() < 1024 {
                let grow =
                    (self.out.capacity().max(1024)).min(MAX_HEADER_BLOCK + 1024 - self.out.len());
                self.out.reserve(grow);
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let result = self.inflate.decompress_vec(
                &block[consumed..],
                &mut self.out,
                FlushDecompress::Sync,
            );
            consumed += (self.inflate.total_in() - in_before) as usize;
            let produced = self.inflate.total_out() - out_before;
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(err) if err.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(spdy3_dictionary())
                        .map_err(|e| SpdyError::Decompress(SharedError::new(e)))?;
                    continue;
                }
                Err(err) => return Err(SpdyError::Decompress(SharedError::new(err))),
            }
            let output_full = self.out.len() == self.out.capacity();
            if consumed == block.len() && !output_full {
                break;
            }
            if produced == 0 && consumed == block.len() {
                break;
            }
            if produced == 0 && !output_full && (self.inflate.total_in() - in_before) == 0 {
                return Err(SpdyError::DecompressStalled);
            }
        }
        Ok(&self.out)
    }
}

/// Reads a SPDY/3 name/value block: a 32-bit count, then per pair a 32-bit
/// length and name, a 32-bit length and value (values may hold several
/// NUL-separated values). Calls `visit(name, value)` for each pair.
pub fn for_each_header<'a>(
    block: &'a [u8],
    mut visit: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<(), SpdyError> {
    let mut rest = block;
    let count = read_u32(&mut rest).ok_or(SpdyError::MalformedHeaderBlock("missing pair count"))?;
    for _ in 0..count {
        let name = read_field(&mut rest)
            .ok_or(SpdyError::MalformedHeaderBlock("truncated header name"))?;
        let value = read_field(&mut rest)
            .ok_or(SpdyError::MalformedHeaderBlock("truncated header value"))?;
        visit(name, value);
    }
    Ok(())
}

/// The value of the header `name` (ASCII case-insensitive), if present.
pub fn find_header<'a>(block: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, SpdyError> {
    let mut found = None;
    for_each_header(block, |key, value| {
        if found.is_none() && key.eq_ignore_ascii_case(name.as_bytes()) {
            found = Some(value);
        }
    })?;
    Ok(found)
}

fn read_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_be_bytes(*head))
}

fn read_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = read_u32(rest)? as usize;
    if rest.len() < len {
        return None;
    }
    let (field, tail) = rest.split_at(len);
    *rest = tail;
    Some(field)
}

/// Encodes a name/value block (tests and benchmarks).
pub fn encode_header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A header-block compressor as a SPDY peer has one (tests and benchmarks):
/// one zlib stream, dictionary-seeded, sync-flushed per block.
pub struct HeaderCompressor {
    deflate: flate2::Compress,
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    /// A compressor at the start of its zlib stream.
    pub fn new() -> Self {
        let mut deflate = flate2::Compress::new(flate2::Compression::default(), true);
        // Setting a dictionary on a fresh stream cannot fail.
        let _ = deflate.set_dictionary(spdy3_dictionary());
        HeaderCompressor { deflate }
    }

    /// Compresses one name/value block, ending with a sync flush.
    pub fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            let _ = self.deflate.compress_vec(
                &block[consumed..],
                &mut out,
                flate2::FlushCompress::Sync,
            );
            consumed += (self.deflate.total_in() - before) as usize;
            if consumed == block.len() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_matches_the_spec() {
        let dict = spdy3_dictionary();
        assert_eq!(dict.len(), 1423);
        assert_eq!(&dict[..11], b"\0\0\0\x07options");
        assert!(dict.ends_with(b",*,enq=0."));
        // zlib's dictionary ID is the Adler-32 of the dictionary.
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for &byte in dict {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    // Mirrors upstream Test_spdyFrame_parseHeaders: blocks compressed with the
    // dictionary through one persistent stream, decompressed in order.
    #[test]
    fn persistent_stream_round_trip() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        let blocks = [
            encode_header_block(&[("streamtype", "error"), ("port", "")]),
            encode_header_block(&[("streamType", "stdout")]),
            encode_header_block(&[("x", "a\0b"), ("streamtype", "resize")]),
        ];
        for block in &blocks {
            let compressed = c.compress(block);
            assert_eq!(d.decompress(&compressed).unwrap(), &block[..]);
        }
        let out = d.decompress(&c.compress(&blocks[1])).unwrap().to_vec();
        assert_eq!(
            find_header(&out, "streamtype").unwrap(),
            Some(&b"stdout"[..])
        );
    }

    #[test]
    fn large_block_is_bounded() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        let big = "v".repeat(MAX_HEADER_BLOCK + 10);
        let block = encode_header_block(&[("big", &big)]);
        let err = d.decompress(&c.compress(&block)).unwrap_err();
        assert_eq!(
            err,
            SpdyError::HeaderBlockTooLarge {
                max: MAX_HEADER_BLOCK
            }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(b"\x00\x01garbage").is_err());
        assert!(find_header(b"\0\0\0\x05\0\0", "x").is_err());
    }
}
