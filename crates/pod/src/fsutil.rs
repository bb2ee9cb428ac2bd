//! Small file helpers shared by stage0 and stage1.

use std::fs::File;
use std::io::Write;
use std::path::Path;

fn tmp_name(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(
        ".{}.tmp{}",
        name.unwrap_or_default(),
        std::process::id()
    ))
}

/// Replace `path` with `data`: temp file, fsync, rename, so a reader (or a
/// crash) sees the old or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_name(path);
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Like [`write_atomic`] without the fsync: for run-time facts (status,
/// pids) that lose nothing important in a power cut, written often.
pub fn write_atomic_nosync(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_name(path);
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Read a file holding one decimal number (pid, time, exit code).
pub fn read_number<T: std::str::FromStr>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write one decimal number atomically.
pub fn write_number(path: &Path, n: impl std::fmt::Display) -> std::io::Result<()> {
    write_atomic_nosync(path, format!("{n}\n").as_bytes())
}
