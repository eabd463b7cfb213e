//! Where one gateway instance pins its XDP objects in bpffs, and what a
//! pin there is: the two attachments (bpf_link, so the programs stay
//! attached while no process holds them) and the forwarded flows' map.
//!
//! Owns paths and file operations on them only; never loads or attaches
//! anything (`super` does).
//!
//! Layout: `<base>/<netns inode>-<client>-<server>/` holding `sg_flows`
//! and `link-client-<mode>`, `link-server-<mode>` (mode `native` or
//! `generic`: a link does not say in which mode it attached). The netns
//! inode keeps two namespaces with the same interface names (the lab's, or
//! containers') apart: bpffs is one per machine.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{bpffs, XdpActive};

/// A port's attachment: which port, for the pin's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedPort {
    Client,
    Server,
}

impl PinnedPort {
    fn as_str(self) -> &'static str {
        match self {
            PinnedPort::Client => "client",
            PinnedPort::Server => "server",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    path: PathBuf,
}

/// The inode of this process's network namespace (`/proc/self/ns/net`).
pub fn netns_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")?.ino())
}

impl PinDir {
    /// This instance's directory under `base`, in the current namespace.
    pub fn for_instance(base: &Path, client: &str, server: &str) -> io::Result<PinDir> {
        let ns = netns_inode()?;
        Ok(PinDir {
            path: base.join(format!("{ns}-{client}-{server}")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the directory (and `base`) on bpffs, first mounting one at
    /// `/sys/fs/bpf` when the directory is below it and nothing is mounted
    /// there (`bpffs::ensure_on_bpffs`); an error names the path.
    pub fn create(&self) -> io::Result<()> {
        if bpffs::ensure_on_bpffs(&self.path)? {
            tracing::info!(
                mount = bpffs::STANDARD_MOUNT,
                "no bpffs was mounted: mounted one for the XDP pins"
            );
        }
        std::fs::create_dir_all(&self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", self.path.display())))
    }

    pub fn flows_map(&self) -> PathBuf {
        self.path.join("sg_flows")
    }

    pub fn link(&self, port: PinnedPort, mode: XdpActive) -> PathBuf {
        self.path
            .join(format!("link-{}-{}", port.as_str(), mode.as_str()))
    }

    /// The pinned link of `port` and the mode it was attached in, if any.
    pub fn find_link(&self, port: PinnedPort) -> Option<(PathBuf, XdpActive)> {
        [XdpActive::Native, XdpActive::Generic]
            .into_iter()
            .map(|m| (self.link(port, m), m))
            .find(|(p, _)| p.exists())
    }

    /// Remove both links' pins (the attachments end once no process holds
    /// them either).
    pub fn remove_links(&self) -> io::Result<()> {
        for port in [PinnedPort::Client, PinnedPort::Server] {
            for mode in [XdpActive::Native, XdpActive::Generic] {
                remove_if_present(&self.link(port, mode))?;
            }
        }
        Ok(())
    }

    /// Remove everything pinned here and the directory. Returns whether
    /// there was anything.
    pub fn remove_all(&self) -> io::Result<bool> {
        if !self.path.exists() {
            return Ok(false);
        }
        self.remove_links()?;
        remove_if_present(&self.flows_map())?;
        std::fs::remove_dir(&self.path)?;
        Ok(true)
    }
}

fn remove_if_present(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_namespace_the_ports_and_the_mode() {
        let d = PinDir::for_instance(Path::new("/sys/fs/bpf/synguard"), "eth0", "eth1").unwrap();
        let ns = netns_inode().unwrap();
        assert_eq!(
            d.path(),
            Path::new(&format!("/sys/fs/bpf/synguard/{ns}-eth0-eth1"))
        );
        assert_eq!(
            d.link(PinnedPort::Server, XdpActive::Generic),
            d.path().join("link-server-generic")
        );
        assert_eq!(d.flows_map(), d.path().join("sg_flows"));
    }

    #[test]
    fn removing_a_missing_directory_is_not_an_error() {
        let d = PinDir {
            path: std::env::temp_dir()
                .join(format!("synguard-no-such-pins-{}", std::process::id())),
        };
        assert!(!d.remove_all().unwrap());
        assert_eq!(d.find_link(PinnedPort::Client), None);
    }

    #[test]
    fn remove_all_takes_pins_and_the_directory() {
        // Plain files stand in for bpffs pins (unlink works the same).
        let d = PinDir {
            path: std::env::temp_dir().join(format!("synguard-pins-{}", std::process::id())),
        };
        std::fs::create_dir_all(d.path()).unwrap();
        std::fs::write(d.flows_map(), b"").unwrap();
        std::fs::write(d.link(PinnedPort::Client, XdpActive::Native), b"").unwrap();
        assert_eq!(
            d.find_link(PinnedPort::Client),
            Some((
                d.link(PinnedPort::Client, XdpActive::Native),
                XdpActive::Native
            ))
        );
        assert!(d.remove_all().unwrap());
        assert!(!d.path().exists());
    }
}
