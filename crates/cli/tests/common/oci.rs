//! OCI image layouts written by the tests (layers made with the `tar`
//! crate, gzip/zstd/plain), trees described entry by entry to compare with
//! `umoci unpack`, and Debian's docker-registry on loopback.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{run, stderr, stdout, tool, ChildGuard, Env};

// ---------------------------------------------------------------- layers

/// One entry of a test layer.
pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Owned(&'a str, &'a [u8], u32, u64, u64),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    /// A directory with mode, owner and group.
    DirOwned(&'a str, u32, u64, u64),
}

pub fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p, mode) | E::DirOwned(p, mode, _, _) => {
                if let E::DirOwned(_, _, uid, gid) = e {
                    h.set_uid(*uid);
                    h.set_gid(*gid);
                }
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::File(p, data, mode) | E::Owned(p, data, mode, _, _) => {
                if let E::Owned(_, _, _, uid, gid) = e {
                    h.set_uid(*uid);
                    h.set_gid(*gid);
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                if p.contains("..") && !p.contains(".wh.") {
                    // The tar crate refuses to write such names: set the
                    // raw header field, as a hostile image would.
                    let name = &mut h.as_old_mut().name;
                    name[..p.len()].copy_from_slice(p.as_bytes());
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                } else {
                    b.append_data(&mut h, p, *data).unwrap();
                }
            }
            E::Sym(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Hard(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub fn compress(tar: &[u8], c: Comp) -> (Vec<u8>, &'static str) {
    match c {
        Comp::None => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            (
                e.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Comp::Zstd => {
            let mut child = Command::new(tool("zstd"))
                .args(["-q", "-c"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let data = tar.to_vec();
            let w = std::thread::spawn(move || stdin.write_all(&data).unwrap());
            let out = child.wait_with_output().unwrap();
            w.join().unwrap();
            assert!(out.status.success());
            (out.stdout, "application/vnd.oci.image.layer.v1.tar+zstd")
        }
    }
}

pub fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An OCI image layout directory written by the test.
pub struct Layout {
    pub dir: PathBuf,
    pub index: Vec<Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        }
    }

    pub fn blob(&self, b: &[u8]) -> (String, usize) {
        let d = sha(b);
        fs::write(self.dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        (d, b.len())
    }

    /// Write an image; returns its manifest descriptor.
    pub fn image(&self, layers: &[Vec<u8>], comp: Comp, arch: &str, config: Value) -> Value {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for t in layers {
            diff_ids.push(sha(t));
            let (bytes, mt) = compress(t, comp);
            let (d, n) = self.blob(&bytes);
            descs.push(json!({"mediaType": mt, "digest": d, "size": n}));
        }
        let cfg = json!({
            "architecture": arch, "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let cb = serde_json::to_vec(&cfg).unwrap();
        let (cd, cn) = self.blob(&cb);
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
            "layers": descs,
        });
        let mb = serde_json::to_vec(&m).unwrap();
        let (md, mn) = self.blob(&mb);
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
               "platform": {"architecture": arch, "os": "linux"}})
    }

    /// The image of the manifest `desc` with its config edited by `edit`
    /// (same layers); returns the new manifest descriptor.
    pub fn edit_config(&self, desc: &Value, edit: impl FnOnce(&mut Value)) -> Value {
        let mut m: Value = serde_json::from_slice(&self.read(desc["digest"].as_str().unwrap()))
            .expect("a manifest");
        let mut cfg: Value =
            serde_json::from_slice(&self.read(m["config"]["digest"].as_str().unwrap()))
                .expect("a config");
        edit(&mut cfg);
        let (cd, cn) = self.blob(&serde_json::to_vec(&cfg).unwrap());
        m["config"]["digest"] = json!(cd);
        m["config"]["size"] = json!(cn);
        let (md, mn) = self.blob(&serde_json::to_vec(&m).unwrap());
        let mut out = desc.clone();
        out["digest"] = json!(md);
        out["size"] = json!(mn);
        out
    }

    pub fn tag(&mut self, mut desc: Value, tag: &str) {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(desc);
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": self.index})).unwrap(),
        )
        .unwrap();
    }

    /// An index over `manifests` (as a blob), tagged.
    pub fn tag_index(&mut self, manifests: Vec<Value>, tag: &str) {
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let b = serde_json::to_vec(&idx).unwrap();
        let (d, n) = self.blob(&b);
        self.tag(
            json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": n}),
            tag,
        );
    }

    pub fn read(&self, digest: &str) -> Vec<u8> {
        fs::read(self.dir.join("blobs/sha256").join(&digest[7..])).unwrap()
    }
}

// ---------------------------------------------------------------- trees

/// Every entry of a tree: type, mode, owner, content or target, and which
/// entries share an inode (hard links).
pub fn describe(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    pub fn walk(
        root: &Path,
        rel: &Path,
        out: &mut Vec<String>,
        inodes: &mut HashMap<(u64, u64), String>,
    ) {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let mut line = format!(
                "{} mode={:o} owner={}:{}",
                r.display(),
                m.permissions().mode() & 0o7777,
                m.uid(),
                m.gid()
            );
            if ft.is_symlink() {
                line = format!(
                    "{} -> {}",
                    r.display(),
                    fs::read_link(&p).unwrap().display()
                );
            } else if ft.is_file() {
                line.push_str(&format!(" sha={}", sha(&fs::read(&p).unwrap())));
                if m.nlink() > 1 {
                    let first = inodes
                        .entry((m.dev(), m.ino()))
                        .or_insert_with(|| r.display().to_string());
                    line.push_str(&format!(" link-group={first}"));
                }
            } else if ft.is_dir() {
                line.push('/');
            }
            out.push(line);
            if ft.is_dir() {
                walk(root, &r, out, inodes);
            }
        }
    }
    walk(root, Path::new(""), &mut out, &mut inodes);
    out
}

pub fn assert_same_tree(ours: &Path, theirs: &Path) {
    let a = describe(ours);
    let b = describe(theirs);
    if a != b {
        let only_a: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_b: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
        panic!(
            "trees differ\nonly in berth's ({}):\n{only_a:#?}\nonly in the reference ({}):\n{only_b:#?}",
            ours.display(),
            theirs.display()
        );
    }
}

/// `umoci unpack` of `layout:tag`; returns the rootfs.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let out = run(Command::new(tool("umoci"))
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
    assert!(out.status.success(), "umoci unpack: {}", stderr(&out));
    bundle.join("rootfs")
}

pub fn berth_ok(env: &Env, args: &[&str]) -> String {
    let out = run(env.berth().args(args));
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out).trim().to_string()
}

