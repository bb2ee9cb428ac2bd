//! A minimal driver for the ACI functions, without the CLI around them: for
//! benchmarking the library alone and for poking at images while debugging.
//!
//! ```text
//! cargo run --release -p berth-appc --example aci -- build [--compression=C] [--mtime=S] DIR OUT
//! cargo run --release -p berth-appc --example aci -- validate FILE...
//! cargo run --release -p berth-appc --example aci -- extract FILE DEST
//! ```

use std::fs::File;
use std::path::Path;
use std::process::ExitCode;

use berth_appc::aci::{self, BuildOptions, DevicePolicy, ExtractOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("aci: {msg}");
            ExitCode::from(2)
        }
    }
}

use std::error::Error;

fn run(args: &[String]) -> Result<bool, Box<dyn Error>> {
    match args.first().map(String::as_str) {
        Some("build") => {
            let mut opts = BuildOptions {
                overwrite: true,
                ..BuildOptions::default()
            };
            let mut paths = Vec::new();
            for a in &args[1..] {
                if let Some(c) = a.strip_prefix("--compression=") {
                    opts.compression = c.parse()?;
                } else if let Some(m) = a.strip_prefix("--mtime=") {
                    opts.mtime = Some(m.parse()?);
                } else {
                    paths.push(a);
                }
            }
            let [dir, out] = paths.as_slice() else {
                return Err("usage: build [--compression=C] [--mtime=S] DIR OUT".into());
            };
            let r = aci::build(Path::new(dir), Path::new(out), &opts)?;
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{} {} entries, tar {} bytes, {} {} bytes",
                r.image_id, r.entries, r.tar_size, opts.compression, r.compressed_size
            );
            Ok(true)
        }
        Some("validate") => {
            let mut ok = true;
            for f in &args[1..] {
                let r = aci::validate(File::open(f)?)?;
                for w in &r.warnings {
                    eprintln!("{f}: warning: {w}");
                }
                for p in &r.problems {
                    eprintln!("{f}: {p}");
                }
                ok &= r.is_valid();
                println!(
                    "{f}: {} {} ({} entries)",
                    r.image_id, r.compression, r.entries
                );
            }
            Ok(ok)
        }
        Some("extract") => {
            let [_, file, dest] = args else {
                return Err("usage: extract FILE DEST".into());
            };
            let opts = ExtractOptions {
                devices: DevicePolicy::Skip,
                ..ExtractOptions::default()
            };
            let r = aci::extract(File::open(file)?, Path::new(dest), &opts)?;
            println!(
                "{} {} entries, skipped {:?}",
                r.image_id, r.entries, r.skipped
            );
            Ok(true)
        }
        _ => Err("usage: aci build|validate|extract ...".into()),
    }
}
