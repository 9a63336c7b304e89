//! Who is present where: each connected client's app, nickname and
//! address, for introductions (scoped to an app) and presence calls.
//!
//! Bounded by the connections themselves: one entry per connected session,
//! at most one name each; all of a session's entries go when it ends.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::flash::presence::name_key;
use crate::proto::Instant;
use crate::proto::endpoint::SessionHandle;

#[derive(Debug, Clone)]
pub struct Member {
    pub app: String,
    pub name: Option<String>,
    pub since: Instant,
}

#[derive(Debug, Default)]
pub struct Registry {
    members: HashMap<SessionHandle, Member>,
    /// (app, lower-cased name) → holder.
    names: HashMap<(String, String), SessionHandle>,
    /// Where each connected session is seen from: an introduction IHello
    /// comes from the initiator's server-session socket, so this names
    /// the initiator (and its app) without trusting anything it says.
    by_addr: HashMap<SocketAddr, SessionHandle>,
}

/// Why a name was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRefusal {
    NotConnected,
    Taken,
}

impl Registry {
    pub fn join(&mut self, h: SessionHandle, app: String, observed: SocketAddr, now: Instant) {
        self.leave(h);
        self.members.insert(
            h,
            Member {
                app,
                name: None,
                since: now,
            },
        );
        self.by_addr.insert(observed, h);
    }

    pub fn leave(&mut self, h: SessionHandle) {
        if let Some(m) = self.members.remove(&h)
            && let Some(n) = m.name
        {
            self.names.remove(&(m.app, name_key(&n)));
        }
        self.by_addr.retain(|_, v| *v != h);
    }

    pub fn moved(&mut self, h: SessionHandle, from: SocketAddr, to: SocketAddr) {
        if self.by_addr.get(&from) == Some(&h) {
            self.by_addr.remove(&from);
        }
        if self.members.contains_key(&h) {
            self.by_addr.insert(to, h);
        }
    }

    pub fn member(&self, h: SessionHandle) -> Option<&Member> {
        self.members.get(&h)
    }

    /// The connected session seen from `addr`.
    pub fn at(&self, addr: SocketAddr) -> Option<SessionHandle> {
        self.by_addr.get(&addr).copied()
    }

    /// Gives `h` the name (replacing its own earlier one), unless another
    /// client of its app holds it.
    pub fn set_name(&mut self, h: SessionHandle, name: &str) -> Result<(), NameRefusal> {
        let Some(m) = self.members.get_mut(&h) else {
            return Err(NameRefusal::NotConnected);
        };
        let key = (m.app.clone(), name_key(name));
        match self.names.get(&key) {
            Some(&holder) if holder != h => return Err(NameRefusal::Taken),
            _ => {}
        }
        if let Some(old) = m.name.replace(name.to_owned()) {
            self.names.remove(&(m.app.clone(), name_key(&old)));
        }
        self.names.insert(key, h);
        Ok(())
    }

    pub fn lookup(&self, app: &str, name: &str) -> Option<SessionHandle> {
        self.names.get(&(app.to_owned(), name_key(name))).copied()
    }

    /// The members of `app`, oldest first.
    pub fn in_app<'a>(&'a self, app: &'a str) -> Vec<(SessionHandle, &'a Member)> {
        let mut v: Vec<_> = self
            .members
            .iter()
            .filter(|(_, m)| m.app == app)
            .map(|(h, m)| (*h, m))
            .collect();
        v.sort_by_key(|(h, m)| (m.since, *h));
        v
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn names_held(&self) -> usize {
        self.names.len()
    }

    pub fn addresses_tracked(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn names_are_per_app_first_come_and_released() {
        let mut r = Registry::default();
        let t = Instant::ZERO;
        let (h1, h2, h3) = (SessionHandle(1), SessionHandle(2), SessionHandle(3));
        r.join(h1, "x".into(), a(1), t);
        r.join(h2, "x".into(), a(2), t);
        r.join(h3, "y".into(), a(3), t);
        assert_eq!(r.set_name(h1, "bob"), Ok(()));
        assert_eq!(r.set_name(h2, "BOB"), Err(NameRefusal::Taken));
        assert_eq!(r.set_name(h3, "bob"), Ok(()), "other app");
        assert_eq!(r.lookup("x", "Bob"), Some(h1));
        assert_eq!(r.lookup("y", "bob"), Some(h3));
        r.leave(h1);
        assert_eq!(r.lookup("x", "bob"), None);
        assert_eq!(r.set_name(h2, "bob"), Ok(()));
        // Renaming releases the old name.
        assert_eq!(r.set_name(h2, "carol"), Ok(()));
        assert_eq!(r.lookup("x", "bob"), None);
        assert_eq!(r.names_held(), 2);
        assert_eq!(r.at(a(2)), Some(h2));
        r.moved(h2, a(2), a(9));
        assert_eq!((r.at(a(2)), r.at(a(9))), (None, Some(h2)));
        r.leave(h2);
        r.leave(h3);
        assert!(r.is_empty());
        assert_eq!((r.names_held(), r.addresses_tracked()), (0, 0));
    }
}
