//! Hot-path costs of the Flash crypto profile: sealing and opening a full
//! 1200-byte session packet in each framing, and DH per group.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rtmfp::proto::SeededRng;
use rtmfp::proto::crypto::{
    CryptoSettings, DhGroup, DhPrivateKey, Identity, InitiatorKeying, PacketCipher, SessionKeys,
    respond,
};

/// A keyed pair (initiator, responder) with the given responder settings.
fn pair(settings: CryptoSettings) -> (SessionKeys, SessionKeys) {
    let mut rng = SeededRng::new(1);
    let client = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
    let server = Identity::generate_ephemeral_server(&[DhGroup::G2], &mut rng).unwrap();
    let ik = InitiatorKeying::new(&client, &settings, server.certificate(), &mut rng).unwrap();
    let (skrc, r) = respond(
        &server,
        &settings,
        client.certificate(),
        ik.skic(),
        &mut rng,
    )
    .unwrap();
    (ik.finish(&skrc).unwrap(), r)
}

fn packets(c: &mut Criterion) {
    let framings = [
        ("default_key_checksum", None),
        ("session_checksum", Some(CryptoSettings::default())),
        ("session_hmac16_sseq", Some(CryptoSettings::require_all())),
    ];
    for (name, settings) in framings {
        let (mut tx, mut rx): (PacketCipher, PacketCipher) = match settings {
            None => (PacketCipher::default_key(), PacketCipher::default_key()),
            Some(s) => {
                let (i, r) = pair(s);
                (i.cipher, r.cipher)
            }
        };
        let plain_len = tx.max_plain_len(1200);
        let plain = vec![0x5au8; plain_len];
        let mut dg = vec![0u8; 1300];
        let mut out = vec![0u8; 1300];
        c.bench_function(&format!("seal_1200/{name}"), |b| {
            b.iter(|| tx.seal([1, 2, 3, 4], black_box(&plain), &mut dg).unwrap())
        });
        let n = tx.seal([1, 2, 3, 4], &plain, &mut dg).unwrap();
        if name.contains("sseq") {
            // A replayed sequence number is refused, so open a ring of
            // distinct datagrams and restart the receiver (a clone of its
            // initial state, amortised over the ring) at each wrap.
            const RING: usize = 4096;
            let mut tx = {
                let (i, r) = pair(CryptoSettings::require_all());
                rx = r.cipher;
                i.cipher
            };
            let fresh = rx.clone();
            let sealed: Vec<Vec<u8>> = (0..RING)
                .map(|_| {
                    let n = tx.seal([1, 2, 3, 4], &plain, &mut dg).unwrap();
                    dg[..n].to_vec()
                })
                .collect();
            let mut i = 0;
            c.bench_function(&format!("open_1200/{name}"), |b| {
                b.iter(|| {
                    if i == RING {
                        rx = fresh.clone();
                        i = 0;
                    }
                    let len = rx.open(black_box(&sealed[i]), &mut out).unwrap().len();
                    i += 1;
                    len
                })
            });
        } else {
            c.bench_function(&format!("open_1200/{name}"), |b| {
                b.iter(|| rx.open(black_box(&dg[..n]), &mut out).unwrap().len())
            });
        }
    }
}

fn dh(c: &mut Criterion) {
    for g in DhGroup::ALL {
        let mut rng = SeededRng::new(2);
        let peer = DhPrivateKey::generate(g, &mut rng).unwrap();
        c.bench_function(&format!("dh_keygen/group{}", g.id()), |b| {
            b.iter(|| DhPrivateKey::generate(g, &mut rng).unwrap())
        });
        let ours = DhPrivateKey::generate(g, &mut rng).unwrap();
        c.bench_function(&format!("dh_shared/group{}", g.id()), |b| {
            b.iter(|| ours.shared_secret(black_box(peer.public_key())).unwrap())
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = packets, dh
}
criterion_main!(benches);
