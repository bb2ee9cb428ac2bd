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

use serde_json::{json, Map, Value};

fn main() -> std::process::ExitCode {
    match serde_json::to_string(&report()) {
        Ok(s) => {
            println!("{s}");
            std::process::ExitCode::SUCCESS
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
    })
}
