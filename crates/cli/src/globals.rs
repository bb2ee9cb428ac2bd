//! The flags every berth command shares, and the command tree.
//!
//! Global flags may stand before or after the subcommand (`berth --debug image
//! validate x` and `berth image validate --debug x` mean the same), as rkt
//! users expect.

use clap::{Args, Parser, Subcommand};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::cmd::fetch::FetchArgs;
use crate::cmd::image::ImageCmd;
use crate::cmd::pods;
use crate::cmd::run::{PrepareArgs, RunArgs, RunPreparedArgs};
use crate::cmd::trust::TrustCmd;
use crate::cmd::version::VersionArgs;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "berth: a daemonless, pod-native container runtime for appc and OCI images",
    long_about = "berth runs pods of containers directly under the process that started it \
                  (your shell or a systemd unit), with no daemon in between. It implements the \
                  App Container (appc 0.8.11) specification and runs Docker/OCI images.",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Data directory: the image store, pods and locks live here.
    #[arg(
        long,
        global = true,
        env = "BERTH_DIR",
        default_value = "/var/lib/berth",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// Explain on stderr what berth does, and print whole error chains.
    #[arg(long, global = true)]
    pub debug: bool,

    /// Security checks to switch off, comma separated: none, image (signature
    /// verification), tls, http, pubkey, capabilities, paths, seccomp; or the
    /// groups all-fetch (image,tls,http,pubkey), all-run
    /// (capabilities,paths,seccomp) and all.
    #[arg(
        long,
        global = true,
        value_name = "LIST",
        default_value = "none",
        env = "BERTH_INSECURE_OPTIONS"
    )]
    pub insecure_options: InsecureOptions,

    /// Vendor configuration directory (trusted keys, networks, credentials
    /// shipped with the system).
    #[arg(
        long,
        global = true,
        default_value = "/usr/lib/berth",
        value_name = "DIR"
    )]
    pub system_config: PathBuf,

    /// Local configuration directory; overrides the system one. `berth trust`
    /// writes here.
    #[arg(long, global = true, default_value = "/etc/berth", value_name = "DIR")]
    pub local_config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pod of one or more apps in the foreground: `berth run [pod flags]
    /// IMAGE [app flags] [-- ARGS... ---] [IMAGE ...]`.
    Run(RunArgs),
    /// Fetch, render and prepare a pod without starting it; prints its UUID.
    Prepare(PrepareArgs),
    /// Start a prepared pod (once) in the foreground.
    RunPrepared(RunPreparedArgs),
    /// List pods.
    List(pods::ListArgs),
    /// Show a pod's state, PIDs, times and per-app exit codes.
    Status(pods::StatusArgs),
    /// Stop running pods gracefully (or --force).
    Stop(pods::StopArgs),
    /// Show (or follow) the output of a pod's apps.
    Logs(pods::LogsArgs),
    /// Run a command inside a running pod's app.
    Enter(pods::EnterArgs),
    /// Remove exited or prepared pods now.
    Rm(pods::RmArgs),
    /// Mark exited pods as garbage and delete them after a grace period.
    Gc(pods::GcArgs),
    /// Print a pod's manifest.
    CatManifest(pods::CatManifestArgs),
    /// Export an exited pod's app rootfs as a new ACI.
    Export(pods::ExportArgs),
    /// Build, validate and inspect images.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Download or import images into the store and print their IDs.
    Fetch(FetchArgs),
    /// Trust OpenPGP keys to sign images of a name prefix (or every name),
    /// list trusted keys, remove them.
    Trust(TrustCmd),
    /// Print berth's version, the appc spec version and the compiled-in features.
    Version(VersionArgs),
}

/// One security check that `--insecure-options` can switch off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insecure {
    Image,
    Tls,
    Http,
    Pubkey,
    Capabilities,
    Paths,
    Seccomp,
}

impl Insecure {
    const ALL: [Insecure; 7] = [
        Insecure::Image,
        Insecure::Tls,
        Insecure::Http,
        Insecure::Pubkey,
        Insecure::Capabilities,
        Insecure::Paths,
        Insecure::Seccomp,
    ];

    fn name(self) -> &'static str {
        match self {
            Insecure::Image => "image",
            Insecure::Tls => "tls",
            Insecure::Http => "http",
            Insecure::Pubkey => "pubkey",
            Insecure::Capabilities => "capabilities",
            Insecure::Paths => "paths",
            Insecure::Seccomp => "seccomp",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The set of switched-off checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsecureOptions(u8);

impl InsecureOptions {
    pub fn allows(self, check: Insecure) -> bool {
        self.0 & check.bit() != 0
    }
}

impl FromStr for InsecureOptions {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use Insecure::*;
        let mut set = 0u8;
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let add: &[Insecure] = match word {
                "none" | "ondisk" => &[],
                "image" => &[Image],
                "tls" => &[Tls],
                "http" => &[Http],
                "pubkey" => &[Pubkey],
                "capabilities" => &[Capabilities],
                "paths" => &[Paths],
                "seccomp" => &[Seccomp],
                "all-fetch" => &[Image, Tls, Http, Pubkey],
                "all-run" => &[Capabilities, Paths, Seccomp],
                "all" => &Insecure::ALL,
                other => {
                    return Err(format!(
                        "unknown insecure option {other:?} (known: none, image, tls, http, \
                         pubkey, capabilities, paths, seccomp, all-fetch, all-run, all)"
                    ))
                }
            };
            for check in add {
                set |= check.bit();
            }
        }
        Ok(InsecureOptions(set))
    }
}

impl fmt::Display for InsecureOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Insecure::ALL
            .iter()
            .filter(|c| self.allows(**c))
            .map(|c| c.name())
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_options_parse_groups_and_names() {
        let o: InsecureOptions = "image,http".parse().unwrap();
        assert!(o.allows(Insecure::Image) && o.allows(Insecure::Http));
        assert!(!o.allows(Insecure::Tls));
        assert_eq!(o.to_string(), "image,http");
        let all: InsecureOptions = "all".parse().unwrap();
        assert_eq!(
            all.to_string(),
            "image,tls,http,pubkey,capabilities,paths,seccomp"
        );
        let fetch: InsecureOptions = "all-fetch".parse().unwrap();
        assert_eq!(fetch.to_string(), "image,tls,http,pubkey");
        assert_eq!(
            "none".parse::<InsecureOptions>().unwrap().to_string(),
            "none"
        );
        let err = "imgae".parse::<InsecureOptions>().unwrap_err();
        assert!(err.contains("\"imgae\""), "{err}");
    }
}
