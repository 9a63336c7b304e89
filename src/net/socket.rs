//! UDP sockets with batched system calls: recvmmsg and GRO on receive, GSO
//! on send, ECN both ways (through quinn-udp, where the kernel has them),
//! and on Linux sendmmsg: one system call for GSO runs to many destinations
//! (a relay's fan-out).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{EcnCodepoint, RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

/// Kernel buffers sized for bursts of handshakes and media.
const SOCKET_BUFFER: usize = 4 << 20;
/// Datagrams per receive system call.
pub const BATCH: usize = quinn_udp::BATCH_SIZE;
/// Room for one GRO-coalesced receive (up to 64 KiB of segments).
const RX_SLOT: usize = 64 * 1024;
/// Messages (each a GSO run to one destination) per sendmmsg call, at most.
pub const SEND_BATCH: usize = 32;

/// One message of [`UdpSocket::try_send_many`]: `len` bytes at `start` of the
/// shared buffer, to `dst`, split into datagrams of `segment` bytes (the
/// last may be shorter) when `segs` > 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub dst: SocketAddr,
    pub start: usize,
    pub len: usize,
    pub segment: usize,
    pub segs: usize,
    pub ecn: bool,
}

impl Outgoing {
    fn segment_size(&self) -> Option<usize> {
        (self.segs > 1).then_some(self.segment)
    }
}

pub struct UdpSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    /// An IPv6 socket (destinations given as IPv4 are sent v4-mapped).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    ipv6: bool,
}

/// Binds `addr`; IPv6 sockets are IPv6-only so `0.0.0.0` and `[::]` can
/// share a port. Must be called inside a tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at its own limits.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())?;
    let state = UdpSocketState::new(UdpSockRef::from(&s))?;
    let io = tokio::net::UdpSocket::from_std(s.into())?;
    Ok(UdpSocket {
        io,
        state,
        ipv6: addr.is_ipv6(),
    })
}

