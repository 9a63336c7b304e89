//! The NAT lab: hosts in Linux network namespaces joined by veth pairs and a
//! bridge, behind NATs made of nftables rules. One reusable helper for every
//! test that needs real NAT behaviour (the NAT prober, P2P sessions).
//!
//! Include it with `#[path = "support/natlab.rs"] mod natlab;`.
//!
//! # Addresses (documentation ranges only; nothing routes out of the lab)
//! * `192.0.2.0/24` is the "public internet": a bridge in a namespace of its
//!   own (the hub). Servers get `192.0.2.10`+, routed hosts (no NAT)
//!   `192.0.2.50`+, NAT routers' public sides `192.0.2.100`+.
//! * `198.51.100.0/24` holds the private sides: NAT number `n` (0..15) owns
//!   `198.51.100.16n/28`, its router is `.16n+1`, its hosts `.16n+2` onwards.
//! * `203.0.113.0/24` is not used by the lab, so tests can use it for
//!   addresses that must not exist anywhere.
//!
//! No namespace has a default route: every route names a lab prefix, and the
//! hub is connected to nothing but lab namespaces, so no packet can leave.
//!
//! # NAT kinds (RFC 4787 terms)
//! * [`NatKind::None`]: a host on the public segment, no NAT, no firewall.
//! * [`NatKind::FullCone`]: EIM + EIF. SNAT to the router's public address
//!   (Linux keeps the source port when free) plus DNAT of everything that
//!   arrives at that address to the one host behind it (a 1:1 NAT). The DNAT
//!   is not restricted to the public side, so this NAT hairpins.
//! * [`NatKind::PortRestricted`]: EIM + APDF, Linux `masquerade`: conntrack
//!   keeps the source port when free (so the mapping does not depend on the
//!   destination) and lets in only replies to the exact 5-tuple. No hairpin.
//! * [`NatKind::Symmetric`]: APDM + APDF, `masquerade fully-random`: every new
//!   destination endpoint gets a fresh random port.
//! * [`NatKind::UdpBlocked`]: masquerade, but the router drops all forwarded
//!   UDP.
//!
//! Several hosts can sit behind one NAT ([`Lab::host_behind`]): hairpinning.
//!
//! # Delay
//! [`Lab::delayed_server`] puts a router namespace with a user-space delay hop
//! (a TUN device pumped by a thread of the test) in front of a server, since
//! the kernel may lack netem. Its router takes `192.0.2.240`+ on the public
//! segment and answers ARP for the server's addresses only (proxy ARP).
//!
//! # Lifetime
//! Namespace names are unique per process and lab (`rl<pid>x<n><role>`), and
//! dropping the [`Lab`] kills what runs inside its namespaces and deletes
//! them, also when a test panics.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why the lab could not be built on this machine.
#[derive(Debug)]
pub struct Skip(pub String);

/// Which NAT sits in front of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    None,
    FullCone,
    PortRestricted,
    Symmetric,
    UdpBlocked,
}

impl NatKind {
    pub const ALL: [NatKind; 5] = [
        NatKind::None,
        NatKind::FullCone,
        NatKind::PortRestricted,
        NatKind::Symmetric,
        NatKind::UdpBlocked,
    ];
}

/// A machine in the lab: one namespace, one address on its segment.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
    /// Extra addresses on the same interface (servers).
    pub extra: Vec<Ipv4Addr>,
}

impl Host {
    /// A command that runs `program` inside this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// All this host's addresses, main one first.
    pub fn addrs(&self) -> Vec<Ipv4Addr> {
        let mut v = vec![self.ip];
        v.extend(&self.extra);
        v
    }
}

/// A NAT router: its namespace, public address and private /28.
#[derive(Debug, Clone)]
pub struct Nat {
    pub kind: NatKind,
    pub ns: String,
    pub public: Ipv4Addr,
    index: u8,
    hosts: u8,
}

/// A process started in the lab; killed (by its pid) when dropped.
pub struct LabChild(pub Child);

impl Drop for LabChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static LABS: AtomicU32 = AtomicU32::new(0);

