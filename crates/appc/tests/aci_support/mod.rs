//! Helpers shared by the ACI integration tests: image directories, raw tar
//! writing (hostile archives cannot be made with a well-behaved builder),
//! external tools, and a timeout around calls that must not hang.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const MANIFEST: &str = r#"{
  "acKind": "ImageManifest",
  "acVersion": "0.8.11",
  "name": "example.com/berth-test",
  "labels": [
    {"name": "version", "value": "1.0.0"},
    {"name": "os", "value": "linux"},
    {"name": "arch", "value": "amd64"}
  ],
  "app": {"exec": ["/bin/busybox", "true"], "user": "0", "group": "0"}
}
"#;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// An image directory with a manifest and an empty rootfs/.
pub fn image_dir(parent: &Path) -> PathBuf {
    let d = parent.join("image");
    fs::create_dir_all(d.join("rootfs")).unwrap();
    fs::write(d.join("manifest"), MANIFEST).unwrap();
    d
}

/// Run `f` on another thread; panic if it takes longer than `secs` (the
/// thread is left behind: the test fails either way).
pub fn with_timeout<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not finish within {secs} s (hung?)"))
}

/// `sh -c CMD`, stdout as a string; panics on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh -c {cmd:?}: {e}"));
    assert!(out.status.success(), "`{cmd}` failed: {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `sha512-` + the SHA-512 that `sha512sum` prints for the stdout of `cmd`.
pub fn sha512_of_cmd(cmd: &str) -> String {
    let out = sh(&format!("{cmd} | sha512sum"));
    format!("sha512-{}", out.split_whitespace().next().unwrap())
}

/// A raw tar being written by hand, entry by entry.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

impl RawTar {
    /// One ustar header (name up to 100 bytes, written verbatim: `..` and
    /// absolute names included) and its data.
    pub fn entry(
        &mut self,
        name: &[u8],
        kind: u8,
        link: &[u8],
        mode: u32,
        data: &[u8],
    ) -> &mut Self {
        self.entry_dev(name, kind, link, mode, data, (0, 0))
    }

    pub fn entry_dev(
        &mut self,
        name: &[u8],
        kind: u8,
        link: &[u8],
        mode: u32,
        data: &[u8],
        dev: (u32, u32),
    ) -> &mut Self {
        assert!(name.len() <= 100 && link.len() <= 100);
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name);
        octal(&mut b[100..108], u64::from(mode));
        octal(&mut b[108..116], 0);
        octal(&mut b[116..124], 0);
        octal(&mut b[124..136], data.len() as u64);
        octal(&mut b[136..148], 1_500_000_000);
        b[156] = kind;
        b[157..157 + link.len()].copy_from_slice(link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], u64::from(dev.0));
        octal(&mut b[337..345], u64::from(dev.1));
        b[148..156].fill(b' ');
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        octal(&mut b[148..155], sum);
        b[155] = b' ';
        self.bytes.extend_from_slice(&b);
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'0', b"", 0o644, data)
    }
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'5', b"", 0o755, b"")
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'2', target.as_bytes(), 0o777, b"")
    }
    pub fn hard_link(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'1', target.as_bytes(), 0o644, b"")
    }
    /// A PAX extended header carrying `path`, then the entry itself.
    pub fn pax_file(&mut self, path: &[u8], data: &[u8]) -> &mut Self {
        let mut rec = Vec::new();
        let body = path.len() + b"path".len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        rec.extend_from_slice(format!("{len} path=").as_bytes());
        rec.extend_from_slice(path);
        rec.push(b'\n');
        self.entry(b"././@PaxHeader", b'x', b"", 0o644, &rec);
        self.entry(b"placeholder", b'0', b"", 0o644, data)
    }
    /// A GNU long-name entry, then the entry itself.
    pub fn gnu_long_file(&mut self, path: &[u8], data: &[u8]) -> &mut Self {
        let mut name = path.to_vec();
        name.push(0);
        self.entry(b"././@LongLink", b'L', b"", 0o644, &name);
        self.entry(b"placeholder", b'0', b"", 0o644, data)
    }
    /// The usual beginning: manifest and rootfs/.
    pub fn start(&mut self) -> &mut Self {
        self.file("manifest", MANIFEST.as_bytes()).dir("rootfs/")
    }
    /// End-of-archive blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        std::mem::take(&mut self.bytes)
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A snapshot of everything under `dir` (path, kind, size, mode, content
/// hash), to prove that nothing outside an extraction target changed.
pub fn snapshot(dir: &Path, skip: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(d: &Path, skip: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            if p == skip {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            use std::os::unix::fs::MetadataExt;
            let content = if m.is_file() {
                format!("{:?}", fs::read(&p).unwrap())
            } else if m.file_type().is_symlink() {
                format!("-> {:?}", fs::read_link(&p).unwrap())
            } else {
                String::new()
            };
            out.push(format!(
                "{} mode={:o} nlink={} {}",
                p.display(),
                m.mode(),
                m.nlink(),
                content
            ));
            if m.is_dir() {
                walk(&p, skip, out);
            }
        }
    }
    walk(dir, skip, &mut out);
    out
}
