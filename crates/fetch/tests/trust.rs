//! The keystore and the signature verifier against real gpg keys and
//! signatures: prefix trust by path segments, root trust, local revocation
//! of vendor keys, RSA signing subkeys, ed25519, tampered images, untrusted
//! signers, revoked and expired keys, and the store refusing a bad image.

mod common;
#[path = "common/gpg.rs"]
mod gpg;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_appc::aci::{self, BuildOptions};
use berth_appc::AcIdentifier;
use berth_fetch::trust::{
    Keys, Keystore, PublicKey, Scope, SignatureError, SignatureVerifier, Source,
};
use berth_store::{ImportOptions, Store};
use gpg::Gpg;

fn id(s: &str) -> AcIdentifier {
    AcIdentifier::try_from(s).unwrap()
}

/// A small valid ACI named `name` with version `version`.
pub fn make_aci(dir: &Path, name: &str, version: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{}", name.replace('/', "_")));
    fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    fs::write(
        layout.join("rootfs/etc/hello"),
        format!("{name} {version}\n"),
    )
    .unwrap();
    fs::write(
        layout.join("manifest"),
        format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}",
               "labels":[{{"name":"version","value":"{version}"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}]}}"#
        ),
    )
    .unwrap();
    let out = dir.join(format!("{}-{version}.aci", name.replace('/', "_")));
    aci::build(
        &layout,
        &out,
        &BuildOptions {
            overwrite: true,
            ..BuildOptions::default()
        },
    )
    .unwrap();
    out
}

fn verify(
    file: &Path,
    asc: &Path,
    name: &str,
    keys: Keys,
    now: Option<SystemTime>,
) -> Result<berth_fetch::trust::Verified, SignatureError> {
    let sig = fs::read(asc).unwrap();
    let mut v = SignatureVerifier::new(
        name,
        Some(&id(name)),
        &sig,
        &asc.display().to_string(),
        keys,
    )?;
    if let Some(t) = now {
        v = v.with_time(t);
    }
    v.verify_reader(fs::File::open(file).unwrap(), &id(name))
        .unwrap()
}

fn store_keys(tmp: &Path) -> Keystore {
    Keystore::new(tmp.join("sys"), tmp.join("local"))
}

