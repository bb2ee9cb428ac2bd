//! Local Docker/OCI images: `oci:DIR[:TAG]` (an OCI image layout),
//! `oci-archive:FILE[:TAG]` (the same in a tar) and
//! `docker-archive:FILE[:REF]` (what `docker save` and `podman save`
//! write: `manifest.json`, a config JSON and a tar per layer).
//!
//! Blobs are copied into the store through the same digest check as
//! downloads. Archives are read in one pass: every blob-like entry goes
//! into the store as it comes (the tar's order is not known in advance);
//! blobs the chosen image does not list are left for `gc`. A
//! `docker-archive:` image has no manifest: berth writes an OCI one listing
//! the archive's config and layers, and its digest is the image's ID.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_appc::oci::spec::{self, Descriptor, DockerArchiveEntry};
use berth_appc::oci::{DockerReference, OciLocation};
use berth_appc::reference::OciTransport;
use berth_store::Digest;

use super::{digest, sha256, OciFetchError, OciFetched, OciFetcher, Transfers, MAX_DOCUMENT};

/// Where blobs come from.
enum Blobs<'p> {
    /// An OCI layout directory: `blobs/sha256/<hex>`.
    Dir(&'p Path),
    /// Already copied into the store (archives).
    Store,
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> OciFetchError + 'p {
    move |source| OciFetchError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, OciFetchError> {
    let f = File::open(path).map_err(io_err("open", path))?;
    let mut out = Vec::new();
    f.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut out)
        .map_err(io_err("read", path))?;
    if out.len() as u64 > MAX_DOCUMENT {
        return Err(OciFetchError::Layout {
            path: path.into(),
            reason: format!("larger than {MAX_DOCUMENT} bytes"),
        });
    }
    Ok(out)
}

