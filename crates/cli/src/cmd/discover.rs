//! `berth image discover NAME`: what appc meta discovery finds for a name,
//! without downloading the image: the ACI and signature URLs, the public
//! key URLs, and (with `--debug`, or in JSON always) every URL tried and
//! every meta tag ignored. The name's `version` defaults to `latest` and
//! `os`/`arch` to the host's, as `berth fetch` does.

use anyhow::Context;
use berth_appc::discovery::Want;
use berth_appc::reference::ImageReference;
use berth_fetch::discover::discover;
use berth_fetch::Fetcher;
use clap::Args;

use super::Format;
use crate::globals::GlobalArgs;
use crate::Outcome;

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Shorthand for `--format=json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// An image name with optional labels: `example.com/app:1.0,arch=amd64`.
    #[arg(value_name = "NAME")]
    pub name: String,
}

pub fn run(global: &GlobalArgs, args: &DiscoverArgs) -> anyhow::Result<Outcome> {
    let reference: ImageReference = args
        .name
        .parse()
        .with_context(|| format!("invalid image name {:?}", args.name))?;
    let full = reference
        .with_host_defaults()
        .with_context(|| format!("discovering {}", args.name))?;
    let http =
        Fetcher::new(super::fetch::fetch_config(global)?).context("setting up the HTTP client")?;
    let result = discover(&http, &full, Want::ImageAndKeys);
    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&result)?),
        Format::Text => {
            if global.debug {
                eprint!("tried:\n{}", result.explain());
            }
            for e in &result.image_endpoints {
                println!("ACI: {}", e.aci_url);
                println!("ASC: {}", e.asc_url);
            }
            for k in &result.pubkeys {
                println!("Keys: {k}");
            }
        }
    }
    if result.image_endpoints.is_empty() {
        anyhow::bail!(
            "discovery found no image endpoint for {}; tried:\n{}",
            args.name,
            result.explain().trim_end()
        );
    }
    Ok(Outcome::Success)
}