#[test]
fn prefix_trust_follows_path_segments_and_root_covers_all() {
    let g = Gpg::new();
    let fpr = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let key = PublicKey::parse_one(&g.export(&fpr)).unwrap();
    assert_eq!(key.fingerprint_upper(), fpr);
    assert_eq!(key.user_ids(), vec!["Alice <alice@example.com>".to_owned()]);
    let tmp = tempfile::tempdir().unwrap();
    let ks = store_keys(tmp.path());

    let path = ks.add(&Scope::Prefix(id("example.com/ap")), &key).unwrap();
    assert_eq!(
        path,
        tmp.path()
            .join("local/trustedkeys/prefix.d/example.com/ap")
            .join(fpr.to_lowercase())
    );
    assert!(
        ks.keyring_for(&id("example.com/app"))
            .unwrap()
            .keys
            .is_empty(),
        "example.com/ap must not trust example.com/app"
    );
    assert_eq!(
        ks.keyring_for(&id("example.com/ap/x")).unwrap().keys.len(),
        1
    );

    ks.add(&Scope::Prefix(id("example.com")), &key).unwrap();
    let ring = ks.keyring_for(&id("example.com/app/sub")).unwrap();
    assert_eq!(ring.keys.len(), 1);
    assert_eq!(ring.keys[0].scope, Scope::Prefix(id("example.com")));
    assert!(ks
        .keyring_for(&id("example.org/app"))
        .unwrap()
        .keys
        .is_empty());

    ks.add(&Scope::Root, &key).unwrap();
    assert_eq!(
        ks.keyring_for(&id("example.org/app")).unwrap().keys.len(),
        1
    );

    let listing = ks.list().unwrap();
    assert_eq!(listing.keys.len(), 3);
    // No temp files left behind by the atomic writes.
    for e in walk(&tmp.path().join("local")) {
        assert!(
            !e.file_name().unwrap().to_string_lossy().starts_with('.'),
            "{e:?}"
        );
    }

    let (removed, marked) = ks.remove(&fpr).unwrap();
    assert_eq!(removed.len(), 3);
    assert!(marked.is_empty());
    assert!(ks.list().unwrap().keys.is_empty());
    assert!(ks.remove(&fpr).is_err());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn empty_local_file_revokes_a_vendor_key_and_rm_writes_one() {
    let g = Gpg::new();
    let fpr = g.gen_ed25519("Vendor", "vendor@example.com", "never", None);
    let tmp = tempfile::tempdir().unwrap();
    let ks = store_keys(tmp.path());
    let vendor_dir = tmp.path().join("sys/trustedkeys/prefix.d/example.com");
    fs::create_dir_all(&vendor_dir).unwrap();
    fs::write(vendor_dir.join(fpr.to_lowercase()), g.export(&fpr)).unwrap();
    let ring = ks.keyring_for(&id("example.com/app")).unwrap();
    assert_eq!(ring.keys.len(), 1);
    assert_eq!(ring.keys[0].source, Source::System);

    // `berth trust rm` of a vendor key writes the local revocation marker.
    let (removed, marked) = ks.remove(&fpr).unwrap();
    assert!(removed.is_empty());
    assert_eq!(
        marked,
        vec![tmp
            .path()
            .join("local/trustedkeys/prefix.d/example.com")
            .join(fpr.to_lowercase())]
    );
    assert_eq!(fs::metadata(&marked[0]).unwrap().len(), 0);
    let ring = ks.keyring_for(&id("example.com/app")).unwrap();
    assert!(ring.keys.is_empty());
    assert_eq!(ring.revoked.len(), 1);
    let listing = ks.list().unwrap();
    assert!(listing.is_revoked(&listing.keys[0]));

    // A signature by the revoked vendor key says so.
    let file = tmp.path().join("blob");
    fs::write(&file, b"data").unwrap();
    let asc = g.sign(&fpr, &file, None);
    let err = verify(&file, &asc, "example.com/app", Keys::Store(ks), None).unwrap_err();
    assert!(
        matches!(err, SignatureError::RevokedLocally { .. }),
        "{err}"
    );
}

#[test]
fn a_file_named_for_another_key_is_refused() {
    let g = Gpg::new();
    let a = g.gen_ed25519("A", "a@example.com", "never", None);
    let b = g.gen_ed25519("B", "b@example.com", "never", None);
    let tmp = tempfile::tempdir().unwrap();
    let ks = store_keys(tmp.path());
    let dir = tmp.path().join("local/trustedkeys/root.d");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(a.to_lowercase()), g.export(&b)).unwrap();
    let err = ks.keyring_for(&id("example.com/x")).unwrap_err();
    assert!(
        err.to_string().contains("not the one its name says"),
        "{err}"
    );
}

#[test]
fn rsa_signing_subkey_verifies_and_tampering_is_caught() {
    let g = Gpg::new();
    let fpr = g.gen_rsa_with_subkey("Alice", "alice@example.com");
    let fprs = g.fingerprints(&fpr);
    assert_eq!(fprs.len(), 2);
    let tmp = tempfile::tempdir().unwrap();
    let aci = make_aci(tmp.path(), "example.com/app", "1.0");
    let asc = g.sign(&fpr, &aci, None);
    let ks = store_keys(tmp.path());
    ks.add(
        &Scope::Prefix(id("example.com/app")),
        &PublicKey::parse_one(&g.export(&fpr)).unwrap(),
    )
    .unwrap();
    let ok = verify(&aci, &asc, "example.com/app", Keys::Store(ks.clone()), None).unwrap();
    assert_eq!(ok.signer, fprs[1], "made by the signing subkey");
    assert_eq!(ok.key.fingerprint_upper(), fpr);
    assert!(ok.to_string().contains("Alice <alice@example.com>"), "{ok}");

    // One flipped byte in the middle of the image.
    let mut bytes = fs::read(&aci).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let tampered = tmp.path().join("tampered.aci");
    fs::write(&tampered, &bytes).unwrap();
    let err = verify(&tampered, &asc, "example.com/app", Keys::Store(ks), None).unwrap_err();
    assert!(matches!(err, SignatureError::Tampered { .. }), "{err}");
    assert!(
        err.to_string().contains("modified after it was signed"),
        "{err}"
    );
}

