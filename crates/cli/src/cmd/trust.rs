//! `berth trust`: decide which OpenPGP keys may sign images of which names.
//!
//! `berth trust --prefix=example.com/app [KEYFILE|URL...]` adds keys to the
//! local configuration's `trustedkeys/prefix.d/` (see
//! `berth_fetch::trust::keystore` for the layout and matching rules).
//! Without a key argument the keys come from the prefix's
//! `ac-discovery-pubkeys` meta tag. Every key's fingerprint and user IDs are
//! shown and a person must answer `yes` on a terminal: a key is trusted
//! because somebody compared its fingerprint with one obtained another way,
//! never merely because a server offered it. Scripts that did that
//! comparison pass `--skip-fingerprint-review`; without it berth refuses
//! when stdin is not a terminal rather than trusting silently.
//!
//! Answering `no` leaves the key untrusted and exits 1.
//!
//! `--root` trusts a key for every name (rkt's `root.d`), with a warning.
//! berth adds `trust list` and `trust rm` (rkt had neither): `rm` deletes a
//! local key, and revokes a vendor key with an empty local file.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};
use berth_appc::discovery::Want;
use berth_appc::reference::ImageReference;
use berth_appc::AcIdentifier;
use berth_fetch::discover::{discover, fetch_keys};
use berth_fetch::trust::{KeyStatus, Keystore, PublicKey, Scope};
use berth_fetch::Fetcher;
use clap::{Args, Subcommand};
use serde_json::json;

use super::Format;
use crate::globals::{GlobalArgs, Insecure};
use crate::Outcome;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TrustCmd {
    #[command(subcommand)]
    pub sub: Option<TrustSub>,
    #[command(flatten)]
    pub add: AddArgs,
}

#[derive(Debug, Subcommand)]
pub enum TrustSub {
    /// List trusted keys: prefix, fingerprint, user IDs, source directory, revoked.
    List(ListArgs),
    /// Stop trusting a key: remove it from the local configuration, or
    /// revoke a vendor key with an empty local file.
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Trust the keys for this image name prefix and every name below it
    /// (by path segments: example.com/app covers example.com/app/x, not
    /// example.com/apps).
    #[arg(long, value_name = "PREFIX", conflicts_with = "root")]
    pub prefix: Option<String>,
    /// Trust the keys for every image name.
    #[arg(long)]
    pub root: bool,
    /// Do not ask to confirm each key's fingerprint (for scripts that have
    /// checked it another way).
    #[arg(long)]
    pub skip_fingerprint_review: bool,
    /// ASCII-armored public key files or https:// URLs; without any, the
    /// keys are found by appc discovery of the prefix.
    #[arg(value_name = "KEYFILE|URL")]
    pub keys: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The key's fingerprint (hex; spaces allowed).
    #[arg(required = true, value_name = "FINGERPRINT")]
    pub fingerprints: Vec<String>,
}

pub fn keystore(global: &GlobalArgs) -> Keystore {
    Keystore::new(&global.system_config, &global.local_config)
}

pub fn run(global: &GlobalArgs, cmd: TrustCmd) -> anyhow::Result<Outcome> {
    match cmd.sub {
        Some(TrustSub::List(args)) => list(global, &args),
        Some(TrustSub::Rm(args)) => rm(global, &args),
        None => add(global, &cmd.add),
    }
}

/// Spaced fingerprint, as gpg prints it: `8B86 DE38 ... 8182 0190`.
fn spaced(fp: &str) -> String {
    let groups: Vec<String> = fp
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let half = groups.len() / 2;
    format!("{}  {}", groups[..half].join(" "), groups[half..].join(" "))
}

