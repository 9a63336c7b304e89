//! Diffie-Hellman per group, before and after: key generation (2^x) and the
//! shared secret (y^x) with this crate's exponent lengths (160/192/224/304
//! bits), against crypto-bigint's generic heap-allocated exponentiation
//! (what `DhPrivateKey` ran before) and its fixed-size one, on equal inputs.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams, FixedMontyForm, FixedMontyParams};
use crypto_bigint::{BoxedUint, Odd, Uint};
use rtmfp::proto::SeededRng;
use rtmfp::proto::crypto::{DhGroup, DhPrivateKey};

/// crypto-bigint's fixed-size Montgomery exponentiation of `base^exp`.
fn fixed_size<const L: usize>(c: &mut Criterion, name: &str, p: &[u8], base: &[u8], exp: &[u8]) {
    let pad = |v: &[u8]| {
        let mut out = vec![0u8; p.len()];
        out[p.len() - v.len()..].copy_from_slice(v);
        Uint::<L>::from_be_slice(&out)
    };
    let params = FixedMontyParams::new_vartime(Odd::new(pad(p)).expect("odd prime"));
    let b = FixedMontyForm::new(&pad(base), &params);
    let e = pad(exp);
    let bits = (exp.len() * 8) as u32;
    c.bench_function(name, |x| {
        x.iter(|| black_box(&b).pow_bounded_exp(&e, bits).retrieve())
    });
}

fn dh(c: &mut Criterion) {
    let mut rng = SeededRng::new(3);
    for group in DhGroup::ALL.into_iter().rev() {
        let g = group.id();
        let p = group.prime();
        let a = DhPrivateKey::generate(group, &mut rng).expect("keygen");
        let b = DhPrivateKey::generate(group, &mut rng).expect("keygen");
        let x = {
            // `a`'s exponent is private to the crate: rebuild one of the same length.
            let mut v = vec![0x5a_u8; group.exponent_bits() as usize / 8];
            v[0] |= 0x80;
            v
        };

        c.bench_function(&format!("dh/g{g}/keygen"), |it| {
            it.iter(|| DhPrivateKey::from_exponent(group, black_box(&x)).expect("key"))
        });
        c.bench_function(&format!("dh/g{g}/shared_secret"), |it| {
            it.iter(|| a.shared_secret(black_box(b.public_key())).expect("secret"))
        });

        // Before: crypto-bigint's boxed Montgomery form, as DhPrivateKey used.
        let bits = group.bits();
        let pb = BoxedUint::from_be_slice(&p, bits).expect("fits");
        let params = BoxedMontyParams::new_vartime(Odd::new(pb).expect("odd"));
        let eb = BoxedUint::from_be_slice(&x, (x.len() * 8) as u32).expect("fits");
        let ebits = (x.len() * 8) as u32;
        let two = BoxedUint::from_be_slice(&[2], bits).expect("fits");
        let y = BoxedUint::from_be_slice(b.public_key(), bits).expect("fits");
        c.bench_function(&format!("dh/g{g}/keygen_boxed_before"), |it| {
            it.iter(|| {
                BoxedMontyForm::new(black_box(two.clone()), &params)
                    .pow_bounded_exp(&eb, ebits)
                    .retrieve()
            })
        });
        c.bench_function(&format!("dh/g{g}/shared_secret_boxed_before"), |it| {
            it.iter(|| {
                BoxedMontyForm::new(black_box(y.clone()), &params)
                    .pow_bounded_exp(&eb, ebits)
                    .retrieve()
            })
        });
        let name = format!("dh/g{g}/shared_secret_cb_fixed");
        match group {
            DhGroup::G2 => fixed_size::<16>(c, &name, &p, b.public_key(), &x),
            DhGroup::G5 => fixed_size::<24>(c, &name, &p, b.public_key(), &x),
            DhGroup::G14 => fixed_size::<32>(c, &name, &p, b.public_key(), &x),
            DhGroup::G16 => fixed_size::<64>(c, &name, &p, b.public_key(), &x),
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = dh
}
criterion_main!(benches);
