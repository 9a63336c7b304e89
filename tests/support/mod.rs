pub mod media;
pub mod netsim;
pub mod tc_fleet;

use rtmfp::proto::SeededRng;
use rtmfp::proto::crypto::{DhGroup, Identity};

/// A server identity like the reference tcserver's: ephemeral DH.
pub fn server_identity(seed: u64, groups: &[DhGroup]) -> Identity {
    Identity::generate_ephemeral_server(groups, &mut SeededRng::new(seed)).expect("seeded rng")
}

/// A client identity like Flash Player's: a static DH key per group.
pub fn client_identity(seed: u64, groups: &[DhGroup]) -> Identity {
    Identity::generate_static(groups, None, false, &mut SeededRng::new(seed)).expect("seeded rng")
}
