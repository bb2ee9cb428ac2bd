//! Downloads one URL the way `berth fetch` will, for trying the layer by
//! hand:
//!
//! ```sh
//! cargo run -p berth-fetch --example fetch -- [--insecure-options=http,tls] \
//!     [--debug] [--config DIR]... URL PARTIAL_FILE
//! ```
//!
//! `SSL_CERT_FILE`, when set, adds a CA file (as the CLI does). Prints the
//! length and the cache facts as JSON. Run it again after a Ctrl-C to see
//! the download resume.

use std::io::Read;
use std::path::PathBuf;

use berth_fetch::{AuthConfig, FetchConfig, Fetcher, Outcome, Progress};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = FetchConfig::default();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut rest = Vec::new();
    let mut debug = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if let Some(list) = arg.strip_prefix("--insecure-options=") {
            for opt in list.split(',') {
                match opt {
                    "http" => config.allow_http = true,
                    "tls" => config.skip_tls_verify = true,
                    other => return Err(format!("unknown insecure option {other:?}").into()),
                }
            }
        } else if arg == "--debug" {
            debug = true;
        } else if arg == "--config" {
            dirs.push(args.next().ok_or("--config needs a directory")?.into());
        } else {
            rest.push(arg);
        }
    }
    let [url, partial] = <[String; 2]>::try_from(rest).map_err(|_| "usage: URL PARTIAL_FILE")?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(if debug {
            tracing::Level::DEBUG
        } else {
            tracing::Level::WARN
        })
        .init();
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        config.extra_ca_files.push(file.into());
    }
    config.auth = AuthConfig::load(&dirs)?;
    let fetcher = Fetcher::new(config)?;
    match fetcher.download(&url, None, partial.as_ref())? {
        Outcome::Fresh | Outcome::NotModified(_) => println!("not modified"),
        Outcome::Body(download) => {
            let mut download = download.with_progress(Progress::stderr(url.clone()));
            let mut buf = vec![0; 64 * 1024];
            let mut total = 0u64;
            loop {
                let n = download.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            let done = download.finish()?;
            println!("{total} bytes in {}", done.path.display());
            println!("{}", serde_json::to_string(&done.cache)?);
        }
    }
    Ok(())
}
