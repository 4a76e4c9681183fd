//! The disk under the journal: its usage, read every second and reported
//! to the node (`Input::Disk`), which holds producers back (or refuses
//! their sends) above `--max-disk-usage` and lets them go on below it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use halyard_core::node::{DiskUsage, Input};
use tokio::sync::mpsc;
use tracing::warn;

/// How often the disk is read: a second of appends is what may land above
/// the limit before producers are held back.
pub const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The usage of the filesystem holding `path`, as `df` reports it: used
/// blocks against used plus those available to unprivileged users (space
/// a filesystem reserves for root counts neither way).
pub fn usage(path: &Path) -> std::io::Result<DiskUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `s` is written by the call
    // before it is read (only on success).
    let rc = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `s`.
    let s = unsafe { s.assume_init() };
    // The field types differ between platforms (casts are no-ops on some).
    #[allow(clippy::unnecessary_cast)]
    let (frag, blocks, free, avail) = (
        s.f_frsize as u64,
        s.f_blocks as u64,
        s.f_bfree as u64,
        s.f_bavail as u64,
    );
    let used = blocks.saturating_sub(free).saturating_mul(frag);
    let available = avail.saturating_mul(frag);
    Ok(DiskUsage {
        used_bytes: used,
        total_bytes: used.saturating_add(available),
    })
}

/// Reads the disk holding `dir` every [`DISK_CHECK_EVERY`] and reports it
/// to the node until the node's input channel closes. A failed read is
/// logged (once until reads work again) and reported as nothing.
pub fn spawn_disk_watch(dir: PathBuf, inputs: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match usage(&dir) {
                Ok(u) => {
                    failing = false;
                    if inputs.send(Input::Disk(u)).await.is_err() {
                        return;
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    warn!(dir = %dir.display(), error = %e, "cannot read the disk's usage");
                }
                Err(_) => {}
            }
            tokio::time::sleep(DISK_CHECK_EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_filesystem_and_names_a_missing_path() {
        let u = usage(Path::new("/")).unwrap();
        assert!(u.total_bytes > 0 && u.used_bytes <= u.total_bytes, "{u:?}");
        let e = usage(Path::new("/no/such/halyard/dir")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
