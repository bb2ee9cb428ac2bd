//! # ACI archives: reading, validating, extracting and building
//!
//! An ACI (spec/aci.md) is a tar archive, optionally compressed with gzip,
//! bzip2, xz or zstd, holding exactly two things at its top: the file
//! `manifest` (an image manifest) and the directory `rootfs/`. Its image ID is
//! `sha512-` + the SHA-512 of the *uncompressed* tar stream.
//!
//! Images come from the network, so everything that reads one treats it as
//! hostile:
//!
//! - [`decompress`] sniffs the compression from magic bytes (never from a file
//!   name) and streams: no operation ever holds a whole image in memory.
//! - [`validate`] reads the stream once, hashing every decompressed byte on a
//!   second thread (so hashing costs no wall time next to inflating), and
//!   reports every problem with the name of the entry that has it. Only what
//!   makes the stream unreadable is an `Err`.
//! - [`extract`] applies the same checks entry by entry, stops at the first
//!   one, and never writes outside its target: every path is resolved one
//!   component at a time through directory fds, never through a symlink
//!   (see `extract.rs` for the CVEs this defends against).
//! - [`validate_extract`] does both in one pass (an importer that renders
//!   while it stores): the same report as `validate`, and the extraction's
//!   own outcome, with the SHA-512 of each file as it was written.
//! - [`extract_layer`] and [`extract_layer_with`] extract one OCI image layer
//!   the same way, reporting its whiteouts for the caller to apply below it;
//!   over the tree of the layers below, its hard links may name their files,
//!   and it can hash the uncompressed stream (the layer's diff_id).
//! - [`build`] writes an ACI reproducibly (sorted entries, numeric owners,
//!   optional fixed mtimes, no user names, no time stamps in the gzip header)
//!   and compresses on all cores: gzip the way pigz does it (see `pgzip.rs`),
//!   zstd and xz with their libraries' own thread pools.
//!
//! The parts: `read.rs` (the hashing reader, the entry walker and the layout
//! checker shared by validate and extract), `extract.rs`, `build.rs` (the
//! directory walker and tar writer) and `pgzip.rs` (parallel gzip).

mod build;
mod extract;
mod pgzip;
mod read;

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::str::FromStr;

pub use build::{build, BuildOptions, BuildReport};
pub use extract::{
    extract, extract_layer, extract_layer_with, validate_extract, DevicePolicy, ExtractOptions,
    ExtractReport, Extracted, FileDigest, LayerOptions, LayerPath, LayerReport,
};
pub use pgzip::ParGzWriter;
pub use read::{read_manifest_bytes, validate, HashingReader, ValidateReport};

use crate::error::ManifestError;

/// Buffer size for reading compressed input and moving decompressed data.
/// Large buffers keep the per-call overhead of the decoders and the channel
/// to the hashing thread negligible.
pub(crate) const IO_BUF: usize = 256 * 1024;

/// The compression of an ACI, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// All variants, in the order `--compression` lists them.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Bzip2,
        Compression::Xz,
        Compression::Zstd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// The level used when [`BuildOptions::level`] is `None`: each tool's own
    /// default (gzip 6, bzip2 9, xz 6, zstd 3).
    pub fn default_level(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 6,
            Compression::Bzip2 => 9,
            Compression::Xz => 6,
            Compression::Zstd => 3,
        }
    }

    /// The highest level the encoder accepts.
    pub fn max_level(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Gzip | Compression::Bzip2 | Compression::Xz => 9,
            Compression::Zstd => 22,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compression name that is not one of `none`, `gzip`, `bzip2`, `xz`, `zstd`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression {0:?} (expected none, gzip, bzip2, xz or zstd)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCompression(s.to_string()))
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Memory the xz decoder may use. An xz header can ask for a dictionary of
/// up to 4 GiB; `xz -9` needs 65 MiB. (zstd's decoder has its own default
/// limit, a 128 MiB window, the same as the zstd tool's; gzip and bzip2 need
/// little memory whatever the input.)
const XZ_MEMLIMIT: u64 = 512 << 20;

/// The number of leading bytes [`detect_compression`] looks at.
pub const MAGIC_LEN: usize = 6;

/// The compression whose magic number `head` starts with; [`Compression::None`]
/// for anything else (an uncompressed tar, or garbage that the tar reader will
/// then refuse).
pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(XZ_MAGIC) {
        Compression::Xz
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else if head.starts_with(BZIP2_MAGIC) {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

/// Wrap a reader: peek at its magic bytes and return the detected compression
/// and a streaming reader of the decompressed bytes. Concatenated members
/// (gzip, bzip2, xz streams, zstd frames) are read as one stream, as `gzip
/// -dc` does. Errors of the returned reader are the decoder's; [`validate`]
/// and [`extract`] turn them into [`AciError::Decompress`].
pub fn decompress<'a, R: Read + 'a>(
    mut r: R,
) -> Result<(Compression, Box<dyn Read + 'a>), AciError> {
    let mut head = [0u8; MAGIC_LEN];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(AciError::Read(e)),
        }
    }
    let compression = detect_compression(&head[..n]);
    let joined = io::Cursor::new(head).take(n as u64).chain(r);
    let buffered = io::BufReader::with_capacity(IO_BUF, joined);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMLIMIT,
                liblzma::stream::CONCATENATED,
            )
            .map_err(|e| AciError::Decompress {
                compression,
                source: e.into(),
            })?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(buffered, stream))
        }
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(
            |source| AciError::Decompress {
                compression,
                source,
            },
        )?),
    };
    Ok((compression, reader))
}

/// Why an ACI operation failed. Each variant names what failed (a path on
/// this machine, or an entry of the archive); the underlying error is the
/// `source`, never repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum AciError {
    /// Reading the image stream itself failed (before decompression).
    #[error("cannot read the image")]
    Read(#[source] io::Error),
    /// A file or directory on this machine could not be read or written.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The compressed stream is corrupt or truncated.
    #[error("corrupt {compression} stream")]
    Decompress {
        compression: Compression,
        #[source]
        source: io::Error,
    },
    /// The (decompressed) stream is not a tar archive.
    #[error("not a tar archive: {reason}")]
    NotTar { reason: String },
    /// The tar archive ends in the middle of an entry.
    #[error("truncated archive (in or after entry {entry:?})")]
    Truncated { entry: String },
    /// An entry that would escape the target or otherwise break the layout.
    #[error("entry {entry:?}: {reason}")]
    Hostile { entry: String, reason: String },
    /// A device node, refused by [`DevicePolicy::Reject`].
    #[error("entry {entry:?}: device node refused (device policy is reject)")]
    Device { entry: String },
    /// The image manifest does not parse (strictly).
    #[error("invalid image manifest")]
    Manifest(#[from] ManifestError),
    /// The output already exists (and overwriting was not asked for).
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    /// The image layout is wrong: a missing or extra top-level item, or a
    /// non-empty extraction target.
    #[error("{}: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
    /// Writing an entry to the target failed.
    #[error("cannot {op} entry {entry:?}")]
    Extract {
        op: &'static str,
        entry: String,
        #[source]
        source: io::Error,
    },
}

impl AciError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        AciError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
