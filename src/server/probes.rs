//! The probe sockets of `serve --probe-addr`: one task that answers STUN
//! Binding requests on every probe address ([`super::stun`]), replying from
//! whichever socket CHANGE-REQUEST asks for.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::stun::StunResponder;

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

/// Serves until the runtime stops. Each socket has a receive loop; replies
/// go out through the socket the responder picks.
pub async fn run(sockets: Vec<UdpSocket>) {
    let addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
    if addrs.len() != sockets.len() {
        warn!("probe sockets without a local address; STUN disabled");
        return;
    }
    let sockets: Arc<Vec<UdpSocket>> = Arc::new(sockets);
    let responder = Arc::new(std::sync::Mutex::new(StunResponder::new(addrs)));
    let mut tasks = Vec::new();
    for i in 0..sockets.len() {
        let sockets = sockets.clone();
        let responder = responder.clone();
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
