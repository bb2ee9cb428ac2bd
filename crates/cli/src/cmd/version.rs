//! `berth version`: what this binary is and what it can do.

use clap::Args;
use serde_json::json;

use super::Format;
use crate::Outcome;

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Compiled-in capabilities, `+` for present; later issues extend the list.
const FEATURES: &[(&str, bool)] = &[
    ("aci-gzip", true),
    ("aci-bzip2", true),
    ("aci-xz", true),
    ("aci-zstd", true),
    ("parallel-gzip", true),
];

pub fn run(args: &VersionArgs) -> anyhow::Result<Outcome> {
    let version = env!("CARGO_PKG_VERSION");
    let appc = berth_appc::APPC_SPEC_VERSION;
    let arch = std::env::consts::ARCH;
    let os = std::env::consts::OS;
    match args.format {
        Format::Text => {
            let features: Vec<String> = FEATURES
                .iter()
                .map(|(n, on)| format!("{}{n}", if *on { '+' } else { '-' }))
                .collect();
            println!("berth Version: {version}");
            println!("appc Version: {appc}");
            println!("OS/Arch: {os}/{arch}");
            println!("Features: {}", features.join(" "));
        }
        Format::Json => {
            let features: serde_json::Map<String, serde_json::Value> = FEATURES
                .iter()
                .map(|(n, on)| (n.to_string(), json!(on)))
                .collect();
            let doc = json!({
                "berth": version,
                "appc": appc,
                "os": os,
                "arch": arch,
                "features": features,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(Outcome::Success)
}