/// One lab: a public segment plus whatever servers, NATs and hosts a test adds.
pub struct Lab {
    prefix: String,
    hub: String,
    namespaces: Vec<String>,
    hub_ports: u32,
    servers: u8,
    routed: u8,
    nats: u8,
}

/// Run `ip`/`nft` and fail loudly: a lab half built is worse than none.
fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {:?}: {e} (is iproute2/nftables installed?)",
                args
            )
        });
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn nsrun(ns: &str, args: &[&str]) -> Output {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    run(&v)
}

/// nftables rules, fed on stdin so one call sets a whole table.
fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft (nftables) must be installed for the NAT lab");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft failed in {ns}: {}\n{rules}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    nsrun(ns, &["sh", "-c", &format!("echo {value} > {path}")]);
}

impl Lab {
    /// Builds the public segment, or says why this machine cannot.
    pub fn new() -> Result<Lab, Skip> {
        if Command::new("ip").arg("-V").output().is_err() {
            panic!("the NAT lab needs iproute2 (`ip`); .ci/run installs it");
        }
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("rl{}x{}", std::process::id(), n);
        let hub = format!("{prefix}hub");
        let probe = Command::new("ip")
            .args(["netns", "add", &hub])
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Skip(format!("cannot run ip: {e}")))?;
        if !probe.status.success() {
            return Err(Skip(format!(
                "the kernel or our privileges refuse network namespaces ({})",
                String::from_utf8_lossy(&probe.stderr).trim()
            )));
        }
        let lab = Lab {
            prefix,
            hub: hub.clone(),
            namespaces: vec![hub.clone()],
            hub_ports: 0,
            servers: 0,
            routed: 0,
            nats: 0,
        };
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"]);
        run(&["ip", "-n", &hub, "link", "set", "lo", "up"]);
        Ok(lab)
    }

    /// Like [`Lab::new`], but prints a loud notice and returns `None` when
    /// namespaces are refused, so a test can `return` (skip).
    pub fn or_skip(test: &str) -> Option<Lab> {
        match Lab::new() {
            Ok(l) => Some(l),
            Err(Skip(why)) => {
                eprintln!("\n*** SKIPPED {test}: NAT lab unavailable: {why} ***\n");
                None
            }
        }
    }

    fn add_ns(&mut self, role: &str) -> String {
        let ns = format!("{}{}", self.prefix, role);
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth from the hub's bridge to `ns`, named `dev` there.
    fn plug_public(&mut self, ns: &str, dev: &str) {
        let port = format!("p{}", self.hub_ports);
        self.hub_ports += 1;
        run(&[
            "ip", "-n", &self.hub, "link", "add", &port, "type", "veth", "peer", "name", dev,
            "netns", ns,
        ]);
        run(&["ip", "-n", &self.hub, "link", "set", &port, "master", "br0"]);
        run(&["ip", "-n", &self.hub, "link", "set", &port, "up"]);
        run(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }

    /// A server on the public segment with `n_addrs` addresses
    /// (192.0.2.10 + 3k, +1, +2 …; at most 3).
    pub fn server(&mut self, n_addrs: u8) -> Host {
        assert!((1..=3).contains(&n_addrs), "a server has 1 to 3 addresses");
        let k = self.servers;
        assert!(k < 10, "at most 10 servers per lab");
        self.servers += 1;
        let ns = self.add_ns(&format!("s{k}"));
        self.plug_public(&ns, "eth0");
        let ips: Vec<Ipv4Addr> = (0..n_addrs)
            .map(|i| Ipv4Addr::new(192, 0, 2, 10 + 3 * k + i))
            .collect();
        for ip in &ips {
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        Host {
            ns,
            ip: ips[0],
            extra: ips[1..].to_vec(),
        }
    }

    /// A NAT router of `kind` (for [`NatKind::None`], use [`Lab::host`]).
    pub fn nat(&mut self, kind: NatKind) -> Nat {
        assert!(kind != NatKind::None, "NatKind::None has no router");
        let index = self.nats;
        assert!(index < 15, "at most 15 NATs per lab");
        self.nats += 1;
        let ns = self.add_ns(&format!("n{index}"));
        self.plug_public(&ns, "wan");
        let public = Ipv4Addr::new(192, 0, 2, 100 + index);
        let router = Ipv4Addr::new(198, 51, 100, 16 * index + 1);
        let lan = format!("198.51.100.{}/28", 16 * index);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{public}/24"),
            "dev",
            "wan",
        ]);
        run(&["ip", "-n", &ns, "link", "add", "lan", "type", "bridge"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{router}/28"),
            "dev",
            "lan",
        ]);
        run(&["ip", "-n", &ns, "link", "set", "lan", "up"]);
        sysctl(&ns, "net.ipv4.ip_forward", "1");
        // Hairpinned packets leave by the interface they came in on; a
        // redirect would tell the host to bypass the NAT.
        sysctl(&ns, "net.ipv4.conf.all.send_redirects", "0");
        sysctl(&ns, "net.ipv4.conf.lan.send_redirects", "0");
        // With br_netfilter loaded, frames crossing the LAN bridge go through
        // the IP hooks as bridged traffic, and a hairpinned (DNATed) packet
        // would be bridged back out its own port, which a bridge refuses.
        // Routing, not bridging, is what a NAT does: turn that off here (the
        // ports also get hairpin mode, for kernels without per-namespace
        // bridge sysctls).
        nsrun(
            &ns,
            &[
                "sh",
                "-c",
                "f=/proc/sys/net/bridge/bridge-nf-call-iptables; [ -w $f ] && echo 0 > $f || true",
            ],
        );
        let rules = match kind {
            NatKind::FullCone => format!(
                "table ip lab {{
                   chain pre {{ type nat hook prerouting priority dstnat; ip daddr {public} dnat to {host}; }}
                   chain post {{ type nat hook postrouting priority srcnat; ip saddr {lan} snat to {public}; }}
                 }}",
                host = Ipv4Addr::new(198, 51, 100, 16 * index + 2)
            ),
            // The input chain is the home router's own firewall: an
            // unsolicited packet for the router is dropped before conntrack
            // confirms an entry for it. Without it, a peer's hole-punching
            // packet that arrives before ours leaves leaves a confirmed
            // entry behind, and masquerade then maps our packet to that
            // peer to another port (a clash): port-restricted NATs would
            // defeat each other's punching, which real routers do not.
            NatKind::PortRestricted => format!(
                "table ip lab {{
                   chain in {{ type filter hook input priority filter; iifname \"wan\" ct state new drop; }}
                   chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" ip saddr {lan} masquerade; }}
                 }}"
            ),
            NatKind::Symmetric => format!(
                "table ip lab {{
                   chain in {{ type filter hook input priority filter; iifname \"wan\" ct state new drop; }}
                   chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" ip saddr {lan} masquerade fully-random; }}
                 }}"
            ),
            NatKind::UdpBlocked => format!(
                "table ip lab {{
                   chain filt {{ type filter hook forward priority filter; meta l4proto udp drop; }}
                   chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" ip saddr {lan} masquerade; }}
                 }}"
            ),
            NatKind::None => unreachable!(),
        };
        nft(&ns, &rules);
        Nat {
            kind,
            ns,
            public,
            index,
            hosts: 0,
        }
    }

    /// A host behind `nat` (its next private address). A full-cone NAT
    /// forwards to its first host only.
    pub fn host_behind(&mut self, nat: &mut Nat) -> Host {
        assert!(nat.hosts < 12, "at most 12 hosts behind one NAT");
        let j = nat.hosts;
        nat.hosts += 1;
        let ns = self.add_ns(&format!("n{}h{j}", nat.index));
        let ip = Ipv4Addr::new(198, 51, 100, 16 * nat.index + 2 + j);
        let router = Ipv4Addr::new(198, 51, 100, 16 * nat.index + 1);
        let port = format!("h{j}");
        run(&[
            "ip", "-n", &nat.ns, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        run(&["ip", "-n", &nat.ns, "link", "set", &port, "master", "lan"]);
        run(&[
            "ip",
            "-n",
            &nat.ns,
            "link",
            "set",
            &port,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ]);
        run(&["ip", "-n", &nat.ns, "link", "set", &port, "up"]);
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/28"),
            "dev",
            "eth0",
        ]);
        run(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            &router.to_string(),
        ]);
        Host {
            ns,
            ip,
            extra: vec![],
        }
    }

    /// One host behind a fresh NAT of `kind` (or on the public segment for
    /// [`NatKind::None`]).
    pub fn host(&mut self, kind: NatKind) -> (Host, Option<Nat>) {
        if kind == NatKind::None {
            let k = self.routed;
            assert!(k < 40, "at most 40 routed hosts per lab");
            self.routed += 1;
            let ns = self.add_ns(&format!("r{k}"));
            self.plug_public(&ns, "eth0");
            let ip = Ipv4Addr::new(192, 0, 2, 50 + k);
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            return (
                Host {
                    ns,
                    ip,
                    extra: vec![],
                },
                None,
            );
        }
        let mut nat = self.nat(kind);
        let h = self.host_behind(&mut nat);
        (h, Some(nat))
    }

    /// Starts `program args` in `host`, stdout piped, stderr to ours.
    pub fn spawn(&self, host: &Host, program: &str, args: &[&str]) -> LabChild {
        LabChild(
            host.command(program)
                .args(args)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn in the lab"),
        )
    }

    /// Runs `program args` in `host` to completion, killed after `limit`.
    pub fn run_in(&self, host: &Host, program: &str, args: &[&str], limit: Duration) -> Output {
        let mut child = host
            .command(program)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in the lab");
        let deadline = Instant::now() + limit;
        // Drain pipes on threads so a chatty child cannot block on a full pipe.
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let t1 = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut so, &mut v);
            v
        });
        let t2 = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut se, &mut v);
            v
        });
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: t1.join().unwrap(),
            stderr: t2.join().unwrap(),
        }
    }

    /// Sets how long the NAT keeps an idle UDP mapping (conntrack's UDP
    /// timeouts, per namespace), so lifetime tests need not wait minutes.
    pub fn set_udp_timeout(&self, nat: &Nat, secs: u32) {
        let v = secs.to_string();
        sysctl(&nat.ns, "net.netfilter.nf_conntrack_udp_timeout", &v);
        sysctl(&nat.ns, "net.netfilter.nf_conntrack_udp_timeout_stream", &v);
    }

    /// The names of this lab's namespaces (for diagnostics).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Kill what still runs in our namespaces (processes we started, found
        // by namespace, not by name), then delete them; veths go with them.
        for ns in self.namespaces.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