#[test]
fn untrusted_signer_gets_the_actionable_message() {
    let g = Gpg::new();
    let alice = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let mallory = g.gen_ed25519("Mallory", "mallory@example.org", "never", None);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("img.aci");
    fs::write(&file, b"pretend image").unwrap();
    let asc = g.sign(&alice, &file, None);
    let ks = store_keys(tmp.path());
    // Nothing trusted: the signer is named by fingerprint.
    let err = verify(
        &file,
        &asc,
        "example.com/app",
        Keys::Store(ks.clone()),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "signature of example.com/app is made by key {alice}, which is not trusted for \
             prefix example.com/app; run \"berth trust --prefix=example.com/app\""
        )
    );
    // Alice trusted for another prefix, Mallory for this one: the message
    // names Alice with her user ID.
    ks.add(
        &Scope::Prefix(id("example.org")),
        &PublicKey::parse_one(&g.export(&alice)).unwrap(),
    )
    .unwrap();
    ks.add(
        &Scope::Prefix(id("example.com/app")),
        &PublicKey::parse_one(&g.export(&mallory)).unwrap(),
    )
    .unwrap();
    let err = verify(&file, &asc, "example.com/app", Keys::Store(ks), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "signature of example.com/app is made by key {alice} (Alice <alice@example.com>), \
             which is not trusted for prefix example.com/app; run \"berth trust --prefix=example.com/app\""
        )
    );
}

#[test]
fn revoked_key_is_refused() {
    let g = Gpg::new();
    let fpr = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("img.aci");
    fs::write(&file, b"pretend image").unwrap();
    let asc = g.sign(&fpr, &file, None);
    g.revoke(&fpr);
    let key = PublicKey::parse_one(&g.export(&fpr)).unwrap();
    assert!(key
        .status(SystemTime::now())
        .to_string()
        .starts_with("revoked"));
    let ks = store_keys(tmp.path());
    ks.add(&Scope::Root, &key).unwrap();
    let err = verify(&file, &asc, "example.com/app", Keys::Store(ks), None).unwrap_err();
    assert!(matches!(err, SignatureError::Revoked { .. }), "{err}");
}

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

// 2020-01-01, 2020-01-05, 2020-01-20 (UTC)
const T_2020_01_01: u64 = 1_577_836_800;
const DAY: u64 = 86_400;