impl OciFetcher<'_> {
    /// Fetch from an `oci:`, `oci-archive:` or `docker-archive:` location.
    pub fn fetch_local(&self, loc: &OciLocation) -> Result<OciFetched, OciFetchError> {
        let path =
            std::path::absolute(&loc.path).map_err(io_err("resolve", Path::new(&loc.path)))?;
        let stored_as = OciLocation {
            transport: loc.transport,
            path: path.display().to_string(),
            reference: loc.reference.clone(),
        }
        .to_string();
        if self.opts.policy == crate::PullPolicy::Never {
            return match self.store.oci_lookup(&stored_as)? {
                Some(image) => Ok(OciFetched {
                    image,
                    downloaded: Vec::new(),
                    reused: Vec::new(),
                    from_store: true,
                }),
                None => Err(OciFetchError::NotInStore {
                    reference: stored_as,
                }),
            };
        }
        let _guard = self.store.oci_pull_guard()?;
        match loc.transport {
            OciTransport::Oci => {
                let index = read_limited(&path.join("index.json"))?;
                self.fetch_layout(
                    &stored_as,
                    &path,
                    &index,
                    loc.reference.as_deref(),
                    Blobs::Dir(&path),
                )
            }
            OciTransport::OciArchive => {
                let index = self.unpack_archive(&path, ArchiveKind::Oci)?;
                let Some(index) = index.get("index.json") else {
                    return Err(OciFetchError::Layout {
                        path,
                        reason: "no index.json: not an OCI archive (a docker save archive is docker-archive:)".into(),
                    });
                };
                self.fetch_layout(
                    &stored_as,
                    &path,
                    index,
                    loc.reference.as_deref(),
                    Blobs::Store,
                )
            }
            OciTransport::DockerArchive => self.fetch_docker_archive(&stored_as, &path, loc),
        }
    }

    /// A small blob (manifest, index) from `blobs`, checked.
    fn small_blob(
        &self,
        reference: &str,
        blobs: &Blobs<'_>,
        d: &Descriptor,
    ) -> Result<Vec<u8>, OciFetchError> {
        let dg = digest(reference, d)?;
        let bytes = match blobs {
            Blobs::Dir(dir) => read_limited(&dir.join("blobs/sha256").join(dg.hex()))?,
            Blobs::Store => self
                .store
                .read_blob(&dg)
                .map_err(|e| OciFetchError::from_blob(reference, e))?,
        };
        let got = sha256(&bytes);
        if got != dg {
            return Err(OciFetchError::Corrupt {
                reference: reference.into(),
                digest: dg.to_string(),
                actual: got.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Make sure the store has the blob `d`: copied from the layout,
    /// checked against its digest and size.
    fn ensure_blob(
        &self,
        reference: &str,
        blobs: &Blobs<'_>,
        d: &Descriptor,
        fetched: &mut Transfers,
    ) -> Result<(), OciFetchError> {
        let dg = digest(reference, d)?;
        if self.store.has_blob(&dg) {
            fetched.reused.push(dg);
            return Ok(());
        }
        let Blobs::Dir(dir) = blobs else {
            return Err(OciFetchError::Layout {
                path: PathBuf::from(reference),
                reason: format!("blob {dg} is missing from the archive"),
            });
        };
        let p = dir.join("blobs/sha256").join(dg.hex());
        let f = File::open(&p).map_err(io_err("open", &p))?;
        let (_, size) = self
            .store
            .put_blob(io::BufReader::with_capacity(256 * 1024, f), Some(&dg))
            .map_err(|e| OciFetchError::from_blob(reference, e))?;
        if size != d.size {
            return Err(OciFetchError::Size {
                reference: reference.into(),
                digest: dg.to_string(),
                expected: d.size,
                actual: size,
            });
        }
        fetched.downloaded.push(dg);
        Ok(())
    }

    fn fetch_layout(
        &self,
        reference: &str,
        path: &Path,
        index: &[u8],
        tag: Option<&str>,
        blobs: Blobs<'_>,
    ) -> Result<OciFetched, OciFetchError> {
        let idx: spec::Index =
            serde_json::from_slice(index).map_err(|e| OciFetchError::Document {
                reference: reference.into(),
                what: "index.json".into(),
                reason: e.to_string(),
            })?;
        let tags: Vec<&str> = idx
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(spec::REF_NAME).map(String::as_str))
            .collect();
        let chosen = match tag {
            Some(t) => idx.manifests.iter().find(|d| {
                d.annotations.get(spec::REF_NAME).map(String::as_str) == Some(t) || d.digest == t
            }),
            None if idx.manifests.len() == 1 => idx.manifests.first(),
            None => None,
        };
        let Some(chosen) = chosen else {
            return Err(OciFetchError::Layout {
                path: path.into(),
                reason: match tag {
                    Some(t) => format!("no image tagged {t:?} (tags: {})", tags.join(", ")),
                    None => format!(
                        "holds {} images: name one with :TAG (tags: {})",
                        idx.manifests.len(),
                        tags.join(", ")
                    ),
                },
            });
        };
        let first = self.small_blob(reference, &blobs, chosen)?;
        let (mbytes, mt) = self.resolve_index(reference, first, &chosen.media_type, &|d| {
            Ok((self.small_blob(reference, &blobs, d)?, d.media_type.clone()))
        })?;
        let manifest = self.parse_manifest(reference, &mbytes)?;
        let mut t = Transfers::default();
        self.ensure_blob(reference, &blobs, &manifest.config, &mut t)?;
        for l in &manifest.layers {
            self.ensure_blob(reference, &blobs, l, &mut t)?;
        }
        let image = self.record(
            reference,
            &mbytes,
            &mt,
            &manifest,
            Some(reference.to_string()),
            path.display().to_string(),
        )?;
        Ok(t.done(image))
    }

    /// Read an archive once: blob entries into the store, the small
    /// metadata files (`index.json`, `manifest.json`...) into memory.
    /// For a docker archive every regular file but the metadata is a blob,
    /// and the result maps its name to its digest (as `name` -> hex).
    fn unpack_archive(
        &self,
        path: &Path,
        kind: ArchiveKind,
    ) -> Result<HashMap<String, Vec<u8>>, OciFetchError> {
        let f = File::open(path).map_err(io_err("open", path))?;
        let mut ar = tar::Archive::new(io::BufReader::with_capacity(256 * 1024, f));
        let mut small = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let bad = |reason: String| OciFetchError::Layout {
            path: path.into(),
            reason,
        };
        for e in ar.entries().map_err(io_err("read", path))? {
            let mut e = e.map_err(io_err("read", path))?;
            let name = String::from_utf8_lossy(&e.path_bytes())
                .trim_start_matches("./")
                .to_string();
            let et = e.header().entry_type();
            if et.is_symlink() || et.is_hard_link() {
                // podman/docker save link identical layer files together.
                if let Some(t) = e.link_name_bytes() {
                    let t = String::from_utf8_lossy(&t).into_owned();
                    let target = if et.is_symlink() {
                        match name.rsplit_once('/') {
                            Some((dir, _)) => normalize(&format!("{dir}/{t}")),
                            None => normalize(&t),
                        }
                    } else {
                        normalize(&t)
                    };
                    links.push((name, target));
                }
                continue;
            }
            if !et.is_file() {
                continue;
            }
            let meta = matches!(
                name.as_str(),
                "index.json" | "oci-layout" | "manifest.json" | "repositories"
            ) || name.ends_with("/VERSION")
                || name.ends_with("/json");
            if meta {
                if e.size() > MAX_DOCUMENT {
                    return Err(bad(format!("{name} is larger than {MAX_DOCUMENT} bytes")));
                }
                let mut b = Vec::new();
                e.read_to_end(&mut b).map_err(io_err("read", path))?;
                small.insert(name, b);
                continue;
            }
            match kind {
                ArchiveKind::Oci => {
                    let Some(hex) = name.strip_prefix("blobs/sha256/") else {
                        continue;
                    };
                    let dg: Digest = format!("sha256:{hex}")
                        .parse()
                        .map_err(|_| bad(format!("{name} is not named by a sha256 digest")))?;
                    if self.store.has_blob(&dg) {
                        continue;
                    }
                    self.store.put_blob(&mut e, Some(&dg)).map_err(|err| {
                        OciFetchError::from_blob(&path.display().to_string(), err)
                    })?;
                }
                ArchiveKind::Docker => {
                    let (dg, size) = self.store.put_blob(&mut e, None).map_err(|err| {
                        OciFetchError::from_blob(&path.display().to_string(), err)
                    })?;
                    small.insert(format!("blob:{name}"), format!("{dg} {size}").into_bytes());
                }
            }
        }
        for (name, target) in links {
            if let Some(v) = small.get(&format!("blob:{target}")).cloned() {
                small.insert(format!("blob:{name}"), v);
            }
        }
        Ok(small)
    }

    fn fetch_docker_archive(
        &self,
        reference: &str,
        path: &Path,
        loc: &OciLocation,
    ) -> Result<OciFetched, OciFetchError> {
        let files = self.unpack_archive(path, ArchiveKind::Docker)?;
        let bad = |reason: String| OciFetchError::Layout {
            path: path.into(),
            reason,
        };
        let Some(mj) = files.get("manifest.json") else {
            return Err(bad(
                "no manifest.json: not a docker save archive (an OCI archive is oci-archive:)"
                    .into(),
            ));
        };
        let entries: Vec<DockerArchiveEntry> =
            serde_json::from_slice(mj).map_err(|e| bad(format!("manifest.json: {e}")))?;
        let all_tags: Vec<String> = entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten().cloned())
            .collect();
        let entry = match loc.reference.as_deref() {
            None if entries.len() == 1 => &entries[0],
            None => {
                return Err(bad(format!(
                    "holds {} images: name one with :REF or :@INDEX (tags: {})",
                    entries.len(),
                    all_tags.join(", ")
                )))
            }
            Some(r) if r.starts_with('@') => {
                let i: usize = r[1..]
                    .parse()
                    .map_err(|_| bad(format!("{r:?} is not @INDEX")))?;
                entries
                    .get(i)
                    .ok_or_else(|| bad(format!("no image @{i} (it holds {})", entries.len())))?
            }
            Some(r) => {
                let want = DockerReference::parse(r).ok();
                entries
                    .iter()
                    .find(|e| {
                        e.repo_tags.iter().flatten().any(|t| {
                            t == r || (want.is_some() && DockerReference::parse(t).ok() == want)
                        })
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "no image tagged {r:?} (tags: {})",
                            all_tags.join(", ")
                        ))
                    })?
            }
        };
        let blob = |name: &str| -> Result<(Digest, u64), OciFetchError> {
            let v = files
                .get(&format!("blob:{}", normalize(name)))
                .ok_or_else(|| bad(format!("{name} is listed in manifest.json but missing")))?;
            let s = String::from_utf8_lossy(v);
            let (d, n) = s.split_once(' ').unwrap_or_default();
            Ok((
                d.parse()
                    .map_err(|_| bad(format!("{name}: internal digest")))?,
                n.parse().unwrap_or(0),
            ))
        };
        let (cdigest, csize) = blob(&entry.config)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let (d, size) = blob(l)?;
            let mut head = [0u8; 8];
            let n = File::open(self.store.blob_path(&d))
                .and_then(|mut f| f.read(&mut head))
                .unwrap_or(0);
            let media_type = match berth_appc::aci::detect_compression(&head[..n]) {
                berth_appc::aci::Compression::Gzip => spec::OCI_LAYER_GZIP,
                berth_appc::aci::Compression::Zstd => spec::OCI_LAYER_ZSTD,
                _ => spec::OCI_LAYER,
            };
            layers.push(
                serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": size}),
            );
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": spec::OCI_MANIFEST,
            "config": {"mediaType": spec::OCI_CONFIG, "digest": cdigest.to_string(), "size": csize},
            "layers": layers,
        });
        let mbytes = serde_json::to_vec(&manifest).unwrap_or_default();
        let parsed = self.parse_manifest(reference, &mbytes)?;
        let mut t = Transfers::default();
        t.downloaded.push(cdigest);
        let stored_as = match (
            &loc.reference,
            entry.repo_tags.as_ref().and_then(|t| t.first()),
        ) {
            (None, Some(t)) => format!("{reference}:{t}"),
            _ => reference.to_string(),
        };
        let image = self.record(
            reference,
            &mbytes,
            spec::OCI_MANIFEST,
            &parsed,
            Some(stored_as),
            path.display().to_string(),
        )?;
        Ok(t.done(image))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveKind {
    Oci,
    Docker,
}

/// `a/./b/../c` -> `a/c` (names inside an archive; never a host path).
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}
