//! Finding Docker/OCI images in the store for the `image` subcommands,
//! beside ACIs.
//!
//! An argument is an OCI image when it is an OCI image ID (`sha256:` and
//! hex digits, a unique prefix of at least two) or a `docker://`, `oci:`,
//! `oci-archive:` or `docker-archive:` reference it was fetched as; a bare
//! name that is no ACI in the store is tried as a Docker reference too
//! (`busybox` is `docker://registry-1.docker.io/library/busybox:latest`).

use berth_appc::oci::OciLocation;
use berth_appc::reference::ImageArg;
use berth_fetch::find_in_store;
use berth_store::{ImageInfo, OciImage, Store};

/// An image of either kind.
#[derive(Debug)]
pub enum AnyImage {
    Aci(ImageInfo),
    Oci(OciImage),
}

/// The stored form of an `oci:`-style argument: its path made absolute.
fn stored_reference(arg: &str) -> Option<String> {
    match ImageArg::classify(arg).ok()? {
        ImageArg::DockerRef(_) => Some(arg.to_string()),
        ImageArg::OciLayout {
            transport,
            location,
        } => {
            let mut loc = OciLocation::parse(transport, &location).ok()?;
            loc.path = std::path::absolute(&loc.path).ok()?.display().to_string();
            Some(loc.to_string())
        }
        _ => None,
    }
}

/// Find `arg` among the OCI images, then the ACIs.
pub fn find_any(store: &Store, arg: &str) -> anyhow::Result<AnyImage> {
    if arg.starts_with("sha256:") {
        return Ok(AnyImage::Oci(store.oci_resolve(arg)?));
    }
    if let Some(r) = stored_reference(arg) {
        return Ok(AnyImage::Oci(store.oci_resolve(&r)?));
    }
    match find_in_store(store, arg) {
        Ok(i) => Ok(AnyImage::Aci(i)),
        Err(e) => match store.oci_lookup(arg) {
            Ok(Some(o)) => Ok(AnyImage::Oci(o)),
            _ => Err(e.into()),
        },
    }
}