impl UdpSocket {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    pub fn poll_recv_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.io.poll_recv_ready(cx)
    }

    /// Datagrams coalesced per GSO send, at most.
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// One batch of received datagrams (without blocking). Calls `each`
    /// with (source, bytes, ECN bits) per datagram; returns how many
    /// datagrams were read, `WouldBlock` when none were waiting.
    pub fn recv_batch(
        &self,
        bufs: &mut RecvBuffers,
        mut each: impl FnMut(SocketAddr, &[u8], u8),
    ) -> io::Result<usize> {
        let mut chunks = bufs.data.chunks_mut(RX_SLOT);
        // `data` holds exactly BATCH slots of RX_SLOT bytes.
        let mut iovs: [IoSliceMut<'_>; BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().expect("BATCH slots")));
        let n = self.io.try_io(Interest::READABLE, || {
            self.state
                .recv(UdpSockRef::from(&self.io), &mut iovs, &mut bufs.meta)
        })?;
        let mut count = 0;
        for (meta, iov) in bufs.meta.iter().zip(iovs.iter()).take(n) {
            let ecn = meta.ecn.map_or(0, |e| e as u8);
            let stride = meta.stride.max(1);
            for seg in iov[..meta.len].chunks(stride) {
                each(meta.addr, seg, ecn);
                count += 1;
            }
        }
        Ok(count)
    }

    /// Sends `contents` as one datagram, or as GSO segments of
    /// `segment_size` bytes (the last may be shorter).
    pub fn try_send(
        &self,
        dst: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
        ect: bool,
    ) -> io::Result<()> {
        let t = Transmit {
            destination: dst,
            ecn: ect.then_some(EcnCodepoint::Ect0),
            contents,
            segment_size,
            src_ip: None,
        };
        self.io.try_io(Interest::WRITABLE, || {
            self.state.try_send(UdpSockRef::from(&self.io), &t)
        })
    }

    /// Sends the messages in order, as many as the kernel takes in one
    /// system call (sendmmsg on Linux, at most [`SEND_BATCH`]; elsewhere
    /// one per call). Returns how many went; an error concerns `msgs[0]`
    /// (`WouldBlock`: the socket buffer is full, nothing was sent).
    pub fn try_send_many(&self, buf: &[u8], msgs: &[Outgoing]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if msgs.len() > 1 {
            return self.io.try_io(Interest::WRITABLE, || {
                mmsg::send(
                    &self.io,
                    self.ipv6,
                    buf,
                    &msgs[..msgs.len().min(SEND_BATCH)],
                )
            });
        }
        match msgs.first() {
            Some(m) => self.try_send_one(buf, m).map(|()| 1),
            None => Ok(0),
        }
    }

    /// As [`Self::try_send_many`] for one message, through quinn-udp, whose
    /// error handling turns GSO off for good on a device without it.
    pub fn try_send_one(&self, buf: &[u8], m: &Outgoing) -> io::Result<()> {
        self.try_send(
            m.dst,
            &buf[m.start..m.start + m.len],
            m.segment_size(),
            m.ecn,
        )
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.io.writable().await
    }

    /// Asks the kernel to queue ICMP errors (port or host unreachable) for
    /// this socket (`IP_RECVERR`), so a client learns at once that nothing
    /// listens instead of waiting out its timeout. A no-op off Linux.
    pub fn enable_transport_errors(&self) -> io::Result<()> {
        self.state
            .enable_transport_errors(UdpSockRef::from(&self.io))
    }

    /// Resolves once the socket has an error queued (see
    /// [`Self::enable_transport_errors`]).
    pub async fn error_ready(&self) -> io::Result<()> {
        self.io.ready(Interest::ERROR).await.map(|_| ())
    }

    /// Takes the queued errors (at most `limit`), calling `each` with the
    /// address that reported each unreachable destination (port 0 when the
    /// kernel does not say).
    pub fn take_unreachable(&self, limit: usize, mut each: impl FnMut(SocketAddr)) -> usize {
        let mut n = 0;
        while n < limit {
            match self.state.recv_transport_error(UdpSockRef::from(&self.io)) {
                Ok(Some(e)) => {
                    n += 1;
                    if matches!(e.payload, quinn_udp::TransportErrorPayload::Unreachable)
                        && let Some(a) = e.addr
                    {
                        each(a);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The readiness that woke us is edge-triggered; clear it so the
        // next error wakes the task again.
        self.io
            .try_io(Interest::ERROR, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            })
            .ok();
        n
    }
}

/// Receive buffers for one socket, allocated once.
pub struct RecvBuffers {
    data: Vec<u8>,
    meta: [RecvMeta; BATCH],
}

impl Default for RecvBuffers {
    fn default() -> Self {
        Self {
            data: vec![0u8; BATCH * RX_SLOT],
            meta: [RecvMeta::default(); BATCH],
        }
    }
}

/// sendmmsg with one GSO run per message. The headers live on the stack for
/// the call: nothing is allocated per packet.
#[cfg(target_os = "linux")]
mod mmsg {
    use std::io;
    use std::mem;
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    use super::{Outgoing, SEND_BATCH};

    /// Two control messages at most: ECN (an int) and the GSO segment size
    /// (a u16), each padded to the header's alignment.
    const CMSG_ROOM: usize = 64;

    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Control([u8; CMSG_ROOM]);

    pub(super) fn send(
        io: &tokio::net::UdpSocket,
        ipv6: bool,
        buf: &[u8],
        msgs: &[Outgoing],
    ) -> io::Result<usize> {
        debug_assert!(msgs.len() <= SEND_BATCH);
        // SAFETY: plain C structs for which all-zero is a valid value.
        let mut hdrs: [libc::mmsghdr; SEND_BATCH] = unsafe { mem::zeroed() };
        let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { mem::zeroed() };
        let mut addrs: [libc::sockaddr_in6; SEND_BATCH] = unsafe { mem::zeroed() };
        let mut ctrl = [Control([0; CMSG_ROOM]); SEND_BATCH];
        let n = msgs.len().min(SEND_BATCH);
        for i in 0..n {
            let m = &msgs[i];
            let bytes = &buf[m.start..m.start + m.len];
            iovs[i] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            let addr_len = write_addr(&mut addrs[i], m.dst, ipv6);
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in6).cast();
            h.msg_namelen = addr_len;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = ctrl[i].0.as_mut_ptr().cast();
            h.msg_controllen = CMSG_ROOM as _;
            // SAFETY: msg_control points at CMSG_ROOM aligned bytes that
            // outlive the call; CMSG_* walk only within msg_controllen.
            let used = unsafe { write_control(h, ipv6, m) };
            h.msg_controllen = used as _;
            if used == 0 {
                h.msg_control = std::ptr::null_mut();
            }
        }
        loop {
            // SAFETY: every header points at live iovecs, addresses and
            // control buffers on this stack frame, and the payload slices
            // borrow `buf`, which outlives the call.
            let r = unsafe { libc::sendmmsg(io.as_raw_fd(), hdrs.as_mut_ptr(), n as u32, 0) };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn write_addr(out: &mut libc::sockaddr_in6, dst: SocketAddr, ipv6: bool) -> libc::socklen_t {
        match dst {
            SocketAddr::V4(a) if !ipv6 => {
                // SAFETY: sockaddr_in fits in sockaddr_in6 (16 <= 28 bytes)
                // and both are plain C structs.
                let v4 =
                    unsafe { &mut *(out as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
                v4.sin_family = libc::AF_INET as libc::sa_family_t;
                v4.sin_port = a.port().to_be();
                v4.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            _ => {
                let (ip, port, flow, scope) = match dst {
                    SocketAddr::V4(a) => (a.ip().to_ipv6_mapped(), a.port(), 0, 0),
                    SocketAddr::V6(a) => (*a.ip(), a.port(), a.flowinfo(), a.scope_id()),
                };
                out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                out.sin6_port = port.to_be();
                out.sin6_flowinfo = flow.to_be();
                out.sin6_addr = libc::in6_addr {
                    s6_addr: ip.octets(),
                };
                out.sin6_scope_id = scope;
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    /// Writes the ECN code point (ECT(0) for packets with user data) and the
    /// GSO segment size; returns the control bytes used.
    ///
    /// # Safety
    /// `h.msg_control` must point at `h.msg_controllen` writable bytes
    /// aligned for `cmsghdr`.
    unsafe fn write_control(h: &mut libc::msghdr, ipv6: bool, m: &Outgoing) -> usize {
        let mut used = 0;
        // SAFETY: as the caller promises; CMSG_FIRSTHDR/NXTHDR return null
        // once the room is used up, and each write stays within CMSG_LEN.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            if m.ecn && !c.is_null() {
                let (level, kind) = if ipv6 {
                    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
                } else {
                    (libc::IPPROTO_IP, libc::IP_TOS)
                };
                (*c).cmsg_level = level;
                (*c).cmsg_type = kind;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as _;
                // ECT(0) is 0b10.
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), 2);
                used += libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) as usize;
                c = libc::CMSG_NXTHDR(h, c);
            }
            if let Some(seg) = m.segment_size()
                && !c.is_null()
            {
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
                used += libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
            }
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Every datagram `sock` receives within `wait`, as (source, bytes, ECN).
    async fn received(sock: &UdpSocket, want: usize) -> Vec<(SocketAddr, Vec<u8>, u8)> {
        let mut bufs = RecvBuffers::default();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while got.len() < want && tokio::time::Instant::now() < deadline {
            let ready = std::future::poll_fn(|cx| sock.poll_recv_ready(cx));
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                break;
            }
            let _ = sock.recv_batch(&mut bufs, |from, d, ecn| got.push((from, d.to_vec(), ecn)));
        }
        got
    }

    /// Several GSO runs to several destinations in one call: each receiver
    /// gets exactly its datagrams, whole, in order, with the ECN asked for.
    #[tokio::test]
    async fn send_many_delivers_each_run_to_its_destination() {
        send_many_on("127.0.0.1:0".parse().unwrap()).await;
    }

    #[tokio::test]
    async fn send_many_delivers_over_ipv6_too() {
        let any: SocketAddr = "[::1]:0".parse().unwrap();
        // A host without IPv6 loopback has nothing to test here.
        if bind(any).is_ok() {
            send_many_on(any).await;
        }
    }

    async fn send_many_on(any: SocketAddr) {
        let tx = bind(any).unwrap();
        let rx: Vec<UdpSocket> = (0..3).map(|_| bind(any).unwrap()).collect();
        let to: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
        let gso = tx.max_gso_segments() > 1;
        // Run 0: three datagrams of 100 bytes and a 40-byte tail (GSO when
        // the kernel has it, else one each); run 1: one datagram; run 2:
        // one datagram marked ECT(0).
        let mut buf = Vec::new();
        let mut msgs = Vec::new();
        let mut expect: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
        let segs: &[usize] = if gso { &[100, 100, 100, 40] } else { &[100] };
        let start = buf.len();
        for (k, &n) in segs.iter().enumerate() {
            let d = vec![k as u8 + 1; n];
            buf.extend_from_slice(&d);
            expect[0].push(d);
        }
        msgs.push(Outgoing {
            dst: to[0],
            start,
            len: buf.len() - start,
            segment: 100,
            segs: segs.len(),
            ecn: false,
        });
        for (i, ecn) in [(1usize, false), (2, true)] {
            let start = buf.len();
            let d = vec![0x40 + i as u8; 60 + i];
            buf.extend_from_slice(&d);
            expect[i].push(d);
            msgs.push(Outgoing {
                dst: to[i],
                start,
                len: 60 + i,
                segment: 60 + i,
                segs: 1,
                ecn,
            });
        }
        let mut sent = 0;
        while sent < msgs.len() {
            match tx.try_send_many(&buf, &msgs[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tx.writable().await.unwrap(),
                Err(e) => panic!("send: {e}"),
            }
        }
        let from = tx.local_addr().unwrap();
        for (i, r) in rx.iter().enumerate() {
            let got = received(r, expect[i].len()).await;
            let bytes: Vec<Vec<u8>> = got.iter().map(|g| g.1.clone()).collect();
            assert_eq!(bytes, expect[i], "receiver {i}");
            assert!(got.iter().all(|g| g.0 == from));
            // quinn-udp asks Linux for the TOS byte of what arrives.
            if cfg!(target_os = "linux") {
                let want = if i == 2 { 2 } else { 0 };
                assert!(got.iter().all(|g| g.2 == want), "ECN at {i}: {got:?}");
            }
        }
    }
}
