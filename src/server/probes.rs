//! The probe sockets of `serve --probe-addr`: one task that answers STUN
//! Binding requests on every probe address ([`super::stun`]), replying from
//! whichever socket CHANGE-REQUEST asks for; and the RTMFP connectivity
//! check's IHellos out and RHellos in ([`super::conncheck`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::ServerCommand;
use super::conncheck::{LiveTags, ProbeSend};
use super::stun::StunResponder;
use crate::nat::rtmfp_probe::rhello_probe_tag;
use crate::nat::stun::looks_like_stun;

/// Binds every probe address; fails on the first that cannot be bound.
pub async fn bind(addrs: &[SocketAddr]) -> Result<Vec<UdpSocket>, String> {
    let mut v = Vec::with_capacity(addrs.len());
    for a in addrs {
        v.push(
            UdpSocket::bind(a)
                .await
                .map_err(|e| format!("cannot bind probe address {a}: {e}"))?,
        );
    }
    Ok(v)
}

/// The link between the probe sockets and the server's connectivity check
/// ([`super::conncheck`]): IHellos to send come in, returned probe tags go
/// out as server commands.
pub struct RtmfpLink {
    pub sends: mpsc::Receiver<ProbeSend>,
    pub returned: mpsc::Sender<ServerCommand>,
    /// Only RHellos with one of these tags are passed on.
    pub live_tags: LiveTags,
}

/// The command for the server's task when a probe socket got `data` from
/// `from`: only an RHello whose tag belongs to a running check.
pub fn returned_probe(
    data: &[u8],
    via: usize,
    from: SocketAddr,
    live: &LiveTags,
) -> Option<ServerCommand> {
    let tag = rhello_probe_tag(data)?;
    let known = live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&tag);
    known.then_some(ServerCommand::ProbeReturned { via, from, tag })
}

/// Serves until the runtime stops. Each socket has a receive loop; replies
/// go out through the socket the responder picks. With `rtmfp`, RHellos
/// carrying a probe tag are passed to the server and its IHellos sent.
pub async fn run(sockets: Vec<UdpSocket>, rtmfp: Option<RtmfpLink>) {
    let addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
    if addrs.len() != sockets.len() {
        warn!("probe sockets without a local address; STUN disabled");
        return;
    }
    let sockets: Arc<Vec<UdpSocket>> = Arc::new(sockets);
    let responder = Arc::new(std::sync::Mutex::new(StunResponder::new(addrs)));
    let (mut sends, returned) = match rtmfp {
        Some(l) => (Some(l.sends), Some((l.returned, l.live_tags))),
        None => (None, None),
    };
    let mut tasks = Vec::new();
    if let Some(mut rx) = sends.take() {
        let sockets = sockets.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if let Some(s) = sockets.get(p.via)
                    && let Err(e) = s.send_to(&p.bytes, p.to).await
                {
                    debug!("probe IHello to {}: {e}", p.to);
                }
            }
        }));
    }
    for i in 0..sockets.len() {
        let sockets = sockets.clone();
        let responder = responder.clone();
        let returned = returned.clone();
        tasks.push(tokio::spawn(async move {
            // Room for a padded request (turnutils_natdiscovery -P sends over 1.5 KB).
            let mut buf = [0u8; 4096];
            let mut out = [0u8; super::stun::MAX_REPLY];
            loop {
                let (n, from) = match sockets[i].recv_from(&mut buf).await {
                    Ok(v) => v,
                    Err(e) => {
                        // ICMP errors from earlier sends arrive here; keep serving.
                        debug!("probe socket {i}: {e}");
                        continue;
                    }
                };
                if !looks_like_stun(&buf[..n]) {
                    if let Some((tx, live)) = &returned
                        && let Some(cmd) = returned_probe(&buf[..n], i, from, live)
                    {
                        // A full queue drops it: the probe is sent again.
                        let _ = tx.try_send(cmd);
                    }
                    continue;
                }
                let reply = {
                    let mut r = responder.lock().unwrap_or_else(|p| p.into_inner());
                    r.answer(i, from, &buf[..n], &mut out)
                };
                if let Some(r) = reply
                    && let Err(e) = sockets[r.via].send_to(&out[..r.len], r.to).await
                {
                    debug!("probe reply to {}: {e}", r.to);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::rtmfp_probe::tests::rhello_datagram as rhello;

    /// Anyone can forge an RHello (the startup key is public): only a live
    /// check's tag reaches the server's task.
    #[test]
    fn forged_rhellos_are_not_passed_on() {
        let live = LiveTags::default();
        let from: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        let real = [7u8; 32];
        assert_eq!(returned_probe(&rhello(&real), 1, from, &live), None);
        live.lock().unwrap().insert(real);
        assert_eq!(
            returned_probe(&rhello(&real), 1, from, &live),
            Some(ServerCommand::ProbeReturned {
                via: 1,
                from,
                tag: real
            })
        );
        for i in 0..=255u8 {
            let forged = [i; 32];
            if forged != real {
                assert_eq!(returned_probe(&rhello(&forged), 1, from, &live), None);
            }
        }
        assert_eq!(returned_probe(b"garbage", 1, from, &live), None);
    }
}