#[test]
fn expired_key_and_signature_after_expiry_are_refused() {
    let g = Gpg::new();
    let fpr = g.gen_ed25519("Old", "old@example.com", "10d", Some("20200101T000000!"));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("img.aci");
    fs::write(&file, b"pretend image").unwrap();
    let asc = g.sign(&fpr, &file, Some("20200105T000000!"));
    let key = PublicKey::parse_one(&g.export(&fpr)).unwrap();
    assert!(matches!(
        key.status(SystemTime::now()),
        berth_fetch::trust::KeyStatus::Expired { .. }
    ));
    let ks = store_keys(tmp.path());
    ks.add(&Scope::Root, &key).unwrap();
    // While the key was valid, the signature was good...
    verify(
        &file,
        &asc,
        "example.com/app",
        Keys::Store(ks.clone()),
        Some(at(T_2020_01_01 + 6 * DAY)),
    )
    .unwrap();
    // ...and now the key has expired.
    let err = verify(
        &file,
        &asc,
        "example.com/app",
        Keys::Store(ks.clone()),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, SignatureError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired on 2020-01-11"), "{err}");

    // A key whose expiry came before the signature was made.
    let g2 = Gpg::new();
    let p = g2.gen_ed25519("Sub", "sub@example.com", "never", Some("20200101T000000!"));
    // gpg never signs with an expired key: sign first (on the 20th), then
    // give the key a newer self-signature (dated the 8th) that ends its life
    // on the 10th.
    let asc2 = g2.sign(&p, &file, Some("20200120T000000!"));
    g2.set_expire(&p, "2020-01-10", Some("20200108T000000!"));
    let ks2 = store_keys(&tmp.path().join("2"));
    ks2.add(&Scope::Root, &PublicKey::parse_one(&g2.export(&p)).unwrap())
        .unwrap();
    let err = verify(
        &file,
        &asc2,
        "example.com/app",
        Keys::Store(ks2),
        Some(at(T_2020_01_01 + 5 * DAY)),
    )
    .unwrap_err();
    assert!(
        matches!(err, SignatureError::SignedAfterExpiry { .. }),
        "{err}"
    );
}

#[test]
fn malformed_signature_and_wrong_name() {
    let g = Gpg::new();
    let fpr = g.gen_ed25519("Alice", "alice@example.com", "never", None);
    let tmp = tempfile::tempdir().unwrap();
    let ks = store_keys(tmp.path());
    ks.add(
        &Scope::Root,
        &PublicKey::parse_one(&g.export(&fpr)).unwrap(),
    )
    .unwrap();
    let err = SignatureVerifier::new(
        "example.com/app",
        Some(&id("example.com/app")),
        b"garbage",
        "x.asc",
        Keys::Store(ks.clone()),
    )
    .unwrap_err();
    assert!(matches!(err, SignatureError::Malformed { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("bad signature for example.com/app at x.asc: "),
        "{err}"
    );

    let file = tmp.path().join("img");
    fs::write(&file, b"x").unwrap();
    let asc = g.sign(&fpr, &file, None);
    let sig = fs::read(&asc).unwrap();
    let v = SignatureVerifier::new(
        "example.com/app",
        Some(&id("example.com/app")),
        &sig,
        "x.asc",
        Keys::Store(ks),
    )
    .unwrap();
    let err = v
        .verify_reader(&b"x"[..], &id("example.com/other"))
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, SignatureError::WrongName { .. }), "{err}");
}

#[test]
fn store_import_verifies_while_streaming_and_hides_refused_images() {
    let g = Gpg::new();
    let fpr = g.gen_rsa_with_subkey("Alice", "alice@example.com");
    let tmp = tempfile::tempdir().unwrap();
    let aci = make_aci(tmp.path(), "example.com/app", "1.0");
    let asc = g.sign(&fpr, &aci, None);
    let ks = store_keys(tmp.path());
    ks.add(
        &Scope::Prefix(id("example.com")),
        &PublicKey::parse_one(&g.export(&fpr)).unwrap(),
    )
    .unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let sig = fs::read(&asc).unwrap();

    // Tampered: refused, nothing visible.
    let mut bytes = fs::read(&aci).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // gzip trailer: the image may still read, the signature may not
    let mut v = SignatureVerifier::new(
        "example.com/app:1.0",
        Some(&id("example.com/app")),
        &sig,
        "a.asc",
        Keys::Store(ks.clone()),
    )
    .unwrap();
    let r = store.import_aci(
        &bytes[..],
        ImportOptions {
            verifier: Some(&mut v),
            ..ImportOptions::default()
        },
    );
    assert!(r.is_err());
    assert!(store.list().unwrap().is_empty());

    let mut v = SignatureVerifier::new(
        "example.com/app:1.0",
        Some(&id("example.com/app")),
        &sig,
        "a.asc",
        Keys::Store(ks),
    )
    .unwrap();
    let report = store
        .import_aci(
            fs::File::open(&aci).unwrap(),
            ImportOptions {
                verifier: Some(&mut v),
                ..ImportOptions::default()
            },
        )
        .unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(report.name.as_str(), "example.com/app");
}

#[test]
fn expired_signing_subkey_is_refused_but_the_primary_still_counts() {
    let g = Gpg::new();
    let primary = g.gen_ed25519("Sub", "sub@example.com", "never", Some("20200101T000000!"));
    let sub = g.add_signing_subkey(&primary, "ed25519", "10d", Some("20200101T000000!"));
    assert_ne!(sub, primary);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("img");
    fs::write(&file, b"pretend image").unwrap();
    // `KEY!` makes gpg use exactly that (sub)key.
    let asc = g.sign(&format!("{sub}!"), &file, Some("20200105T000000!"));
    let ks = store_keys(tmp.path());
    ks.add(
        &Scope::Root,
        &PublicKey::parse_one(&g.export(&primary)).unwrap(),
    )
    .unwrap();
    let ok = verify(
        &file,
        &asc,
        "example.com/app",
        Keys::Store(ks.clone()),
        Some(at(T_2020_01_01 + 6 * DAY)),
    )
    .unwrap();
    assert_eq!(ok.signer, sub);
    let err = verify(
        &file,
        &asc,
        "example.com/app",
        Keys::Store(ks.clone()),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, SignatureError::Expired { .. }), "{err}");
    // The primary key (no expiry) still signs.
    let asc = g.sign(&format!("{primary}!"), &file, None);
    let ok = verify(&file, &asc, "example.com/app", Keys::Store(ks), None).unwrap();
    assert_eq!(ok.signer, primary);
}
