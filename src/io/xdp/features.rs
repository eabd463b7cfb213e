//! Asks the kernel which XDP features a network interface's driver declares
//! (`dev->xdp_features`), through the generic netlink family "netdev"
//! (Linux 6.3+, Documentation/netlink/specs/netdev.yaml, served by
//! net/core/netdev-genl.c).
//!
//! Owns: resolving the family id through the generic netlink controller
//! (CTRL_CMD_GETFAMILY), building the NETDEV_CMD_DEV_GET request, reading the
//! NETDEV_A_DEV_XDP_FEATURES bitmask out of the reply, and the one short-lived
//! netlink socket a query uses. Building and parsing are plain functions on
//! byte buffers, apart from the socket, so they are tested without a kernel.
//!
//! Never attaches, loads or changes anything, never subscribes to the
//! family's notifications and never leaves the caller's network namespace:
//! it only asks, and the answer describes the driver, not whether a program
//! is attached.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{
    parse_u16, parse_u32, parse_u64, DecodeError, DefaultNla, Emitable, ErrorContext,
    NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable, Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized,
    NLM_F_REQUEST,
};
use netlink_packet_generic::constants::{CTRL_ATTR_FAMILY_ID, CTRL_CMD_NEWFAMILY};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

/// Bits of enum netdev_xdp_act (include/uapi/linux/netdev.h): the driver
/// runs XDP programs natively and supports XDP_PASS, XDP_DROP, XDP_ABORTED
/// and XDP_TX.
pub const XDP_ACT_BASIC: u64 = 1;
/// enum netdev_xdp_act: the driver supports XDP_REDIRECT out of its
/// receive path.
pub const XDP_ACT_REDIRECT: u64 = 2;
/// enum netdev_xdp_act: the device implements ndo_xdp_xmit, i.e. frames
/// may be redirected *to* it (the target of a devmap redirect).
pub const XDP_ACT_NDO_XMIT: u64 = 4;

/// The family's registered name and version (net/core/netdev-genl-gen.c,
/// generated from Documentation/netlink/specs/netdev.yaml).
const NETDEV_FAMILY_NAME: &str = "netdev";
const NETDEV_FAMILY_VERSION: u8 = 1;
/// enum netdev_cmd and enum netdev_a_dev (include/uapi/linux/netdev.h).
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;

/// Message types below this are netlink's own (NLMSG_NOOP .. NLMSG_OVERRUN
/// and reserved; include/uapi/linux/netlink.h NLMSG_MIN_TYPE): a family id
/// there cannot be right.
const NLMSG_MIN_TYPE: u16 = 0x10;

/// One socket per query, so fixed sequence numbers suffice to tell the two
/// replies apart.
const SEQ_FAMILY: u32 = 1;
const SEQ_DEV_GET: u32 = 2;

/// Both replies are small (the controller's for "netdev" lists a few ops
/// and multicast groups; DEV_GET's is a handful of attributes), but the
/// kernel may size a reply up to NLMSG_GOODSIZE (a page, at most 8 KiB).
const RECV_BUF: usize = 32 * 1024;
/// The kernel answers generic netlink `do` requests from within sendmsg
/// (net/netlink/genetlink.c), so a reply is queued before send returns; the
/// timeout only keeps a broken kernel or socket from hanging the caller.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Datagrams read per request before giving up on finding its reply.
const MAX_DATAGRAMS: usize = 16;

const OP_FAMILY: &str = "looking up the generic netlink family \"netdev\"";
const OP_DEV_GET: &str = "NETDEV_CMD_DEV_GET";