// IPv6 (documentation range 2001:db8::/32 only), added on request to a lab
// built as above; the IPv4 plan is untouched. Each IPv4 address maps to one
// IPv6 address: public 192.0.2.x ↔ 2001:db8::x (x written in hex digits as
// decimal), NAT n's private /28 ↔ 2001:db8:1:n::/64 with the same host
// numbers. NAT66 uses the same nftables rules in the ip6 family, so each
// kind behaves as its IPv4 twin.

/// The IPv6 twin of a lab IPv4 address.
pub fn ipv6_of(v4: Ipv4Addr) -> std::net::Ipv6Addr {
    let o = v4.octets();
    let s = if o[0] == 192 {
        format!("2001:db8::{}", o[3])
    } else {
        format!("2001:db8:1:{}::{}", o[3] / 16, o[3] % 16)
    };
    s.parse().expect("lab IPv6 address")
}

impl Lab {
    /// Gives `host` (a server, a routed host, or a host behind `nat`, whose
    /// router must have had [`Lab::enable_ipv6_nat`]) the IPv6 twins of its
    /// addresses; returns them, main one first.
    pub fn enable_ipv6(&self, host: &Host, nat: Option<&Nat>) -> Vec<std::net::Ipv6Addr> {
        let addrs: Vec<std::net::Ipv6Addr> = host.addrs().into_iter().map(ipv6_of).collect();
        for a in &addrs {
            run(&[
                "ip",
                "-n",
                &host.ns,
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
        }
        if let Some(nat) = nat {
            let router = format!("2001:db8:1:{}::1", nat.index);
            run(&[
                "ip",
                "-n",
                &host.ns,
                "-6",
                "route",
                "add",
                "2001:db8::/64",
                "via",
                &router,
            ]);
        }
        addrs
    }

    /// Turns `nat` into a NAT66 of the same kind.
    pub fn enable_ipv6_nat(&self, nat: &Nat) {
        let public = ipv6_of(nat.public);
        let i = nat.index;
        let lan = format!("2001:db8:1:{i}::/64");
        run(&[
            "ip",
            "-n",
            &nat.ns,
            "addr",
            "add",
            &format!("{public}/64"),
            "dev",
            "wan",
            "nodad",
        ]);
        run(&[
            "ip",
            "-n",
            &nat.ns,
            "addr",
            "add",
            &format!("2001:db8:1:{i}::1/64"),
            "dev",
            "lan",
            "nodad",
        ]);
        sysctl(&nat.ns, "net.ipv6.conf.all.forwarding", "1");
        let rules = match nat.kind {
            NatKind::FullCone => format!(
                "table ip6 lab6 {{
                   chain pre {{ type nat hook prerouting priority dstnat; ip6 daddr {public} dnat to 2001:db8:1:{i}::2; }}
                   chain post {{ type nat hook postrouting priority srcnat; ip6 saddr {lan} snat to {public}; }}
                 }}"
            ),
            NatKind::PortRestricted => format!(
                "table ip6 lab6 {{
                   chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" ip6 saddr {lan} masquerade; }}
                 }}"
            ),
            NatKind::Symmetric => format!(
                "table ip6 lab6 {{
                   chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" ip6 saddr {lan} masquerade fully-random; }}
                 }}"
            ),
            NatKind::UdpBlocked => format!(
                "table ip6 lab6 {{
                   chain filt {{ type filter hook forward priority filter; meta l4proto udp drop; }}
                   chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" ip6 saddr {lan} masquerade; }}
                 }}"
            ),
            NatKind::None => unreachable!("NatKind::None has no router"),
        };
        nft(&nat.ns, &rules);
    }
}

