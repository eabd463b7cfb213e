//! Attaching the two programs and letting go of them: both ports in one
//! mode, the redirect targets (only ports that surely take XDP frames), the
//! pinned attachments an earlier process left (adopted, their programs
//! replaced atomically) or fresh ones pinned for the next, and detaching or
//! leaving the data path in place at the stop.
//!
//! Never decides about frames and never touches the per-flow maps
//! (`super::flows`).

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::XdpMode;

use super::pins::PinnedPort;
use super::*;

/// One port's attachment: in the program's own link set, or taken out of
/// it to be pinned (the pin keeps it attached; this handle only keeps the
/// fd until the process lets go).
/// How long an attach waits for released links to detach: up to
/// RELEASE_WAIT_TRIES x RELEASE_WAIT_STEP (1 s).
const RELEASE_WAIT_TRIES: u32 = 40;
const RELEASE_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(25);

pub(super) struct Attachment {
    pub(super) iface: String,
    pub(super) program: &'static str,
    pub(super) link: AttachedLink,
}

pub(super) enum AttachedLink {
    Owned(XdpLinkId),
    /// Held for its fd only: the pin keeps the attachment.
    Pinned {
        _fd: FdLink,
    },
}

impl XdpFastPath {
    /// Attach to both ports as `setting` says (not `Off`): the client port
    /// first (`auto`: native, else generic with a log line saying why),
    /// then the server port in the same mode. The redirect targets are set
    /// first. With pins: the attachments an earlier process pinned for
    /// these ports are adopted instead, their programs replaced by these
    /// atomically (BPF_LINK_UPDATE: no frame meets no program), and fresh
    /// attachments are pinned. Both or neither: on an error nothing stays
    /// attached.
    pub fn attach(
        &mut self,
        client: (&str, usize),
        server: (&str, usize),
        setting: XdpSetting,
    ) -> Result<(), XdpError> {
        if setting == XdpSetting::Off {
            return Ok(());
        }
        let ports = [
            (PORT_CLIENT, client.0, ifindex(client.0)?),
            (PORT_SERVER, server.0, ifindex(server.0)?),
        ];
        let wanted = match setting {
            XdpSetting::Native => Some(XdpActive::Native),
            XdpSetting::Generic => Some(XdpActive::Generic),
            _ => None,
        };
        if let Some(p) = self.pins.clone() {
            let adopted = match p.find_link(PinnedPort::Client) {
                Some((_, mode)) if wanted.is_none_or(|w| w == mode) => {
                    // The redirect targets before the programs switch.
                    self.enable_redirects(&ports, mode)?;
                    self.adopt_links(&p, client.0, server.0)
                }
                Some((_, mode)) => Err(XdpError::Pin(format!(
                    "they run in {} mode, io.xdp asks for {}",
                    mode.as_str(),
                    setting.as_str()
                ))),
                None => Ok(false),
            };
            match adopted {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the pinned XDP attachments cannot be adopted: attaching afresh");
                    self.drop_attachments();
                    p.remove_links().map_err(|e| XdpError::Pin(e.to_string()))?;
                }
            }
        }
        let r = self
            .attach_client(client.0, client.1, setting)
            .and_then(|()| {
                let (iface, mtu) = server;
                if self.active == XdpActive::Native {
                    if mtu > MAX_NATIVE_MTU {
                        return Err(XdpError::MtuTooLarge {
                            iface: iface.to_string(),
                            mtu,
                        });
                    }
                    self.attach_mode(SERVER_PROGRAM, iface, XdpMode::Driver, "native")
                } else {
                    self.attach_mode(SERVER_PROGRAM, iface, XdpMode::Skb, "generic")
                }
            })
            .and_then(|()| self.enable_redirects(&ports, self.active))
            .and_then(|()| self.pin_links());
        if r.is_err() {
            self.detach();
        }
        r
    }

    /// Make each port a redirect target (`sg_tx_ports`) when frames
    /// redirected to it are sure to leave: always in generic mode (the
    /// kernel sends an skb), in native mode only when its driver declares
    /// ndo_xdp_xmit (xdp_features NDO_XMIT; a veth does only while its peer
    /// runs XDP or has GRO on, drivers/net/veth.c), since a frame it cannot
    /// take is dropped without a trace. A port that is no target gets its
    /// frames through the AF_PACKET path, as with XDP off.
    pub(super) fn enable_redirects(
        &mut self,
        ports: &[(u32, &str, u32); 2],
        mode: XdpActive,
    ) -> Result<(), XdpError> {
        for &(slot, iface, index) in ports {
            let ok = match mode {
                XdpActive::Native => match features::xdp_features(index) {
                    Ok(f) if f & features::XDP_ACT_NDO_XMIT != 0 => true,
                    Ok(_) => {
                        tracing::warn!(iface, "native XDP cannot transmit on this interface (its xdp_features lack NDO_XMIT; a veth has it only while its peer runs an XDP program or has GRO on): frames toward it stay on the AF_PACKET path");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(iface, error = %e, "cannot tell whether native XDP can transmit on this interface: frames toward it stay on the AF_PACKET path");
                        false
                    }
                },
                _ => true,
            };
            if ok {
                self.tx_ports
                    .set(slot, index, None, 0)
                    .map_err(|e| XdpError::MapUpdate(e.to_string()))?;
            }
            self.redirect_targets[slot as usize] = ok;
        }
        Ok(())
    }

    /// Whether the programs redirect toward the client and the server port
    /// (indices `PORT_CLIENT`, `PORT_SERVER`).
    pub fn redirect_targets(&self) -> [bool; 2] {
        self.redirect_targets
    }

    /// Take over the pinned attachments of both ports: Ok(false) when none
    /// are pinned.
    pub(super) fn adopt_links(
        &mut self,
        p: &PinDir,
        client: &str,
        server: &str,
    ) -> Result<bool, XdpError> {
        let (c, s) = (
            p.find_link(PinnedPort::Client),
            p.find_link(PinnedPort::Server),
        );
        let ((c_path, c_mode), (s_path, _)) = match (c, s) {
            (None, None) => return Ok(false),
            (Some(c), Some(s)) if c.1 == s.1 => (c, s),
            // A crash between the two pins, or a hand-made directory.
            _ => {
                return Err(XdpError::Pin(format!(
                    "{}: the two ports' attachments do not match",
                    p.path().display()
                )))
            }
        };
        for (program, path, iface) in [(PROGRAM, c_path, client), (SERVER_PROGRAM, s_path, server)]
        {
            let pin_err =
                |e: &dyn std::fmt::Display| XdpError::Pin(format!("{}: {e}", path.display()));
            let pinned = PinnedLink::from_pin(&path).map_err(|e| pin_err(&e))?;
            let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| pin_err(&e))?;
            let prog = self.program_mut(program)?;
            // ENOLINK when the interface it was attached to is gone.
            let id = prog
                .attach_to_link(link)
                .map_err(|e| pin_err(&error_chain(&e)))?;
            self.attached.push(Attachment {
                iface: iface.to_string(),
                program,
                link: AttachedLink::Owned(id),
            });
        }
        self.active = c_mode;
        tracing::info!(pins = %p.path().display(), mode = c_mode.as_str(), "adopted the pinned XDP attachments; programs replaced");
        Ok(true)
    }

    /// Pin fresh attachments (when pinning is on), so they outlive us.
    pub(super) fn pin_links(&mut self) -> Result<(), XdpError> {
        let Some(p) = self.pins.clone() else {
            return Ok(());
        };
        let mode = self.active;
        for a in std::mem::take(&mut self.attached) {
            let id = match a.link {
                AttachedLink::Owned(id) => id,
                pinned @ AttachedLink::Pinned { .. } => {
                    self.attached.push(Attachment { link: pinned, ..a });
                    continue;
                }
            };
            let port = if a.program == PROGRAM {
                PinnedPort::Client
            } else {
                PinnedPort::Server
            };
            let path = p.link(port, mode);
            let pin_err =
                |e: &dyn std::fmt::Display| XdpError::Pin(format!("{}: {e}", path.display()));
            // Taken out of the program's set: from now on the pin (and
            // this fd) keep it attached, not the program object.
            let link = self
                .program_mut(a.program)?
                .take_link(id)
                .map_err(|e| pin_err(&e))?;
            let fd = FdLink::try_from(link).map_err(|e| pin_err(&e))?;
            let pinned = fd.pin(&path).map_err(|e| pin_err(&e))?;
            self.attached.push(Attachment {
                link: AttachedLink::Pinned {
                    _fd: FdLink::from(pinned),
                },
                ..a
            });
        }
        Ok(())
    }

    pub(super) fn attach_client(
        &mut self,
        iface: &str,
        mtu: usize,
        setting: XdpSetting,
    ) -> Result<(), XdpError> {
        let native_err = match setting {
            XdpSetting::Off => return Ok(()),
            XdpSetting::Generic => None,
            XdpSetting::Native | XdpSetting::Auto => {
                let r = if mtu > MAX_NATIVE_MTU {
                    Err(XdpError::MtuTooLarge {
                        iface: iface.to_string(),
                        mtu,
                    })
                } else {
                    self.attach_mode(PROGRAM, iface, XdpMode::Driver, "native")
                };
                match r {
                    Ok(()) => {
                        self.active = XdpActive::Native;
                        return Ok(());
                    }
                    // An interface another program holds refuses generic
                    // XDP as well: say so instead of falling back.
                    Err(e)
                        if setting == XdpSetting::Native
                            || matches!(e, XdpError::Occupied { .. }) =>
                    {
                        return Err(e)
                    }
                    Err(e) => Some(e),
                }
            }
        };
        if let Some(e) = &native_err {
            tracing::info!(iface, reason = %e, "native XDP unavailable; trying generic XDP");
        }
        self.attach_mode(PROGRAM, iface, XdpMode::Skb, "generic")?;
        self.active = XdpActive::Generic;
        Ok(())
    }

    /// Make the two ports the redirect targets (`sg_tx_ports`) without the
    /// check [`Self::attach`] makes. Tests call this without attaching.
    pub fn set_ports(&mut self, client_ifindex: u32, server_ifindex: u32) -> Result<(), XdpError> {
        for (index, ifindex) in [(PORT_CLIENT, client_ifindex), (PORT_SERVER, server_ifindex)] {
            self.tx_ports
                .set(index, ifindex, None, 0)
                .map_err(|e| XdpError::MapUpdate(e.to_string()))?;
            self.redirect_targets[index as usize] = true;
        }
        Ok(())
    }

    pub(super) fn attach_mode(
        &mut self,
        program: &'static str,
        iface: &str,
        mode: XdpMode,
        name: &'static str,
    ) -> Result<(), XdpError> {
        let prog = self.program_mut(program)?;
        // Links whose pins were just removed (here, or by `synguard
        // detach` right before this start) detach a moment later: the
        // kernel frees a bpf_link from a work queue (kernel/bpf/syscall.c
        // bpf_link_put), and until then the interface still has a program
        // (EEXIST). So EEXIST is retried for a moment before it counts.
        let mut tries = RELEASE_WAIT_TRIES;
        let link = loop {
            tries -= 1;
            match prog.attach(iface, mode) {
                Err(e) if tries > 0 && has_errno(&e, libc::EEXIST) => {
                    std::thread::sleep(RELEASE_WAIT_STEP);
                }
                r => break r,
            }
        };
        let link = link.map_err(|e| {
            if is_permission(&e) {
                XdpError::Permission(e.to_string())
            } else if has_errno(&e, libc::EBUSY) || has_errno(&e, libc::EEXIST) {
                XdpError::Occupied {
                    iface: iface.to_string(),
                    mode: name,
                    detail: error_chain(&e),
                }
            } else {
                XdpError::Unsupported {
                    iface: iface.to_string(),
                    mode: name,
                    detail: error_chain(&e),
                }
            }
        })?;
        self.attached.push(Attachment {
            iface: iface.to_string(),
            program,
            link: AttachedLink::Owned(link),
        });
        Ok(())
    }

    pub(super) fn program_mut(&mut self, name: &str) -> Result<&mut Xdp, XdpError> {
        self.ebpf
            .program_mut(name)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .ok_or(XdpError::Load(format!("no program `{name}`")))
    }

    /// Let go of our handles on the attachments (pinned ones stay).
    pub(super) fn drop_attachments(&mut self) {
        for a in std::mem::take(&mut self.attached) {
            if let AttachedLink::Owned(id) = a.link {
                if let Ok(prog) = self.program_mut(a.program) {
                    let _ = prog.detach(id);
                }
            }
        }
        self.active = XdpActive::Off;
    }

    /// Detach from the interfaces and remove the pins, if any: nothing is
    /// left in the kernel (also done on drop when nothing is pinned).
    pub fn detach(&mut self) {
        if let Some(p) = &self.pins {
            if let Err(e) = p.remove_all() {
                tracing::warn!(pins = %p.path().display(), error = %e, "removing the XDP pins failed");
            }
        }
        let ifaces: Vec<String> = self.attached.iter().map(|a| a.iface.clone()).collect();
        self.drop_attachments();
        for iface in ifaces {
            tracing::info!(iface, "XDP program detached: no data path is left in place");
        }
    }

    /// The process stops: with pins, leave the data path in place (the
    /// programs keep forwarding the published flows until the next
    /// `synguard run` adopts them, or `synguard detach`); without, detach.
    pub fn stop(&mut self) {
        match &self.pins {
            Some(p) if !self.attached.is_empty() => {
                tracing::info!(
                    pins = %p.path().display(),
                    forwarded_flows = self.forwarded.len(),
                    "XDP data path left in place: established flows keep being forwarded by the kernel until the next `synguard run` on these interfaces adopts them, or `synguard detach` removes them"
                );
                // Closing our fds: the pins keep the attachments.
                self.attached.clear();
                self.active = XdpActive::Off;
            }
            _ => self.detach(),
        }
    }
}

pub(super) fn ifindex(iface: &str) -> Result<u32, XdpError> {
    let name = std::ffi::CString::new(iface).map_err(|e| XdpError::Load(e.to_string()))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(XdpError::Unsupported {
            iface: iface.to_string(),
            mode: "any",
            detail: std::io::Error::last_os_error().to_string(),
        }),
        i => Ok(i),
    }
}
