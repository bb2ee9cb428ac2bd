//! The real `gpg` (Debian gnupg) for tests: a private GNUPGHOME per
//! instance, keys made with `--batch`, detached armored signatures. The
//! agent started for the home is killed and the home removed on drop, even
//! when the test fails. Shared by berth-fetch's and the CLI's tests
//! (`#[path]`-included).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn gpg_path() -> &'static str {
    for p in ["/usr/bin/gpg", "/bin/gpg"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("gpg is not installed; run scripts/test, which installs gnupg");
}

impl Gpg {
    pub fn new() -> Self {
        // Short paths: the agent's socket path must fit in sun_path.
        let home = tempfile::Builder::new()
            .prefix("bg")
            .tempdir_in("/tmp")
            .unwrap();
        fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    /// gpg with this home, batch mode, no passphrases; `faked` is a
    /// `--faked-system-time` value such as `20200101T000000!`.
    pub fn cmd(&self, faked: Option<&str>) -> Command {
        let mut c = Command::new(gpg_path());
        c.arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--yes", "--no-tty", "--quiet"])
            .args(["--pinentry-mode", "loopback", "--passphrase", ""]);
        if let Some(t) = faked {
            c.args(["--faked-system-time", t, "--ignore-time-conflict"]);
        }
        c
    }

    pub fn run(&self, mut c: Command) -> String {
        let out = c.output().expect("run gpg");
        assert!(
            out.status.success(),
            "{c:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The fingerprint (uppercase) of the newest key with this user ID.
    pub fn fingerprint(&self, uid: &str) -> String {
        let mut c = self.cmd(None);
        c.args(["--with-colons", "--list-keys", uid]);
        let out = self.run(c);
        out.lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).unwrap().to_owned())
            .next()
            .unwrap_or_else(|| panic!("no key for {uid}: {out}"))
    }

    /// All fingerprints of a key: primary first, then subkeys.
    pub fn fingerprints(&self, uid: &str) -> Vec<String> {
        let mut c = self.cmd(None);
        c.args(["--with-colons", "--list-keys", uid]);
        self.run(c)
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .map(|l| l.split(':').nth(9).unwrap().to_owned())
            .collect()
    }

    /// An RSA-2048 certify-only primary key with an RSA signing subkey
    /// (`gpg --gen-key PARAMFILE`).
    pub fn gen_rsa_with_subkey(&self, name: &str, email: &str) -> String {
        let params = self.home.path().join("params");
        fs::write(
            &params,
            format!(
                "%no-protection\nKey-Type: RSA\nKey-Length: 2048\nKey-Usage: cert\n\
                 Subkey-Type: RSA\nSubkey-Length: 2048\nSubkey-Usage: sign\n\
                 Name-Real: {name}\nName-Email: {email}\nExpire-Date: 0\n%commit\n"
            ),
        )
        .unwrap();
        let mut c = self.cmd(None);
        c.arg("--gen-key").arg(&params);
        self.run(c);
        self.fingerprint(email)
    }

    /// An ed25519 primary key that signs (`--quick-gen-key`), expiring
    /// after `expire` (`never`, `10d`...), made at the faked time if any.
    pub fn gen_ed25519(
        &self,
        name: &str,
        email: &str,
        expire: &str,
        faked: Option<&str>,
    ) -> String {
        let mut c = self.cmd(faked);
        c.args([
            "--quick-gen-key",
            &format!("{name} <{email}>"),
            "ed25519",
            "sign",
            expire,
        ]);
        self.run(c);
        self.fingerprint(email)
    }

    /// Adds a signing subkey (`--quick-add-key`); returns its fingerprint.
    pub fn add_signing_subkey(
        &self,
        fpr: &str,
        algo: &str,
        expire: &str,
        faked: Option<&str>,
    ) -> String {
        let mut c = self.cmd(faked);
        c.args(["--quick-add-key", fpr, algo, "sign", expire]);
        self.run(c);
        self.fingerprints(fpr).last().unwrap().clone()
    }

    pub fn set_expire(&self, fpr: &str, expire: &str, faked: Option<&str>) {
        let mut c = self.cmd(faked);
        c.args(["--quick-set-expire", fpr, expire]);
        self.run(c);
    }

    /// Imports the revocation certificate gpg made with the key.
    pub fn revoke(&self, fpr: &str) {
        let rev = self
            .home
            .path()
            .join("openpgp-revocs.d")
            .join(format!("{fpr}.rev"));
        let text = fs::read_to_string(&rev)
            .unwrap()
            .replace(":-----BEGIN", "-----BEGIN");
        let clean = self.home.path().join("rev.asc");
        fs::write(&clean, text).unwrap();
        let mut c = self.cmd(None);
        c.arg("--import").arg(&clean);
        self.run(c);
    }

    /// `gpg --armor --export KEY`.
    pub fn export(&self, fpr: &str) -> Vec<u8> {
        let mut c = self.cmd(None);
        c.args(["--armor", "--export", fpr]);
        let out = c.output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty());
        out.stdout
    }

    /// Writes the exported key to `dir/name` and returns the path.
    pub fn export_to(&self, fpr: &str, path: &Path) -> PathBuf {
        fs::write(path, self.export(fpr)).unwrap();
        path.to_owned()
    }

    /// `gpg --armor -u KEY --detach-sign -o FILE.asc FILE`; returns FILE.asc.
    pub fn sign(&self, key: &str, file: &Path, faked: Option<&str>) -> PathBuf {
        let asc = PathBuf::from(format!("{}.asc", file.display()));
        let mut c = self.cmd(faked);
        c.args(["--armor", "--local-user", key, "--detach-sign", "-o"])
            .arg(&asc)
            .arg(file);
        self.run(c);
        asc
    }
}