pub fn berth_fails(env: &Env, args: &[&str]) -> String {
    let out = run(env.berth().args(args));
    assert!(
        !out.status.success(),
        "berth {args:?} should have failed: {}",
        stdout(&out)
    );
    stderr(&out)
}

// ---------------------------------------------------------------- registry

/// Debian's docker-registry on a free loopback port, storage in a temp
/// dir, its log in a file; killed when dropped.
pub struct Registry {
    _child: ChildGuard,
    pub port: u16,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        fs::create_dir_all(dir.join("data")).unwrap();
        for _attempt in 0..5 {
            let port = free_port();
            let cfg = dir.join("config.yml");
            fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    dir.join("data").display()
                ),
            )
            .unwrap();
            let log = dir.join(format!("registry-{port}.log"));
            let child = Command::new(tool("docker-registry"))
                .arg("serve")
                .arg(&cfg)
                .stdout(fs::File::create(&log).unwrap())
                .stderr(fs::File::create(dir.join(format!("registry-{port}.err"))).unwrap())
                .spawn()
                .expect("start docker-registry");
            let guard = ChildGuard(child);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(15) {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                    let mut buf = String::new();
                    let _ = std::io::Read::read_to_string(&mut s, &mut buf);
                    if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                        return Registry {
                            _child: guard,
                            port,
                            log: dir.join(format!("registry-{port}.err")),
                        };
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry did not start");
    }

    pub fn push(&self, layout: &Path, tag: &str, repo: &str, all: bool) {
        let mut cmd = Command::new(tool("skopeo"));
        cmd.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{repo}", self.port));
        let out = run(&mut cmd);
        assert!(out.status.success(), "skopeo copy: {}", stderr(&out));
    }

    /// Blob GETs the registry logged so far.
    pub fn blob_gets(&self) -> Vec<String> {
        let log = fs::read_to_string(&self.log).unwrap_or_default()
            + &fs::read_to_string(self.log.with_extension("log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .filter_map(|l| l.split("/blobs/").nth(1))
            .map(|s| s.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }
}