/// Why the XDP features could not be read; each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    /// The controller does not know the family "netdev" (ENOENT from
    /// CTRL_CMD_GETFAMILY, net/netlink/genetlink.c ctrl_getfamily): the
    /// kernel predates Linux 6.3, which added net/core/netdev-genl.c.
    #[error("the kernel has no generic netlink family \"netdev\" (Linux 6.3 or later reports XDP features)")]
    Unsupported,
    /// ENODEV from NETDEV_CMD_DEV_GET (net/core/netdev-genl.c
    /// netdev_nl_dev_get_doit): no device has this ifindex in the caller's
    /// network namespace.
    #[error("no interface with ifindex {0} in this network namespace")]
    NoSuchInterface(u32),
    /// Any other error the kernel answered with (for example ERANGE for
    /// ifindex 0: the family's policy wants at least 1,
    /// net/core/netdev-genl-gen.c, checked in lib/nlattr.c).
    #[error("{op}: the kernel answered: {}", errno_text(.errno))]
    Kernel { op: &'static str, errno: i32 },
    /// Opening, configuring, sending on or receiving from the netlink socket
    /// failed.
    #[error("netlink socket ({op}): {err}")]
    Socket { op: &'static str, err: io::Error },
    /// No reply within [`REPLY_TIMEOUT`] (or none among the datagrams read).
    #[error("{op}: no reply from the kernel within {} ms", REPLY_TIMEOUT.as_millis())]
    NoReply { op: &'static str },
    /// The reply could not be parsed, or did not say what the family's spec
    /// promises (a missing NETDEV_A_DEV_XDP_FEATURES, another ifindex).
    #[error("{op}: malformed reply: {detail}")]
    Malformed { op: &'static str, detail: String },
}

fn errno_text(errno: &i32) -> io::Error {
    io::Error::from_raw_os_error(*errno)
}

fn malformed(op: &'static str, detail: impl std::fmt::Display) -> FeaturesError {
    FeaturesError::Malformed {
        op,
        detail: detail.to_string(),
    }
}

/// The interface's xdp_features bitmask (NETDEV_A_DEV_XDP_FEATURES) in the caller's network namespace.
///
/// `ifindex` is the interface index (as from `if_nametoindex`), looked up in
/// the network namespace of the calling thread. The result is a bitmask of
/// enum netdev_xdp_act (include/uapi/linux/netdev.h): [`XDP_ACT_BASIC`],
/// [`XDP_ACT_REDIRECT`], [`XDP_ACT_NDO_XMIT`] and higher bits this crate does
/// not name (XSK_ZEROCOPY 8, HW_OFFLOAD 16, RX_SG 32, NDO_XMIT_SG 64, and any
/// a later kernel adds). It is what the driver declares in
/// `dev->xdp_features` (set with xdp_set_features_flag(), net/core/xdp.c;
/// reported by netdev_nl_dev_fill(), net/core/netdev-genl.c). 0 means no
/// native XDP support; generic (skb) XDP works on any interface regardless.
/// The value may change while the interface exists: veth, for one, updates
/// it as its peer's configuration changes (drivers/net/veth.c).
///
/// Opens one NETLINK_GENERIC socket, sends two requests (the family lookup,
/// then NETDEV_CMD_DEV_GET) and waits at most 1 s for each reply. Needs no
/// privilege: the command is not marked GENL_ADMIN_PERM.
///
/// # Errors
///
/// [`FeaturesError::Unsupported`] on kernels before 6.3 (no "netdev"
/// family); [`FeaturesError::NoSuchInterface`] when no interface has this
/// index; [`FeaturesError::Kernel`] for any other errno the kernel answers
/// (ERANGE for ifindex 0); [`FeaturesError::Socket`] and
/// [`FeaturesError::NoReply`] for socket failures;
/// [`FeaturesError::Malformed`] for a reply that does not parse.
pub fn xdp_features(ifindex: u32) -> Result<u64, FeaturesError> {
    let socket = open_socket()?;
    let family = transact(&socket, &family_request(), OP_FAMILY, parse_family_reply)?;
    transact(
        &socket,
        &dev_get_request(family, ifindex),
        OP_DEV_GET,
        |datagram| parse_dev_get_reply(datagram, family, ifindex),
    )
}

// ---------------------------------------------------------------------------
// The "netdev" family's messages (only what DEV_GET needs).

/// One attribute of a netdev "dev" message. Only the two this module reads
/// or writes get their own variant; everything else the kernel adds
/// (NETDEV_A_DEV_PAD, XDP_ZC_MAX_SEGS, XDP_RX_METADATA_FEATURES,
/// XSK_FEATURES, later ones) is kept as raw bytes and ignored, so a newer
/// kernel's reply still parses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DevAttr {
    Ifindex(u32),
    XdpFeatures(u64),
    Other(DefaultNla),
}

impl Nla for DevAttr {
    fn value_len(&self) -> usize {
        match self {
            DevAttr::Ifindex(_) => 4,
            DevAttr::XdpFeatures(_) => 8,
            DevAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DevAttr::Ifindex(_) => NETDEV_A_DEV_IFINDEX,
            DevAttr::XdpFeatures(_) => NETDEV_A_DEV_XDP_FEATURES,
            DevAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        // Netlink integers are in host byte order; the blanket Emitable impl
        // hands us a slice of exactly value_len() bytes.
        match self {
            DevAttr::Ifindex(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            DevAttr::XdpFeatures(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            DevAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for DevAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            NETDEV_A_DEV_IFINDEX => {
                DevAttr::Ifindex(parse_u32(value).context("invalid NETDEV_A_DEV_IFINDEX")?)
            }
            // nla_put_u64_64bit(): 8 bytes, possibly after a PAD attribute
            // on architectures that need aligned u64s.
            NETDEV_A_DEV_XDP_FEATURES => {
                DevAttr::XdpFeatures(parse_u64(value).context("invalid NETDEV_A_DEV_XDP_FEATURES")?)
            }
            _ => DevAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// A netdev family message: the generic netlink command and its
/// attributes. The family id is dynamic, so it is resolved at run time and
/// set on the [`GenlMessage`] (`family_id()` stays 0).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NetdevMessage {
    cmd: u8,
    attrs: Vec<DevAttr>,
}

impl GenlFamily for NetdevMessage {
    fn family_name() -> &'static str {
        NETDEV_FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        NETDEV_FAMILY_VERSION
    }
}

impl Emitable for NetdevMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for NetdevMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| DevAttr::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()
            .context("invalid netdev attributes")?;
        Ok(NetdevMessage {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// The controller's reply to CTRL_CMD_GETFAMILY, reduced to the one
/// attribute this module needs. The request is built with the crate's
/// [`GenlCtrl`], but the reply is not parsed with it: GenlCtrl rejects the
/// whole message on any attribute it does not know (a newer kernel may add
/// some), and its CTRL_ATTR_POLICY parsing slices a short value without a
/// length check (netlink-packet-generic 0.5 / netlink-packet-core 0.9 panic
/// there). Here every attribute goes through the checked [`NlasIterator`]
/// and only CTRL_ATTR_FAMILY_ID is read.
#[derive(Debug)]
struct FamilyReply {
    cmd: u8,
    id: Option<u16>,
}

impl ParseableParametrized<[u8], GenlHeader> for FamilyReply {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let mut id = None;
        for nla in NlasIterator::new(buf) {
            let nla = nla.context("invalid controller attributes")?;
            if nla.kind() == CTRL_ATTR_FAMILY_ID {
                id = Some(parse_u16(nla.value()).context("invalid CTRL_ATTR_FAMILY_ID")?);
            }
        }
        Ok(FamilyReply {
            cmd: header.cmd,
            id,
        })
    }
}

// ---------------------------------------------------------------------------
// Building requests and reading replies: bytes in, bytes out, no I/O.

/// A complete request datagram: netlink header (NLM_F_REQUEST, no ACK: a
/// `do` command answers with its reply or with an NLMSG_ERROR, never both)
/// around the generic netlink message.
fn request<F>(genl: GenlMessage<F>, seq: u32) -> Vec<u8>
where
    GenlMessage<F>: NetlinkSerializable,
{
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// CTRL_CMD_GETFAMILY for "netdev", to nlctrl (GENL_ID_CTRL).
fn family_request() -> Vec<u8> {
    let ctrl = GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(NETDEV_FAMILY_NAME.to_owned())],
    };
    request(GenlMessage::from_payload(ctrl), SEQ_FAMILY)
}

/// NETDEV_CMD_DEV_GET for one ifindex, to the resolved family id.
fn dev_get_request(family: u16, ifindex: u32) -> Vec<u8> {
    let mut genl = GenlMessage::from_payload(NetdevMessage {
        cmd: NETDEV_CMD_DEV_GET,
        attrs: vec![DevAttr::Ifindex(ifindex)],
    });
    genl.set_resolved_family_id(family);
    request(genl, SEQ_DEV_GET)
}

/// The reply to request `seq` in one received datagram, if it holds one.
/// Messages for other sequence numbers are skipped unparsed; an NLMSG_ERROR
/// for `seq` becomes [`FeaturesError::Kernel`] (callers map the errnos they
/// expect to their own variants).
fn reply_in<I>(
    datagram: &[u8],
    seq: u32,
    op: &'static str,
) -> Result<Option<(NetlinkHeader, I)>, FeaturesError>
where
    I: NetlinkDeserializable,
{
    let mut rest = datagram;
    while !rest.is_empty() {
        // new_checked() refuses a length field below the 16-byte header or
        // beyond the datagram, so `this` is one whole message.
        let buf = NetlinkBuffer::new_checked(rest).map_err(|e| malformed(op, e))?;
        let len = buf.length() as usize;
        let this = rest
            .get(..len)
            .ok_or_else(|| malformed(op, "message longer than the datagram"))?;
        // Messages in one datagram are NLMSG_ALIGNTO (4) aligned; the last
        // one's padding may be missing.
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        if buf.sequence_number() != seq {
            continue;
        }
        let msg = NetlinkMessage::<I>::deserialize(this).map_err(|e| malformed(op, e))?;
        let (header, payload) = msg.into_parts();
        return match payload {
            NetlinkPayload::InnerMessage(inner) => Ok(Some((header, inner))),
            NetlinkPayload::Error(e) => match e.code {
                // Negative errno (net/netlink/af_netlink.c netlink_ack).
                Some(code) => Err(FeaturesError::Kernel {
                    op,
                    errno: code.get().saturating_neg(),
                }),
                None => Err(malformed(op, "an acknowledgement instead of the reply")),
            },
            NetlinkPayload::Done(_) => Err(malformed(op, "end of dump instead of the reply")),
            NetlinkPayload::Overrun(_) => Err(malformed(op, "overrun")),
            // Noop and anything a later version adds: not the reply.
            _ => continue,
        };
    }
    Ok(None)
}

/// The "netdev" family id from the controller's reply to
/// [`family_request`]; ENOENT means the family does not exist.
fn parse_family_reply(datagram: &[u8]) -> Result<Option<u16>, FeaturesError> {
    let reply = match reply_in::<GenlMessage<FamilyReply>>(datagram, SEQ_FAMILY, OP_FAMILY) {
        Ok(Some((_, reply))) => reply.payload,
        Ok(None) => return Ok(None),
        Err(FeaturesError::Kernel { errno, .. }) if errno == libc::ENOENT => {
            return Err(FeaturesError::Unsupported)
        }
        Err(e) => return Err(e),
    };
    // ctrl_getfamily() answers with the family's description as a
    // CTRL_CMD_NEWFAMILY message (net/netlink/genetlink.c).
    if reply.cmd != CTRL_CMD_NEWFAMILY {
        return Err(malformed(
            OP_FAMILY,
            format!(
                "controller command {} instead of CTRL_CMD_NEWFAMILY",
                reply.cmd
            ),
        ));
    }
    let id = reply
        .id
        .ok_or_else(|| malformed(OP_FAMILY, "no CTRL_ATTR_FAMILY_ID"))?;
    if id < NLMSG_MIN_TYPE {
        return Err(malformed(OP_FAMILY, format!("family id {id} is reserved")));
    }
    Ok(Some(id))
}

/// NETDEV_A_DEV_XDP_FEATURES from the reply to [`dev_get_request`];
/// ENODEV means no such interface.
fn parse_dev_get_reply(
    datagram: &[u8],
    family: u16,
    ifindex: u32,
) -> Result<Option<u64>, FeaturesError> {
    let (header, reply) =
        match reply_in::<GenlMessage<NetdevMessage>>(datagram, SEQ_DEV_GET, OP_DEV_GET) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(FeaturesError::Kernel { errno, .. }) if errno == libc::ENODEV => {
                return Err(FeaturesError::NoSuchInterface(ifindex))
            }
            Err(e) => return Err(e),
        };
    if header.message_type != family {
        return Err(malformed(
            OP_DEV_GET,
            format!(
                "message type {} is not the family id {family}",
                header.message_type
            ),
        ));
    }
    // netdev_nl_dev_get_doit() answers with the request's command
    // (genlmsg_iput(), net/core/netdev-genl.c); notifications carry others.
    if reply.payload.cmd != NETDEV_CMD_DEV_GET {
        return Err(malformed(
            OP_DEV_GET,
            format!(
                "command {} instead of NETDEV_CMD_DEV_GET",
                reply.payload.cmd
            ),
        ));
    }
    let mut features = None;
    for attr in &reply.payload.attrs {
        match attr {
            // The kernel fills in the device it found; anything else would
            // mean the answer is about another interface.
            DevAttr::Ifindex(i) if *i != ifindex => {
                return Err(malformed(
                    OP_DEV_GET,
                    format!("reply is for ifindex {i}, not {ifindex}"),
                ))
            }
            DevAttr::XdpFeatures(f) => features = Some(*f),
            _ => {}
        }
    }
    features
        .map(Some)
        .ok_or_else(|| malformed(OP_DEV_GET, "no NETDEV_A_DEV_XDP_FEATURES"))
}

// ---------------------------------------------------------------------------
// The socket.

fn socket_error(op: &'static str) -> impl FnOnce(io::Error) -> FeaturesError {
    move |err| FeaturesError::Socket { op, err }
}

/// A NETLINK_GENERIC socket in the calling thread's network namespace,
/// bound to a kernel-chosen port, with a receive timeout.
fn open_socket() -> Result<Socket, FeaturesError> {
    let mut socket = Socket::new(NETLINK_GENERIC).map_err(socket_error("open"))?;
    socket.bind_auto().map_err(socket_error("bind"))?;
    let timeout = libc::timeval {
        tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: REPLY_TIMEOUT.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads one timeval of the given size from a valid
    // pointer; the fd is the socket's own and open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(socket_error("SO_RCVTIMEO")(io::Error::last_os_error()));
    }
    Ok(socket)
}

/// Send `request` to the kernel and read datagrams until `parse` finds the
/// reply (or an error) in one.
fn transact<T>(
    socket: &Socket,
    request: &[u8],
    op: &'static str,
    parse: impl Fn(&[u8]) -> Result<Option<T>, FeaturesError>,
) -> Result<T, FeaturesError> {
    let kernel = SocketAddr::new(0, 0);
    socket
        .send_to(request, &kernel, 0)
        .map_err(socket_error(op))?;
    let mut buf = Vec::with_capacity(RECV_BUF);
    for _ in 0..MAX_DATAGRAMS {
        buf.clear();
        // MSG_TRUNC makes netlink return the datagram's full length even
        // when it did not fit (net/netlink/af_netlink.c netlink_recvmsg).
        let (len, from) = match socket.recv_from(&mut buf, libc::MSG_TRUNC) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(FeaturesError::NoReply { op })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(socket_error(op)(e)),
        };
        if len > buf.len() {
            return Err(malformed(
                op,
                format!("{len}-byte datagram does not fit {} bytes", buf.len()),
            ));
        }
        // Only the kernel (port 0) answers; another process may send to
        // our port, and is ignored.
        if from.port_number() != 0 {
            continue;
        }
        if let Some(value) = parse(&buf)? {
            return Ok(value);
        }
    }
    Err(FeaturesError::NoReply { op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::ErrorMessage;
    use std::num::NonZeroI32;

    const FAMILY: u16 = 0x1b;

    /// A datagram holding one message built by the same emit code as the
    /// requests: header fields as the kernel would set them.
    /// finalize() takes the message type from the payload: NLMSG_ERROR for
    /// an error, the (resolved) family id for a generic netlink reply.
    fn datagram<I: NetlinkSerializable>(seq: u32, payload: NetlinkPayload<I>) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, payload);
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    fn dev_reply(seq: u32, attrs: Vec<DevAttr>) -> Vec<u8> {
        let mut genl = GenlMessage::from_payload(NetdevMessage {
            cmd: NETDEV_CMD_DEV_GET,
            attrs,
        });
        genl.set_resolved_family_id(FAMILY);
        datagram(seq, NetlinkPayload::InnerMessage(genl))
    }

    fn family_reply(seq: u32, nlas: Vec<GenlCtrlAttrs>) -> Vec<u8> {
        let ctrl = GenlCtrl {
            cmd: GenlCtrlCmd::NewFamily,
            nlas,
        };
        datagram(
            seq,
            NetlinkPayload::InnerMessage(GenlMessage::from_payload(ctrl)),
        )
    }

    /// An NLMSG_ERROR as netlink_ack() sends it: negative errno, then the
    /// request's header echoed.
    fn error_reply(seq: u32, errno: i32, request: &[u8]) -> Vec<u8> {
        let mut err = ErrorMessage::default();
        err.code = NonZeroI32::new(-errno);
        err.header = request[..16].to_vec();
        datagram::<GenlMessage<NetdevMessage>>(seq, NetlinkPayload::Error(err))
    }

    fn dev_features() -> Vec<DevAttr> {
        vec![
            DevAttr::Ifindex(7),
            DevAttr::XdpFeatures(XDP_ACT_BASIC | XDP_ACT_REDIRECT | XDP_ACT_NDO_XMIT | 32),
            // NETDEV_A_DEV_XDP_RX_METADATA_FEATURES: unknown here, skipped.
            DevAttr::Other(DefaultNla::new(5, 3u64.to_ne_bytes().to_vec())),
        ]
    }

    #[test]
    fn family_request_asks_nlctrl_for_netdev() {
        let bytes = family_request();
        let msg = NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(&bytes).expect("parses");
        assert_eq!(
            msg.header.message_type,
            netlink_packet_generic::constants::GENL_ID_CTRL
        );
        assert_eq!(msg.header.flags, NLM_F_REQUEST);
        assert_eq!(msg.header.sequence_number, SEQ_FAMILY);
        assert_eq!(msg.header.length as usize, bytes.len());
        let NetlinkPayload::InnerMessage(genl) = msg.payload else {
            panic!("not a generic netlink message");
        };
        assert_eq!(genl.payload.cmd, GenlCtrlCmd::GetFamily);
        assert_eq!(
            genl.payload.nlas,
            vec![GenlCtrlAttrs::FamilyName("netdev".into())]
        );
    }

    #[test]
    fn dev_get_request_wire_layout() {
        let bytes = dev_get_request(FAMILY, 0x0102_0304);
        let ifindex = 0x0102_0304u32.to_ne_bytes();
        let mut want = Vec::new();
        want.extend_from_slice(&28u32.to_ne_bytes()); // nlmsg_len
        want.extend_from_slice(&FAMILY.to_ne_bytes()); // nlmsg_type
        want.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes()); // nlmsg_flags
        want.extend_from_slice(&SEQ_DEV_GET.to_ne_bytes()); // nlmsg_seq
        want.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
        want.extend_from_slice(&[NETDEV_CMD_DEV_GET, NETDEV_FAMILY_VERSION, 0, 0]); // genlmsghdr
        want.extend_from_slice(&8u16.to_ne_bytes()); // nla_len
        want.extend_from_slice(&NETDEV_A_DEV_IFINDEX.to_ne_bytes()); // nla_type
        want.extend_from_slice(&ifindex);
        assert_eq!(bytes, want);
    }

    #[test]
    fn family_reply_gives_the_id() {
        let reply = family_reply(
            SEQ_FAMILY,
            vec![
                GenlCtrlAttrs::FamilyName("netdev".into()),
                GenlCtrlAttrs::FamilyId(FAMILY),
                GenlCtrlAttrs::Version(1),
                GenlCtrlAttrs::HdrSize(0),
                GenlCtrlAttrs::MaxAttr(6),
            ],
        );
        assert_eq!(parse_family_reply(&reply).expect("parses"), Some(FAMILY));
    }

    /// What a kernel sends besides the id (nested ops and multicast
    /// groups), plus an attribute no kernel sends today and a
    /// CTRL_ATTR_POLICY too short to hold a nested attribute: all skipped.
    #[test]
    fn family_reply_skips_other_attributes() {
        use netlink_packet_generic::ctrl::nlas::{McastGrpAttrs, OpAttrs};
        let mut reply = family_reply(
            SEQ_FAMILY,
            vec![
                GenlCtrlAttrs::FamilyId(FAMILY),
                GenlCtrlAttrs::FamilyName("netdev".into()),
                GenlCtrlAttrs::Ops(vec![vec![OpAttrs::Id(1), OpAttrs::Flags(0x0c)]]),
                GenlCtrlAttrs::McastGroups(vec![vec![
                    McastGrpAttrs::Id(5),
                    McastGrpAttrs::Name("mgmt".into()),
                ]]),
            ],
        );
        for (kind, value) in [(99u16, vec![0u8; 4]), (8, vec![0u8; 2])] {
            let nla = DefaultNla::new(kind, value);
            let mut extra = vec![0; nla.buffer_len()];
            nla.emit(&mut extra);
            reply.extend_from_slice(&extra);
        }
        let len = reply.len() as u32;
        reply[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse_family_reply(&reply).expect("parses"), Some(FAMILY));
    }

    #[test]
    fn family_reply_must_be_newfamily() {
        let ctrl = GenlCtrl {
            cmd: GenlCtrlCmd::DelFamily,
            nlas: vec![GenlCtrlAttrs::FamilyId(FAMILY)],
        };
        let reply = datagram(
            SEQ_FAMILY,
            NetlinkPayload::InnerMessage(GenlMessage::from_payload(ctrl)),
        );
        assert!(matches!(
            parse_family_reply(&reply),
            Err(FeaturesError::Malformed { .. })
        ));
    }

    #[test]
    fn family_reply_without_a_usable_id_is_malformed() {
        let none = family_reply(SEQ_FAMILY, vec![GenlCtrlAttrs::FamilyName("netdev".into())]);
        assert!(matches!(
            parse_family_reply(&none),
            Err(FeaturesError::Malformed { .. })
        ));
        let reserved = family_reply(SEQ_FAMILY, vec![GenlCtrlAttrs::FamilyId(2)]);
        assert!(matches!(
            parse_family_reply(&reserved),
            Err(FeaturesError::Malformed { .. })
        ));
    }

    #[test]
    fn family_enoent_means_unsupported() {
        let reply = error_reply(SEQ_FAMILY, libc::ENOENT, &family_request());
        assert!(matches!(
            parse_family_reply(&reply),
            Err(FeaturesError::Unsupported)
        ));
        // Any other errno from the controller is reported as it is.
        let reply = error_reply(SEQ_FAMILY, libc::EPERM, &family_request());
        assert!(matches!(
            parse_family_reply(&reply),
            Err(FeaturesError::Kernel { errno, .. }) if errno == libc::EPERM
        ));
    }

    #[test]
    fn dev_get_reply_gives_the_bitmask() {
        let reply = dev_reply(SEQ_DEV_GET, dev_features());
        let features = parse_dev_get_reply(&reply, FAMILY, 7)
            .expect("parses")
            .expect("holds the reply");
        assert_eq!(
            features,
            XDP_ACT_BASIC | XDP_ACT_REDIRECT | XDP_ACT_NDO_XMIT | 32
        );
        assert_ne!(features & XDP_ACT_NDO_XMIT, 0);
    }

    #[test]
    fn dev_get_reply_tolerates_pad_before_the_u64() {
        // nla_put_u64_64bit() inserts an empty NETDEV_A_DEV_PAD (2) where
        // the u64 would be misaligned.
        let reply = dev_reply(
            SEQ_DEV_GET,
            vec![
                DevAttr::Ifindex(7),
                DevAttr::Other(DefaultNla::new(2, Vec::new())),
                DevAttr::XdpFeatures(0),
            ],
        );
        assert_eq!(
            parse_dev_get_reply(&reply, FAMILY, 7).expect("parses"),
            Some(0)
        );
    }

    #[test]
    fn dev_get_enodev_means_no_such_interface() {
        let request = dev_get_request(FAMILY, 99);
        let reply = error_reply(SEQ_DEV_GET, libc::ENODEV, &request);
        assert!(matches!(
            parse_dev_get_reply(&reply, FAMILY, 99),
            Err(FeaturesError::NoSuchInterface(99))
        ));
        let reply = error_reply(SEQ_DEV_GET, libc::EINVAL, &request);
        let err = parse_dev_get_reply(&reply, FAMILY, 99).expect_err("an error");
        assert!(matches!(err, FeaturesError::Kernel { errno, .. } if errno == libc::EINVAL));
        assert_eq!(
            err.to_string(),
            format!(
                "NETDEV_CMD_DEV_GET: the kernel answered: {}",
                io::Error::from_raw_os_error(libc::EINVAL)
            )
        );
    }

    #[test]
    fn dev_get_reply_must_match_the_request() {
        let reply = dev_reply(SEQ_DEV_GET, dev_features());
        // Another ifindex than asked for.
        assert!(matches!(
            parse_dev_get_reply(&reply, FAMILY, 8),
            Err(FeaturesError::Malformed { .. })
        ));
        // Another family's message type.
        assert!(matches!(
            parse_dev_get_reply(&reply, FAMILY + 1, 7),
            Err(FeaturesError::Malformed { .. })
        ));
        // A notification (NETDEV_CMD_DEV_CHANGE_NTF, 4) is not the answer.
        let mut ntf = GenlMessage::from_payload(NetdevMessage {
            cmd: 4,
            attrs: dev_features(),
        });
        ntf.set_resolved_family_id(FAMILY);
        let ntf = datagram(SEQ_DEV_GET, NetlinkPayload::InnerMessage(ntf));
        assert!(matches!(
            parse_dev_get_reply(&ntf, FAMILY, 7),
            Err(FeaturesError::Malformed { .. })
        ));
        // No XDP features attribute.
        let bare = dev_reply(SEQ_DEV_GET, vec![DevAttr::Ifindex(7)]);
        assert!(matches!(
            parse_dev_get_reply(&bare, FAMILY, 7),
            Err(FeaturesError::Malformed { .. })
        ));
        // An XDP features attribute of the wrong size.
        let short = dev_reply(
            SEQ_DEV_GET,
            vec![DevAttr::Other(DefaultNla::new(
                NETDEV_A_DEV_XDP_FEATURES,
                vec![1, 0, 0, 0],
            ))],
        );
        assert!(matches!(
            parse_dev_get_reply(&short, FAMILY, 7),
            Err(FeaturesError::Malformed { .. })
        ));
    }

    #[test]
    fn other_sequence_numbers_are_skipped() {
        let stale = dev_reply(SEQ_DEV_GET + 5, vec![DevAttr::XdpFeatures(1)]);
        assert_eq!(
            parse_dev_get_reply(&stale, FAMILY, 7).expect("parses"),
            None
        );
        // Two messages in one datagram: the stale one first, ours second.
        let mut both = stale.clone();
        both.extend_from_slice(&dev_reply(SEQ_DEV_GET, dev_features()));
        assert_eq!(
            parse_dev_get_reply(&both, FAMILY, 7).expect("parses"),
            Some(XDP_ACT_BASIC | XDP_ACT_REDIRECT | XDP_ACT_NDO_XMIT | 32)
        );
        assert_eq!(parse_dev_get_reply(&[], FAMILY, 7).expect("parses"), None);
    }

    #[test]
    fn an_ack_is_not_a_reply() {
        let ack = datagram::<GenlMessage<NetdevMessage>>(
            SEQ_DEV_GET,
            NetlinkPayload::Error(ErrorMessage::default()),
        );
        assert!(matches!(
            parse_dev_get_reply(&ack, FAMILY, 7),
            Err(FeaturesError::Malformed { .. })
        ));
    }

    #[test]
    fn cut_or_corrupted_replies_fail_without_panicking() {
        let reply = dev_reply(SEQ_DEV_GET, dev_features());
        for cut in 1..reply.len() {
            let got = parse_dev_get_reply(&reply[..cut], FAMILY, 7);
            assert!(
                matches!(got, Err(FeaturesError::Malformed { .. })),
                "cut at {cut}: {got:?}"
            );
        }
        // Every single byte overwritten with a few values: an answer or an
        // error, never a panic.
        let family = family_reply(
            SEQ_FAMILY,
            vec![
                GenlCtrlAttrs::FamilyId(FAMILY),
                GenlCtrlAttrs::FamilyName("netdev".into()),
            ],
        );
        for at in 0..reply.len().max(family.len()) {
            for value in [0x00, 0x01, 0x02, 0x08, 0x7f, 0xff] {
                if at < reply.len() {
                    let mut bad = reply.clone();
                    bad[at] = value;
                    let _ = parse_dev_get_reply(&bad, FAMILY, 7);
                }
                if at < family.len() {
                    let mut bad = family.clone();
                    bad[at] = value;
                    let _ = parse_family_reply(&bad);
                }
            }
        }
        for cut in 1..family.len() {
            assert!(parse_family_reply(&family[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn error_messages_are_one_line() {
        let errors = [
            FeaturesError::Unsupported,
            FeaturesError::NoSuchInterface(3),
            FeaturesError::Kernel {
                op: OP_DEV_GET,
                errno: libc::EPERM,
            },
            FeaturesError::Socket {
                op: "open",
                err: io::Error::from_raw_os_error(libc::EMFILE),
            },
            FeaturesError::NoReply { op: OP_FAMILY },
            malformed(OP_DEV_GET, "no NETDEV_A_DEV_XDP_FEATURES"),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
    }

    /// The running kernel (6.3+ on this project's machines) answers for
    /// loopback, which every network namespace has at ifindex 1. Only asks:
    /// creates and changes nothing.
    #[test]
    fn kernel_answers_for_loopback() {
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert_eq!(lo, 1, "loopback's ifindex");
        match xdp_features(lo) {
            Ok(features) => eprintln!("xdp_features(lo) = {features:#x}"),
            Err(e) => panic!("xdp_features(lo): {e}"),
        }
    }

    /// An ifindex no interface has: ENODEV from the kernel, mapped to its
    /// own variant; ifindex 0 is refused by the family's policy (min 1) with
    /// ERANGE.
    #[test]
    fn kernel_reports_missing_interfaces() {
        let missing = i32::MAX as u32;
        match xdp_features(missing) {
            Err(FeaturesError::NoSuchInterface(i)) => assert_eq!(i, missing),
            other => panic!("ifindex {missing}: {other:?}"),
        }
        match xdp_features(0) {
            Err(FeaturesError::Kernel { errno, .. }) => assert_eq!(errno, libc::ERANGE),
            other => panic!("ifindex 0: {other:?}"),
        }
    }
}
