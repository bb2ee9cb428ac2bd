//! # berth-probe: eyes inside a test pod
//!
//! berth's end-to-end tests do not trust the runtime's own account of what it
//! set up; they run this binary inside the pod and read what it reports. It is
//! built statically (glibc `+crt-static`, see `tests/probe/build.sh`) so it
//! runs in any rootfs, even an empty one.
//!
//! With no arguments it prints one JSON object on stdout: its arguments,
//! environment, ids, working directory and hostname. Later checks (mounts,
//! capabilities, cgroups, network, listen fds) add fields, never change them.
//!
//! Options (they also appear in `args`): `--exit N` exits with N after the
//! report; `--sleep-ms N` sleeps before exiting.

use serde_json::{json, Map, Value};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1)?.parse().ok()
    };
    match serde_json::to_string(&report()) {
        Ok(s) => {
            println!("{s}");
            if let Some(ms) = opt("--sleep-ms") {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            std::process::ExitCode::from(opt("--exit").unwrap_or(0) as u8)
        }
        Err(e) => {
            eprintln!("berth-probe: cannot encode the report: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn report() -> Value {
    let env: Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                Value::String(v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cwd = std::env::current_dir()
        .map(|p| Value::String(p.to_string_lossy().into_owned()))
        .unwrap_or(Value::Null);
    let uname = rustix::system::uname();
    let hostname = uname.nodename().to_string_lossy().into_owned();
    let groups: Vec<u32> = rustix::process::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    json!({
        "args": args,
        "env": env,
        "pid": std::process::id(),
        "ppid": rustix::process::getppid().map(|p| p.as_raw_nonzero().get()),
        "uid": rustix::process::getuid().as_raw(),
        "gid": rustix::process::getgid().as_raw(),
        "euid": rustix::process::geteuid().as_raw(),
        "egid": rustix::process::getegid().as_raw(),
        "groups": groups,
        "cwd": cwd,
        "hostname": hostname,
        "stdin_tty": rustix::termios::isatty(rustix::stdio::stdin()),
        "mountpoints": mountpoints(),
    })
}

/// Mount points as this process sees them (field 5 of mountinfo).
fn mountpoints() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .collect()
}
