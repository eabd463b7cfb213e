//! Whether a pin directory lies on a bpffs, and mounting one at the
//! standard `/sys/fs/bpf` when nothing is mounted there: what systemd does
//! at boot (src/shared/mount-setup.c), and iproute2 (lib/bpf_legacy.c
//! `bpf_mnt_fs`) and bpftool (tools/bpf/bpftool/common.c) do before they pin.
//! Without it a host without systemd (a container, a minimal VM, CI) would
//! run the XDP data path unpinned and lose its flows on every restart.
//!
//! Owns the filesystem-type check and that one mount; never mounts
//! anywhere else, never creates directories or pins (`pins` does).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where bpffs is mounted by convention (include/uapi/linux/bpf.h users,
/// systemd, iproute2), and the only place this module mounts one.
pub const STANDARD_MOUNT: &str = "/sys/fs/bpf";

/// `BPF_FS_MAGIC`, include/uapi/linux/magic.h: `statfs(2)`'s `f_type` of a
/// bpffs.
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// Makes sure `dir` (existing or not yet) lies on a bpffs. Returns `true`
/// when it had to mount one at [`STANDARD_MOUNT`], `false` when `dir`'s
/// nearest existing ancestor already was on bpffs.
///
/// Errors: `dir` relative or not under a bpffs and not under
/// [`STANDARD_MOUNT`] (nothing is mounted for an operator's own path), the
/// `statfs(2)` or `mount(2)` failing (EPERM without CAP_SYS_ADMIN); each
/// names the path.
pub fn ensure_on_bpffs(dir: &Path) -> io::Result<bool> {
    let existing = nearest_existing(dir)?;
    if is_bpffs(&existing)? {
        return Ok(false);
    }
    let standard = Path::new(STANDARD_MOUNT);
    // Below the standard mount point but not on bpffs: nothing is mounted
    // there (sysfs's empty directory shows). Only that gets a bpffs.
    if dir.starts_with(standard) && standard.is_dir() && !is_bpffs(standard)? {
        // In a mount namespace of its own (`ip netns exec` makes one, with a
        // fresh /sys) a bpffs would be unmounted with the namespace when the
        // process ends, and its pins with it: refuse rather than pretend.
        if in_own_mount_namespace() {
            return Err(io::Error::other(format!(
                "no bpffs at {STANDARD_MOUNT}, and this process has a mount namespace of its own \
                 (ip netns exec?), where one would end with the process: mount one in the \
                 host's (mount -t bpf bpf {STANDARD_MOUNT}) and enter only the network \
                 namespace (nsenter --net=/run/netns/NAME)"
            )));
        }
        mount_bpffs(standard)?;
        return Ok(true);
    }
    Err(io::Error::other(format!(
        "{} is not on a bpffs: mount one there (mount -t bpf bpf DIR) or pin under {STANDARD_MOUNT}",
        dir.display()
    )))
}

/// Whether this process has a mount namespace of its own: one that differs
/// from its parent's (`/proc/*/ns/mnt`). `ip netns exec` (which execs the
/// program in a namespace it just unshared) and a systemd unit with
/// `PrivateMounts=` are; `nsenter --net`, a shell and a container's own
/// processes are not. `false` when the parent's cannot be read (it may run
/// as another user), so such a start mounts as before.
fn in_own_mount_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns =
        |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map(|m| (m.dev(), m.ino()));
    let parent = std::os::unix::process::parent_id().to_string();
    matches!((ns(&parent), ns("self")), (Ok(a), Ok(b)) if a != b)
}

/// `dir` or its nearest ancestor that exists.
fn nearest_existing(dir: &Path) -> io::Result<PathBuf> {
    if !dir.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pin directory {} is not absolute", dir.display()),
        ));
    }
    let mut p = dir;
    loop {
        if p.exists() {
            return Ok(p.to_path_buf());
        }
        // An absolute path ends at "/", which exists.
        p = p.parent().unwrap_or(Path::new("/"));
    }
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Whether `p` (which exists) is on a bpffs.
pub fn is_bpffs(p: &Path) -> io::Result<bool> {
    let c = c_path(p)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `st` a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("statfs {}: {e}", p.display()),
        ));
    }
    // f_type is a signed long on most ABIs: compare its low 32 bits.
    Ok(st.f_type as u64 as u32 == BPF_FS_MAGIC)
}

/// `mount -t bpf -o mode=0700 bpf DIR`: root-only, like systemd's.
fn mount_bpffs(dir: &Path) -> io::Result<()> {
    let target = c_path(dir)?;
    // SAFETY: every pointer is a NUL-terminated C string that outlives the call.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mounting a bpffs at {}: {e}", dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_elsewhere_is_refused_by_name_and_nothing_is_mounted() {
        let dir = std::env::temp_dir().join("synguard-bpffs-test/pins");
        let e = ensure_on_bpffs(&dir).unwrap_err();
        assert!(
            e.to_string()
                .contains("synguard-bpffs-test/pins is not on a bpffs"),
            "{e}"
        );
        assert!(!dir.exists(), "the check creates nothing");
    }

    #[test]
    fn relative_paths_are_refused() {
        let e = ensure_on_bpffs(Path::new("pins")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_nearest_existing_ancestor_is_found() {
        let tmp = std::env::temp_dir();
        assert_eq!(nearest_existing(&tmp.join("no/such/dir")).unwrap(), tmp);
        assert_eq!(nearest_existing(Path::new("/")).unwrap(), Path::new("/"));
    }

    #[test]
    fn procfs_and_tmp_are_not_bpffs() {
        assert!(!is_bpffs(Path::new("/proc")).unwrap());
        assert!(!is_bpffs(&std::env::temp_dir()).unwrap());
    }
}
