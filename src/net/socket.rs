//! UDP sockets with batched system calls: recvmmsg and GRO on receive, GSO
//! on send, ECN both ways (through quinn-udp, where the kernel has them).

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

pub struct UdpSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
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
    Ok(UdpSocket { io, state })
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