// A delay hop, because this kernel has no netem (CONFIG_NET_SCH_NETEM unset).
// The server sits behind a router namespace of its own: proxy ARP on both of
// its veths keeps the server on the public /24 (nothing else in the lab
// changes), and policy routing sends every packet crossing the router into a
// TUN device. A thread in this process reads each packet from the TUN, holds
// it for the one-way delay and writes it back; written back, it arrives "from
// tun0", the main table routes it out of the other veth. Each direction is
// delayed once, so the round trip grows by twice the one-way delay.

/// The pump behind a delayed server; stops (and closes the TUN) when dropped.
pub struct DelayHop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Packets dropped because the bounded queue was full.
    pub dropped: std::sync::Arc<AtomicU32>,
}

impl Drop for DelayHop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Opens a TUN device named `dev` in namespace `ns` (IFF_TUN | IFF_NO_PI).
/// The `setns` happens on a throw-away thread so no test thread changes
/// namespace; the descriptor stays bound to the device wherever it is used.
fn open_tun_in(ns: &str, dev: &str) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let ns_path = format!("/run/netns/{ns}");
    let dev = dev.to_owned();
    std::thread::spawn(move || {
        let nsf = std::fs::File::open(&ns_path)?;
        // SAFETY: setns on a valid descriptor; it affects only this thread.
        if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        // struct ifreq: 16-byte name, then the flags (a short) in the union.
        let mut ifr = [0u8; 40];
        assert!(dev.len() < 16);
        ifr[..dev.len()].copy_from_slice(dev.as_bytes());
        let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as u16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes one ifreq, which `ifr` is sized for.
        if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(tun)
    })
    .join()
    .expect("tun thread")
}

