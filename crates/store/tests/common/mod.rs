//! Test ACIs, built with the `tar` crate; IDs computed here independently.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write;

use berth_appc::ImageId;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

/// An entry of a test image's rootfs (paths relative to rootfs/).
pub enum E {
    Dir(&'static str),
    File(String, Vec<u8>),
    Link(String, String),
}

pub fn file(path: &str, content: impl AsRef<[u8]>) -> E {
    E::File(path.to_string(), content.as_ref().to_vec())
}

pub fn link(path: &str, target: &str) -> E {
    E::Link(path.to_string(), target.to_string())
}

/// An image manifest. `deps` is the JSON list of dependencies.
pub fn manifest(name: &str, labels: &[(&str, &str)], deps: Value, whitelist: &[&str]) -> Vec<u8> {
    let mut m = json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": labels.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
    });
    if deps.as_array().is_some_and(|a| !a.is_empty()) {
        m["dependencies"] = deps;
    }
    if !whitelist.is_empty() {
        m["pathWhitelist"] = json!(whitelist);
    }
    serde_json::to_vec(&m).unwrap()
}

pub fn dep_name(name: &str, labels: &[(&str, &str)]) -> Value {
    json!({
        "imageName": name,
        "labels": labels.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
    })
}

pub fn dep_id(name: &str, id: &ImageId) -> Value {
    json!({"imageName": name, "imageID": id.as_str()})
}

pub fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_500_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// An uncompressed ACI: manifest, rootfs/, every parent directory, entries.
pub fn tar_aci(manifest: &[u8], entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, manifest.len() as u64);
    b.append_data(&mut h, "manifest", manifest).unwrap();
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, "rootfs", &[][..]).unwrap();
    let mut made = BTreeSet::new();
    let parents = |b: &mut tar::Builder<Vec<u8>>, path: &str, made: &mut BTreeSet<String>| {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let p = parts[..i].join("/");
            if made.insert(p.clone()) {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                b.append_data(&mut h, format!("rootfs/{p}"), &[][..])
                    .unwrap();
            }
        }
    };
    for e in entries {
        match e {
            E::Dir(p) => {
                parents(&mut b, p, &mut made);
                if made.insert(p.to_string()) {
                    let mut h = header(tar::EntryType::Directory, 0o755, 0);
                    b.append_data(&mut h, format!("rootfs/{p}"), &[][..])
                        .unwrap();
                }
            }
            E::File(p, data) => {
                parents(&mut b, p, &mut made);
                let mode = if p.starts_with("bin/") { 0o755 } else { 0o644 };
                let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
                b.append_data(&mut h, format!("rootfs/{p}"), &data[..])
                    .unwrap();
            }
            E::Link(p, target) => {
                parents(&mut b, p, &mut made);
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, format!("rootfs/{p}"), target)
                    .unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The image ID of an uncompressed ACI, computed independently.
pub fn id_of(tar: &[u8]) -> ImageId {
    ImageId::from_sha512(&Sha512::digest(tar))
}

/// busybox-static if the machine has it, else a synthetic "binary".
pub fn busybox() -> Vec<u8> {
    std::fs::read("/bin/busybox")
        .unwrap_or_else(|_| (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect())
}

/// A simple image named `name` with some files.
pub fn simple(name: &str, labels: &[(&str, &str)], extra: &str) -> Vec<u8> {
    tar_aci(
        &manifest(name, labels, json!([]), &[]),
        &[
            file("etc/hello", format!("hello from {name} {extra}\n")),
            file("bin/true", b"#!/bin/sh\n"),
        ],
    )
}