fn add(global: &GlobalArgs, args: &AddArgs) -> anyhow::Result<Outcome> {
    let scope = match (&args.prefix, args.root) {
        (Some(p), false) => Scope::Prefix(
            AcIdentifier::try_from(p.as_str())
                .map_err(|e| anyhow::anyhow!("invalid prefix {p:?}: {e}"))?,
        ),
        (None, true) => Scope::Root,
        _ => bail!("say which names to trust the keys for: --prefix=PREFIX or --root"),
    };
    if args.root && args.keys.is_empty() {
        bail!("--root needs a key file or URL (discovery finds keys for a prefix only)");
    }
    let insecure = global.insecure_options;
    let mut config = super::fetch::fetch_config(global)?;
    // Keys over plain HTTP are refused unless pubkey (or http) checks are off.
    config.allow_http = insecure.allows(Insecure::Http) || insecure.allows(Insecure::Pubkey);
    let http = Fetcher::new(config).context("setting up the HTTP client")?;

    // (where the key came from, the key)
    let mut found: Vec<(String, PublicKey)> = Vec::new();
    if args.keys.is_empty() {
        let Scope::Prefix(prefix) = &scope else {
            unreachable!()
        };
        let reference = ImageReference::from_name(prefix.clone());
        let result = discover(&http, &reference, Want::Keys);
        if result.pubkeys.is_empty() {
            bail!(
                "discovery found no public keys for {prefix}; tried:\n{}",
                result.explain().trim_end()
            );
        }
        for url in &result.pubkeys {
            for key in fetch_keys(&http, url)? {
                found.push((url.clone(), key));
            }
        }
    } else {
        for arg in &args.keys {
            let keys = if arg.starts_with("https://") || arg.starts_with("http://") {
                fetch_keys(&http, arg)?
            } else {
                let bytes =
                    std::fs::read(arg).with_context(|| format!("reading key file {arg}"))?;
                PublicKey::parse_armored(&bytes)
                    .with_context(|| format!("reading key file {arg}"))?
            };
            for key in keys {
                found.push((arg.clone(), key));
            }
        }
    }

    let store = keystore(global);
    let now = std::time::SystemTime::now();
    let mut declined = false;
    for (origin, key) in found {
        let status = key.status(now);
        if status != KeyStatus::Valid {
            bail!(
                "key {} from {origin} is {status}; it cannot sign images, so it is not trusted",
                key.describe()
            );
        }
        if scope == Scope::Root {
            eprintln!(
                "berth: warning: trusting key {} for every image name (root); prefer --prefix",
                key.fingerprint_upper()
            );
        }
        if !args.skip_fingerprint_review && !review(&scope, &origin, &key)? {
            eprintln!("berth: not trusting key {}", key.fingerprint_upper());
            declined = true;
            continue;
        }
        let path = store
            .add(&scope, &key)
            .with_context(|| format!("trusting key {}", key.fingerprint_upper()))?;
        match &scope {
            Scope::Root => println!("Added root key {} at {}", key.describe(), path.display()),
            Scope::Prefix(p) => println!(
                "Added key {} for prefix {p} at {}",
                key.describe(),
                path.display()
            ),
        }
    }
    // Answering "no" is not a failure of berth, but the key is not trusted.
    Ok(if declined {
        Outcome::Negative
    } else {
        Outcome::Success
    })
}

/// Shows the key and asks; refuses when nobody can answer.
fn review(scope: &Scope, origin: &str, key: &PublicKey) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to trust key {} from {origin} without a review: stdin is not a \
             terminal (compare the fingerprint with one from its owner, then pass \
             --skip-fingerprint-review)",
            key.fingerprint_upper()
        );
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "Prefix: {scope}")?;
    writeln!(err, "Key: {origin}")?;
    writeln!(
        err,
        "GPG key fingerprint is: {}",
        spaced(&key.fingerprint_upper())
    )?;
    for uid in key.user_ids() {
        writeln!(err, "\t{uid}")?;
    }
    loop {
        write!(err, "Are you sure you want to trust this key (yes/no)? ")?;
        err.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(false);
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" => return Ok(true),
            "no" | "n" => return Ok(false),
            _ => writeln!(err, "Please answer yes or no.")?,
        }
    }
}

fn list(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<Outcome> {
    let listing = keystore(global).list().context("listing trusted keys")?;
    let now = std::time::SystemTime::now();
    let rows: Vec<serde_json::Value> = listing
        .keys
        .iter()
        .map(|k| {
            let prefix = match &k.scope {
                Scope::Root => None,
                Scope::Prefix(p) => Some(p.to_string()),
            };
            json!({
                "prefix": prefix,
                "root": k.scope == Scope::Root,
                "fingerprint": k.key.fingerprint_upper(),
                "user_ids": k.key.user_ids(),
                "source": k.source.as_str(),
                "path": k.path,
                "revoked": listing.is_revoked(k),
                "status": k.key.status(now).to_string(),
            })
        })
        .collect();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Text => {
            println!("PREFIX\tFINGERPRINT\tSOURCE\tREVOKED\tSTATUS\tUSER IDS");
            for (k, row) in listing.keys.iter().zip(&rows) {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.scope,
                    k.key.fingerprint_upper(),
                    k.source.as_str(),
                    if listing.is_revoked(k) { "yes" } else { "no" },
                    row["status"].as_str().unwrap_or_default(),
                    k.key.user_ids().join(", ")
                );
            }
        }
    }
    Ok(Outcome::Success)
}

fn rm(global: &GlobalArgs, args: &RmArgs) -> anyhow::Result<Outcome> {
    let store = keystore(global);
    for fp in &args.fingerprints {
        let clean: String = fp.chars().filter(|c| !c.is_whitespace()).collect();
        let (removed, marked) = store
            .remove(&clean)
            .with_context(|| format!("removing trusted key {fp}"))?;
        for p in removed {
            println!("Removed {}", show(&p));
        }
        for p in marked {
            println!("Revoked vendor key with empty file {}", show(&p));
        }
    }
    Ok(Outcome::Success)
}

fn show(p: &Path) -> String {
    p.display().to_string()
}