impl Lab {
    /// Like [`Lab::server`], but every packet to or from the server waits
    /// `one_way` in a router namespace in front of it (RTT + 2 × `one_way`).
    /// Err when this machine has no usable TUN device.
    pub fn delayed_server(
        &mut self,
        n_addrs: u8,
        one_way: Duration,
    ) -> Result<(Host, DelayHop), Skip> {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        assert!((1..=3).contains(&n_addrs), "a server has 1 to 3 addresses");
        let k = self.servers;
        assert!(k < 10, "at most 10 servers per lab");
        self.servers += 1;
        let ips: Vec<Ipv4Addr> = (0..n_addrs)
            .map(|i| Ipv4Addr::new(192, 0, 2, 10 + 3 * k + i))
            .collect();
        let ns = self.add_ns(&format!("s{k}"));
        let router = self.add_ns(&format!("d{k}"));
        self.plug_public(&router, "wan");
        run(&[
            "ip", "-n", &router, "link", "add", "srv", "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        run(&["ip", "-n", &router, "link", "set", "srv", "up"]);
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        for ip in &ips {
            let a = format!("{ip}/24");
            run(&["ip", "-n", &ns, "addr", "add", &a, "dev", "eth0", "nodad"]);
        }
        let tun = open_tun_in(&router, "tun0")
            .map_err(|e| Skip(format!("cannot open a TUN device in the lab: {e}")))?;
        // The router's own address is only a source for its ARP requests.
        let own = format!("192.0.2.{}/24", 240 + k);
        run(&[
            "ip", "-n", &router, "addr", "add", &own, "dev", "wan", "nodad",
        ]);
        run(&["ip", "-n", &router, "link", "set", "tun0", "up"]);
        for key in ["all", "default", "wan", "srv", "tun0"] {
            sysctl(&router, &format!("net.ipv4.conf.{key}.rp_filter"), "0");
        }
        for key in ["wan", "srv"] {
            sysctl(&router, &format!("net.ipv4.conf.{key}.proxy_arp"), "1");
            // Proxy ARP answers after a random wait of up to 0.8 s by
            // default: a first probe to a server address would be late.
            sysctl(&router, &format!("net.ipv4.neigh.{key}.proxy_delay"), "0");
        }
        sysctl(&router, "net.ipv4.ip_forward", "1");
        let table = ["lookup", "100"];
        run(&[
            "ip", "-n", &router, "route", "add", "default", "dev", "tun0", "table", "100",
        ]);
        for ip in &ips {
            let h = format!("{ip}/32");
            run(&["ip", "-n", &router, "route", "add", &h, "dev", "srv"]);
            // Only traffic for the server: the router must not answer ARP
            // for the rest of the public segment.
            nsrun(
                &router,
                &[
                    "ip", "rule", "add", "iif", "wan", "to", &h, table[0], table[1],
                ],
            );
        }
        nsrun(
            &router,
            &["ip", "rule", "add", "iif", "srv", table[0], table[1]],
        );

        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU32::new(0));
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(4096);
        let mut reader = tun.try_clone().expect("dup tun");
        let mut writer = tun;
        let (s1, d1) = (stop.clone(), dropped.clone());
        let pump_in = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s1.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: reader.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut pfd, 1, 100) };
                if r <= 0 {
                    continue;
                }
                let Ok(n) = reader.read(&mut buf) else { break };
                if tx
                    .try_send((Instant::now() + one_way, buf[..n].to_vec()))
                    .is_err()
                {
                    d1.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let s2 = stop.clone();
        let pump_out = std::thread::spawn(move || {
            // One constant delay, so the queue is already in deadline order.
            while !s2.load(Ordering::Relaxed) {
                let (due, pkt) = match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(p) => p,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if writer.write(&pkt).is_err() {
                    break;
                }
            }
        });
        Ok((
            Host {
                ns,
                ip: ips[0],
                extra: ips[1..].to_vec(),
            },
            DelayHop {
                stop,
                threads: vec![pump_in, pump_out],
                dropped,
            },
        ))
    }
}
