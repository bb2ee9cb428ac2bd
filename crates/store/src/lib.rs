//! # berth-store: the image store
//!
//! Plumbing that keeps images on disk and hands out rendered file trees.
//! No network (that is `berth-fetch`), no namespaces (that is `berth-pod`).
//!
//! ## How the parts relate
//!
//! - [`Store`] (`store.rs`) is the API: open, import, lookup, list, remove,
//!   export, extract, render, gc, verify, HTTP cache data.
//! - `import.rs` streams an ACI once: the bytes as received go to a temp
//!   file and to an [`ImportVerifier`]; the decompressed stream is hashed
//!   (the image ID) and validated by `berth_appc::aci`. Only a complete,
//!   valid, expected and accepted image is renamed into the blob store and
//!   then indexed. With `ImportOptions::render` the same pass extracts the
//!   rootfs into a staging dir, which becomes the image's tree only after
//!   that (images without dependencies; `berth fetch` asks for it).
//! - [`Digest`] (`digest.rs`) names blobs: `sha512-…` for ACIs (the image
//!   ID), `sha256:…` for OCI blobs later.
//! - `index.rs` is the SQLite index (schema versions and migrations, WAL).
//! - `tree.rs` resolves an image's dependencies (the appc "Filesystem
//!   Setup" order, path whitelists, override rules), renders them once into
//!   `tree/<key>/`, and hands out [`TreeLease`]s to pods.
//! - `oci.rs` keeps OCI images: sha256 blobs shared by digest (with
//!   resumable partial downloads), image rows with their references and
//!   blobs, and trees of layer chains with OCI whiteout semantics.
//! - `gc.rs` removes unused trees and images and adopts or removes orphans;
//!   it also verifies blobs and trees against their hashes.
//! - `lock.rs` holds the flocks that make several berth processes safe, and
//!   each process's private temp directory; `fsops.rs` the fd-based,
//!   symlink-safe tree walking (remove, copy, hash).
//!
//! ## On disk (`<dir>` is the store's root, e.g. `/var/lib/berth`)
//!
//! ```text
//! cas/index.db                     SQLite index (+ -wal, -shm, backups)
//! cas/blobs/sha512/<128 hex>       an ACI as received; its name is its image ID
//! cas/blobs/sha256/<64 hex>        an OCI blob (manifest, config, layer)
//! cas/partial/sha256-<64 hex>      an OCI blob being downloaded (resumable)
//! tree/deps-sha512-<64 hex>/       a rendered tree, never written once there:
//!     rootfs/                        the image and its dependencies
//!     manifest                       the top image's manifest
//!     hash                           content hash of manifest + rootfs/
//!     layers                         image IDs rendered, bottom first (JSON)
//! locks/image/<algo>-<hex>         flock: import commit / remove / gc of an image
//! tree/oci-sha256-<64 hex>/        an OCI layer chain rendered: rootfs/, hash...
//! locks/oci-blobs                  flock: shared by pulls, exclusive to sweep blobs
//! locks/tree/<key>                 flock: shared = leased, exclusive = gc/remove
//! locks/render/<key>               flock: one renderer per tree
//! tmp/<pid>-<time>-<n>/            one process's temp files, locked while it lives
//! ```
//!
//! ## Invariants
//!
//! - A blob or tree that exists under its final name is whole (temp, fsync,
//!   rename, fsync of the directory). An index row is inserted only after
//!   what it names is in place, and removed before it goes.
//! - An image is visible only once the verifier has accepted it.
//! - A tree is removed only under its exclusive lock, which no lease holder
//!   lets anybody take; images of a leased tree are never removed.
//!
//! ## Logging
//! `debug` for decisions (which of several images matched, what gc skipped),
//! `info` for changes to the store (backups before migration), `warn` for
//! what was repaired (stale temp dirs, orphans). Errors are returned, never
//! logged here.

mod digest;
mod fsops;
mod gc;
mod import;
pub mod index;
mod lock;
mod oci;
mod store;
mod tree;

pub use digest::{Digest, DigestError};
pub use gc::{
    GcReport, OrphanReport, RemovedImage, RemovedTree, VerifyOptions, VerifyReport, VerifyStatus,
};
pub use import::{
    HttpCacheEntry, ImportError, ImportOptions, ImportReport, ImportVerifier, VerdictFn,
    VerifierError,
};
pub use index::IndexError;
pub use oci::{read_in_root, NewOciImage, OciBlob, OciImage, OciTree, PullGuard, RemovedOciImage};
pub use store::{ImageInfo, ImageKind, ImageRef, ImageRefError, Store, StoreError};
pub use tree::{TreeError, TreeKey, TreeLease, TreePath};
