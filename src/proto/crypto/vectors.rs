//! Byte-exact vectors: the worked examples of spec 03 §13, real Flash Player /
//! Adobe Cirrus datagrams (spec 01 §11.1), rtmfp-cpp and MonaServer2/librtmfp
//! captures (shared/vectors), including full session-key vectors derived from
//! the shared secrets librtmfp printed.

use super::keying::{hmac, parse_component};
use super::*;
use crate::proto::rng::{Rng, SeededRng};
use crate::proto::wire::Reader;

fn h(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).unwrap()
}

/// Hands out scripted bytes, so keying reproduces the spec's exponents and
/// randomness exactly; panics if asked for more than scripted.
struct Scripted(Vec<u8>);
impl Rng for Scripted {
    fn fill(&mut self, d: &mut [u8]) {
        assert!(self.0.len() >= d.len(), "rng script exhausted");
        let rest = self.0.split_off(d.len());
        d.copy_from_slice(&self.0);
        self.0 = rest;
    }
}

/// Opens a startup datagram with the default key; returns (chunk type, payload).
fn open_startup(dg: &[u8]) -> (u8, Vec<u8>, Vec<u8>) {
    let mut out = vec![0u8; dg.len()];
    let plain = PacketCipher::default_key()
        .open(dg, &mut out)
        .expect("default key + checksum");
    let mut r = Reader::new(plain);
    let flags = r.u8().unwrap();
    assert_eq!(flags & 0x03, 0x03, "startup mode");
    if flags & 0x08 != 0 {
        r.u16().unwrap();
    }
    let typ = r.u8().unwrap();
    let len = r.u16().unwrap() as usize;
    (typ, r.bytes(len).unwrap().to_vec(), plain.to_vec())
}

/// IIKeying payload → (isid, cookie, cert, skic, signature).
#[allow(clippy::type_complexity)]
fn split_iikeying(p: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut r = Reader::new(p);
    let isid = r.bytes(4).unwrap().to_vec();
    let cookie = r.field().unwrap().to_vec();
    let cert = r.field().unwrap().to_vec();
    let skic = r.field().unwrap().to_vec();
    (isid, cookie, cert, skic, r.rest().to_vec())
}

/// RIKeying payload → (rsid, skrc, signature).
fn split_rikeying(p: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut r = Reader::new(p);
    let rsid = r.bytes(4).unwrap().to_vec();
    let skrc = r.field().unwrap().to_vec();
    (rsid, skrc, r.rest().to_vec())
}

/// RHello payload → certificate.
fn rhello_cert(p: &[u8]) -> Vec<u8> {
    let mut r = Reader::new(p);
    r.field().unwrap();
    r.field().unwrap();
    r.rest().to_vec()
}

// ---- spec 03 §13 ----------------------------------------------------------

const A_PRIV: &str = "ae784e6c06e468474c247d5358de411336e57d7290f7b13cd74df94b";
const B_PRIV: &str = "8d5af3996e6f4632f7ebd57c165ede087c5bc8fe234d57480d1edefb";
const A_PUB: &str = "73cc13a2587a7e940642c11afb73905ebc87e4c8c81bbff89f4b540753d13db026fd1decf878e46392506c95b5a63a39239d7109eece67cd18af5627ff8a39b1652957fb12dd99474763992510ddd2d9545425f93779dd46dadb2a56eb62c7ce250098a0edb34c4508d3e39cd3d6d087b7bf2849aa47d31332e432b129247433";
const B_PUB: &str = "1298cc5c6ee7b269823ccd798dbafbf024040931146dac8cc5bd743e056c270c419d74b756bc1f8e100ba4b3e299293d2bef82df3f036156f7914e3036ed3ea8a9807128fae88f66de1dc49161e051fc164f3c4e7bf51abd7a0a6f66c3cab81ffca3c3c832366b775b696d5c68661a2301154e6baf939712dfd3ad5b6ac9f79b";
const K_SHARED: &str = "1310a7a47351ae9375174f22608b25f7c31918b0f60e067e81f2753794d980296828b2e3d11d2236623b65400acc98e3c5bfb462791771e2735488a4cb593dd85ed922b872837067c1d06aa7d3201c7e993d4346df2a846dbfc3bd1b2a02728d4790968e02d80d08b40dd2adc02f9b46f95a2c42f254dbbee855189e87921f0d";

fn responder_cert() -> Vec<u8> {
    let mut c = h("010a410e");
    c.extend(0u8..0x40);
    c.extend(h("021502"));
    c
}

struct Worked {
    initiator: Identity,
    responder: Identity,
    skic: Vec<u8>,
    skrc: Vec<u8>,
    ikeys: SessionKeys,
    rkeys: SessionKeys,
}

/// Runs both halves of keying the way §13 describes; `responder_settings`
/// picks variant A (reference defaults) or B (require everything).
fn worked(responder_settings: CryptoSettings) -> Worked {
    let a = DhPrivateKey::from_exponent(DhGroup::G2, &h(A_PRIV)).unwrap();
    let initiator = Identity::from_static_keys(vec![a], None, false).unwrap();
    let responder = Identity::ephemeral_from_certificate(responder_cert()).unwrap();
    let mut irng = Scripted((0x40u8..0x80).collect());
    let ik = InitiatorKeying::new(
        &initiator,
        &CryptoSettings::flash_player(),
        responder.certificate(),
        &mut irng,
    )
    .unwrap();
    assert_eq!(ik.group(), DhGroup::G2);
    let skic = ik.skic().to_vec();
    let mut rrng = Scripted(h(B_PRIV));
    let (skrc, rkeys) = respond(
        &responder,
        &responder_settings,
        initiator.certificate(),
        &skic,
        &mut rrng,
    )
    .unwrap();
    assert!(rrng.0.is_empty() && irng.0.is_empty());
    let ikeys = ik.finish(&skrc).unwrap();
    Worked {
        initiator,
        responder,
        skic,
        skrc,
        ikeys,
        rkeys,
    }
}

fn variant_a_settings() -> CryptoSettings {
    // "The responder like the reference with defaults": reference SKRC layout.
    CryptoSettings {
        librtmfp_compatible_skrc: false,
        reference_exponents: true,
        ..CryptoSettings::default()
    }
}

#[test]
fn worked_dh_values() {
    let a = DhPrivateKey::from_exponent(DhGroup::G2, &h(A_PRIV)).unwrap();
    let b = DhPrivateKey::from_exponent(DhGroup::G2, &h(B_PRIV)).unwrap();
    assert_eq!(a.public_key(), h(A_PUB));
    assert_eq!(b.public_key(), h(B_PUB));
    assert_eq!(a.shared_secret(&h(B_PUB)).unwrap().as_bytes(), h(K_SHARED));
    assert_eq!(b.shared_secret(&h(A_PUB)).unwrap().as_bytes(), h(K_SHARED));
}

#[test]
fn worked_identities_and_epds() {
    let w = worked(variant_a_settings());
    assert_eq!(
        w.initiator.certificate(),
        [h("81021d02"), h(A_PUB)].concat()
    );
    assert_eq!(w.responder.certificate().len(), 71);
    assert_eq!(
        w.initiator.fingerprint().to_vec(),
        h("6fb0cf0a58d2578aaa8d390b2df038692c01353efea9554079d005c1d33740a3")
    );
    assert_eq!(
        peer_id_hex(&w.initiator.fingerprint()),
        "6fb0cf0a58d2578aaa8d390b2df038692c01353efea9554079d005c1d33740a3"
    );
    assert_eq!(
        w.responder.fingerprint().to_vec(),
        h("0d681aa9f99d46561c56a39a80294ac8683094a542a0ce606e0dc544fc67762b")
    );
    assert_eq!(
        w.initiator.canonical_epd().to_vec(),
        h("210f6fb0cf0a58d2578aaa8d390b2df038692c01353efea9554079d005c1d33740a3")
    );
    assert_eq!(
        w.responder.canonical_epd().to_vec(),
        h("210f0d681aa9f99d46561c56a39a80294ac8683094a542a0ce606e0dc544fc67762b")
    );
    let rc = Certificate::parse(w.responder.certificate()).unwrap();
    assert!(cert_selected_by(&rc, &w.responder.canonical_epd()));
    assert!(cert_selected_by(&rc, &epd_for_uri("rtmfp://example/app")));
    assert!(!cert_selected_by(&rc, &w.initiator.canonical_epd()));
    assert!(w.responder.selected_by(&epd_for_uri("rtmfp://example/app")));
    assert!(!w.initiator.selected_by(&epd_for_uri("rtmfp://example/app")));
}

#[test]
fn worked_components_and_keys_variant_a() {
    let w = worked(variant_a_settings());
    let mut skic = h("021d02410e");
    skic.extend(0x40u8..0x80);
    skic.extend(h("031a020a021e02"));
    assert_eq!(w.skic, skic);
    assert_eq!(w.skic.len(), 76);
    assert_eq!(w.skrc, [h("021e02031a021081020d02"), h(B_PUB)].concat());
    assert_eq!(w.skrc.len(), 139);

    // The derivation formulas with the spec's intermediate values.
    let k = h(K_SHARED);
    assert_eq!(
        hmac(&w.skrc, &w.skic).to_vec(),
        h("6a7aa902d4312fda261d5ffcd5337c4afcf41a59b5dcbc82d7e6eb2c233bbc18")
    );
    assert_eq!(
        hmac(&w.skic, &w.skrc).to_vec(),
        h("945dc22c56eb0d3571b9e7197dc14ccec37ba3cca0f16d1d7945cbff5dce5a92")
    );
    let i2r = hmac(&k, &*hmac(&w.skrc, &w.skic));
    let r2i = hmac(&k, &*hmac(&w.skic, &w.skrc));
    assert_eq!(
        i2r.to_vec(),
        h("00bbdd64631a335da1de060212debed1093ac6858428646328aaa5ac6da0a2c3")
    );
    assert_eq!(
        r2i.to_vec(),
        h("0b6059fcacd64d8897060441d1779b25cc4e8f24ebdbf8e60ce4125b89e6c3c3")
    );
    assert_eq!(
        hmac(&k, &*i2r).to_vec(),
        h("15fec4cbcf991898faef04461841db8c66ae087b708f1aadbba1ade659d10dab")
    );
    assert_eq!(
        hmac(&k, &*r2i).to_vec(),
        h("e773fbebeac9f8ddbb2b3083e775b149b4680db60fb52e19f36de8eed89b058e")
    );

    let inonce = h("83f32c7026d134d053e676fd5ab216872eced4d89e6774742e41256e7071c065");
    let rnonce = h("f89e02ec744c5ad47b94c437847af3bfa47db5b02f16cb0bac630d78a38eab98");
    assert_eq!(w.ikeys.near_nonce.to_vec(), inonce);
    assert_eq!(w.ikeys.far_nonce.to_vec(), rnonce);
    assert_eq!(w.rkeys.near_nonce.to_vec(), rnonce);
    assert_eq!(w.rkeys.far_nonce.to_vec(), inonce);
    for keys in [&w.ikeys, &w.rkeys] {
        assert_eq!(keys.group, DhGroup::G2);
        assert!(
            !keys.hmac_tx && !keys.hmac_rx && !keys.sseq_tx && !keys.sseq_rx,
            "variant A: case C"
        );
    }
}

#[test]
fn worked_handshake_chunks() {
    let w = worked(variant_a_settings());
    // IIKeying: 38 0119 | ISID | 40 cookie | 8104 cert | 4c skic | 58.
    let mut iik = h("0102030440");
    iik.extend(0x80u8..0xc0);
    iik.extend(h("8104"));
    iik.extend(w.initiator.certificate());
    iik.push(0x4c);
    iik.extend(&w.skic);
    iik.extend(SIGNATURE);
    let chunk = [&[0x38, 0x01, 0x19][..], &iik].concat();
    assert_eq!(
        chunk,
        h(
            "3801190102030440808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf810481021d0273cc13a2587a7e940642c11afb73905ebc87e4c8c81bbff89f4b540753d13db026fd1decf878e46392506c95b5a63a39239d7109eece67cd18af5627ff8a39b1652957fb12dd99474763992510ddd2d9545425f93779dd46dadb2a56eb62c7ce250098a0edb34c4508d3e39cd3d6d087b7bf2849aa47d31332e432b1292474334c021d02410e404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f031a020a021e0258"
        )
    );
    let rik = [&h("78009200000001810b")[..], &w.skrc, SIGNATURE].concat();
    assert_eq!(
        rik,
        h(
            "78009200000001810b021e02031a021081020d021298cc5c6ee7b269823ccd798dbafbf024040931146dac8cc5bd743e056c270c419d74b756bc1f8e100ba4b3e299293d2bef82df3f036156f7914e3036ed3ea8a9807128fae88f66de1dc49161e051fc164f3c4e7bf51abd7a0a6f66c3cab81ffca3c3c832366b775b696d5c68661a2301154e6baf939712dfd3ad5b6ac9f79b58"
        )
    );
}

#[test]
fn example_a1_session_checksum() {
    let mut w = worked(variant_a_settings());
    let plain = h("091234010000");
    let mut dg = [0u8; 64];
    let n = w.ikeys.cipher.seal([0, 0, 0, 1], &plain, &mut dg).unwrap();
    assert_eq!(dg[..n], h("5a935ec279f6f2ad2365ac6ef05542ed4ea2e74f"));
    let mut out = [0u8; 64];
    let got = w.rkeys.cipher.open(&dg[..n], &mut out).unwrap();
    assert_eq!(got, h("091234010000ffffffffffffffff"));
    // The initiator cannot open its own direction: wrong key.
    assert!(w.ikeys.cipher.open(&dg[..n], &mut out).is_err());
}

#[test]
fn example_a2_default_key_ihello() {
    let w = worked(variant_a_settings());
    let mut plain = h("0b0064300033");
    plain.push(0x22);
    plain.extend(w.responder.canonical_epd());
    plain.extend(0u8..16);
    let mut dg = [0u8; 80];
    let n = PacketCipher::default_key()
        .seal([0; 4], &plain, &mut dg)
        .unwrap();
    let want = h(
        "5368add831d7ad5d62bf00856f35fdbf73893d35310af310773e1ef0d5a7bb6a589c34ff121a959bfed6a9414ac0a660e75e32ab2c481d5d42f336031c277b9298fbe4b3",
    );
    assert_eq!(dg[..n], want);
    let mut out = [0u8; 80];
    let got = PacketCipher::default_key().open(&want, &mut out).unwrap();
    assert_eq!(&got[..plain.len()], &plain[..]);
    assert_eq!(got[plain.len()..], [0xff; 5]);
}

#[test]
fn variant_b_requires_hmac_and_sseq() {
    let mut w = worked(CryptoSettings {
        reference_exponents: true,
        ..CryptoSettings::require_all()
    });
    assert_eq!(w.skrc, [h("021e07031a071081020d02"), h(B_PUB)].concat());
    let k = h(K_SHARED);
    let i2r = hmac(&k, &*hmac(&w.skrc, &w.skic));
    let r2i = hmac(&k, &*hmac(&w.skic, &w.skrc));
    assert_eq!(i2r[..16], h("9d29a9defdb31fec085a3034782b89d8"));
    assert_eq!(r2i[..16], h("17117514758a7de149fa7417ac32db1a"));
    assert_eq!(
        hmac(&k, &*i2r).to_vec(),
        h("2142ab26834a2286bef21764e34ee740e3bd3afe3c86a94924f663192fff2247")
    );
    assert_eq!(
        hmac(&k, &*r2i).to_vec(),
        h("f0c196480ceba95d9da6cd110b9fcd10d8eaff1ee2728d2739a5f11ac2b66b94")
    );
    assert_eq!(
        w.ikeys.near_nonce.to_vec(),
        h("83f32c7026d134d053e676fd5ab216872eced4d89e6774742e41256e7071c065")
    );
    assert_eq!(
        w.ikeys.far_nonce.to_vec(),
        h("8d229753dbdddffb30c1c24c72f6893f5dd28a9270e4255697385650514950e8")
    );
    for keys in [&w.ikeys, &w.rkeys] {
        assert!(keys.hmac_tx && keys.hmac_rx && keys.sseq_tx && keys.sseq_rx);
    }
    assert_eq!(
        (w.ikeys.cipher.tag_len_tx(), w.ikeys.cipher.tag_len_rx()),
        (10, 16)
    );
    assert_eq!(
        (w.rkeys.cipher.tag_len_tx(), w.rkeys.cipher.tag_len_rx()),
        (16, 10)
    );

    // B1: initiator → responder, sseq 0, HMAC-10.
    let mut dg = [0u8; 64];
    let mut out = [0u8; 64];
    let n = w
        .ikeys
        .cipher
        .seal([0, 0, 0, 1], &h("091234010000"), &mut dg)
        .unwrap();
    let b1 = h("b3d4443b069c8efbb548cac18626fc3b8ed5b605d3b19d786252b469f13b");
    assert_eq!(dg[..n], b1);
    assert_eq!(
        w.rkeys.cipher.open(&b1, &mut out).unwrap(),
        h("091234010000ffffffffffffffffff")
    );
    assert_eq!(
        w.rkeys.cipher.open(&b1, &mut out),
        Err(CryptoError::ReplayedSseq)
    );

    // B2: responder → initiator, sseq 0, HMAC-16.
    let n = w
        .rkeys
        .cipher
        .seal([1, 2, 3, 4], &h("0e2000123441 0000"), &mut dg)
        .unwrap();
    let b2 = h("7aed77d2515be1d52ab495039afbd4e399374b724a6733f4fce0f019adfa9c678f508964");
    assert_eq!(dg[..n], b2);
    assert_eq!(
        w.ikeys.cipher.open(&b2, &mut out).unwrap(),
        h("0e2000123441 0000 ffffffffffffff")
    );
    let mut bad = b2.clone();
    bad[20] ^= 0x80;
    assert_eq!(
        w.ikeys.cipher.open(&bad, &mut out),
        Err(CryptoError::BadHmac)
    );
    // The next packets carry sseq 1.
    assert_eq!(w.ikeys.cipher.next_sseq(), Some(1));
}

// ---- real captures ------------------------------------------------------
const FLASH_IHELLO: &str = "7ec60dab48a2a66b3664abc0af23e0c89634118f0d423863f988da53ac9c2f0bacbfb1238447bf5b9ff305faeb82f6d31eafee29";
const CIRRUS_RHELLO: &str = "5058eeb6976d54b1c735ba077a6681cf62b4dd4ac87380cdbc7b27389d103c775cc37804a971c3c4dbd7ef0c292072ec3ef11ecc619910583e7465f5b31aed1f646481798027825bf160904cec0829a6f0c29e34d3d0dd067c44730eb79713aa4fdaa83fda1538ef93f3f48850faa50787c29afb979670571e14d1f20f6763216740013a41ab9311899e4437e3a6a253aeb88857df19b7f0fd447566677a00d763e5c40404f3894fdb534842655806f6c97317e4";
const FLASH_IIKEYING: &str = "24d163c310d26a8b340309480edf2a238938f2c43d76c6f4d4b86ff12fa9799fba8c7dbde871b0643337ad3e2ece22af6683acc05b7a866b23ca6da092fdf3ac0a1df7665dcfd08264466d143d3fe925e63ea52965a632dba58d0cf36e6590d4392fe4c1ac962b8e47f9c340e2d971499f28c2483ed787bae2b9d0c57790880ccc5ab86c9e2ecc01053a763e16b67d6d35493e82cb9831027240f5b544095c2688aebdc8017ee6229e856796d640df1d2e8fdbac60a00cf6e6f805968f0f23e9322e5d34239ea6fc6b91beba9d3e00039694e47084afdd111e083d449b2ca01c04d2a155b9da5bc71188049d5cbfd7ec7f2ddbb8f7166d26e1f72b89cde81eedb88a93d24f631e41123e4a3efda90c2e6f0f6ed2cc8d9dd0754b866db1c33d24ad2821a4d80bd0910460caa79d3a7a785a0d6c19";
const CIRRUS_RIKEYING: &str = "7dfed0ffa3894cd3dc779c2c80c96bff51d010f42e180422a1a7c8b077242484b7317faa0263e86257aef72b19b7377f3c7161e6661b8d88cc6353b1368855a171c8d6678a252c43da691bf739288e824e328b75daf1eeb6617feb06f0fdd9631afc8e27cad5d3eab99c0d696ecc0954b56602f14d08bfd8428c42e494864e29b9340975b4c591c5c51d7624e40f51b9cf3075172a606d47b68813cb03a93baab0cbff16";
const CPP_RHELLO: &str = "3cf66fd5370978360bff17e36f3e09123068e931b640cce926f7d95d7bb2a0c0b62012673d46752d4f78ab5b4ace9f12953c80325f1b1510986274f39be0c0b7cc41be3df2827a4d1155f2c87594d8c7dcbd33b1b52b7ee083313b57e7f54b296ac8da73455a04d115b2566d8dc2688322e9c8fa3add841af2e2d60a96a2332c6a07c8c0338c83f87ee2339eafaead4a9695561727de56ce050226416ffaabbce1b147b8b52d3eae83087091ed34dafdbe103c55";
const CPP_IIKEYING: &str = "427ce305349b5f4776e7bc422f58aa69ca060d53b7d01d99bcbc2ba5df2c4e37831e28d1c3d3e08f5e7328c434a37ce41b8ef91a630f99b86467d83ba690ec36be5fce60401d6dcab8c8bef1cc57b6bb9e0f526d5d80d837e17ac0ac2d22257a310d8b1ebed65cd9bd803da46259f5f536111f8dae61bb86ee2bf76dd78c0f8cc9690a3659a3290888f348f00fe695be736140df9ce4588f7f571fea91e6da8197d926803fb2002bc6fadaa88fc5ec3c9805c7af961e7ce49c38dea9b615b362f93e0a067fd3254d1032050edecd7564eddc750cd7e2843121fcf29fd977b2d10c19c0b12c42a520aa4d7c15ea4cd7b049b428a9e6265b16605f8e54a7047cb559e286020c2890f7b412e6192c8ba9a21370dffe09919de8cb842709fc6a45923ac2a69383777a146fc9b6e6dfc753b755829f4a203486ac9b0d8667db5f29e36779fab08397b77213fcc61a44137b5d6c061e503f70a81f95fd6d7316641b72b753de896bbd565c9300a94b1061ad30ff3f1e1338ffb799436c4479b527f098d3b71c24949bc8693e9e8ec9b5e15a4e9d5bbbe45c72d3e0b93f5f9159645ee8b4c1d68bc00cbb33659f4a76af17e369c28cc35dc8cd5f7c947a95f105b68328820fe4eaa2b33d0d186b27e39b0379ffc1f0d1acd4aa759c4855f2b6e24bd9728c350387b3a8ae0309ff224d3a0ed94c445859f52c73c243a7c775c91235619a73db26a647a65edd68a287e4284bd85080917f57fbe1174813252f8f78b360289b4e1cab6df7a37fde2752bc7d46c2da9b736be67c4b78b720b468a3d97cbd4021a0f36eb88e7f11a6e82098f8e152e806eb93f49d4f276f37cd833ee8c2d71b7cd68180030f6f1b0fd95b83f4168f752ccabec87a387a9a7cd1d8c401529305a897ab08018540c720e95dabc767ad802316ea34324fda73b898e2aec04443270a2ac3c023f025efac515c9e041c0945a20e511bb7dd134d8de52fa1da6d53474e468dcbd428c888e98319f3fa9d3babe27d9cf64b7057d15361ec451e965fc8aa1a08a2662515b08afea5cb0690ae7674ba5215a03ba9dc940d3cc9d93f8c8168aa9223fcc7b349f11ccdeeda0e6c0b10c56e319879e319e0eb26f51bdee1a3ac459a048e763200c1988c16de5aa8db0ef8f6a3c142e9d4d0d9a9dcc39ffcebcc653a20d5cd2726accf34483e42cc1fac8e3efc224fc5e283beb75668636cfbda7ba21376aa60ba59bb262c7522dba4bf066c30e682e608df32db246ef1041bba748d90c562f69b043e313e19875ef6715defaf6b694621ffcfea8d2b92d04aa73d10e816beb7469de1c173be62932a964e3021da8561fbed6257a62fe71f47b368cc3ec4d03fcc230f358e5ff29428a6d94c7b903e00ade51bdf63ee63787b535de5defad9bd465360cb3a6c6cb268afeea8f2335c60c907010e0500d3e23e97fa58a0f1ce51fbfafb6c7a8f89bd37ff26cae1860891bb37b26423c6d88ea9c4598cfff776261f787b9dadecd7f6926fde9087";
const CPP_RIKEYING: &str = "20818174efa4a075cd252101361b3d57e0dce8da52fb7af2090e618b976eee6bad976ad2110d58d53976323e9b423d5d6ee63ec3ebcf2b2e0cf9805f865259a12cf18876d25e2ae9e97ae139fd64439520741aeacaddeaa2a944d220ad1a75dd85924d3fe3fede3de94432f67932bd71bb369b386fa437a07433605f9da49ca70b9e6fd810b85c432d40035cb2f5adab7eca7fd2c5e12a5201ed121157c03f9d725e64f4b0113d869444e4fdf968ab2ba36814b517d5a673738056dd8c5bb2942844d9da91f6fcfdf63f632fc711d43289d4d13735821de1432b8b8c0fea21fbed157a1c477bc395844176833063eedc53d6bdb03dd03b2a88fc7067921329781a8c7e782220b46d0a229c440a0c3d3b90c00c303970a61f67d6bb0c9b19d79aa7a6836dea7f74b7402344e61955c40bd35a847a9be75325c54428d5f1a78b66874ad7e445e904f5c69da8c9e9a052021db593ecb833a96edca2167b2c60937c49be721b98ef38c9c3912db95a25cc02ffb5074436125095f3a00cb26db8eda28fe5cbb5bcd7069f49cc4cb8e9b83db0b4a7c7ccf32f6ad3229db98e44b12f43f84cdfe008ab825a610e2d691d6d7069018a3c625978d0f460ebeb2b344cc302ece7c19836d7fba43ef5a6383277695b4ef1ea3a7dd34df88950f1dcbc66898104a9fb84eb89262562b7d8b6f205a7c969d3e5984d46b69382fcd13c879c1d565d3c4ad320c0b149af8ec3aec2040fb11236483ac7ca529175301db84a37a8817dbce628";
const MONA_IIKEYING: &str = "b20037c2777e2fd3c57e18114215111190342960cdde6b40f370cd6b4bbc479493119b0f30f84b4905d90d531a4aec26208dff208c47f1850289f8b9bb2c5dff5af1881fae3cba682c82880f2f9a8d8a52f3d9dc5a44dd1fdcf173da52122bf91efbfb83c02f0c8631cb6c2bc37675081a52f7e3dbe0eba48826d76a4e26ca860dff80888d0731a93068a3719e1bf5dc5cbb64b295a344cad7a99f9610b0c2156a17b3f0288ddd86e661cbcc18d17bb93b0cb0e5c6b8e57b4cba4688b5bdd42268e885368cba96c8683bf9af2446b0edcbbcbc22e9e4997d35d290bae31464ca494a0f7fdb8d4bd3fed392f28a563d47b7b0bdca454413f6c830528a357bed1e23b33410fb609e6fd751f0a7bf0c6347f7cde93011118d6805b9ac1caa7297103ca4ec2dddfa057b5c9bd4b05ad841bfd157829e";
const MONA_RIKEYING: &str = "4c7a7af42bd2d66665a8ac923ec707af4fd0324bb8abe46bcabc7edf54af2bf6115ef63f9f05537bf170552c34e98975d3af19b90992cfbd60c8cbf1472ec06ebd89d2e55b66a83b623a7fc629e243d2d10fe0d512bda3212f53cef7f52912acfd46a00cf945d76813a488d156d7a1d8766b96f654b77942ae3d480f94c29ec56c50e8945b15dceead8a23e4f1bfce424253c6bd559583067f3b97ac29aabdd7249736f2";
const MONA_FIRST: &str = "7bb80002a759e3b6dce1e3b569d58b42d04146e53c48157f6b451791f9b916a105ff9860f5b160fbbf68938fd9ffa0295b57f436b29ca13d10b6ebb379386e76100a5384ad3e6b43f2ec925379514d7e1e6dbcc05c969c69e91323fe21ad96784a45176937f6d51d019ef11ccf32f6fee19e60351ae3e6e3403b98f0c2af52b6f9e2b0cd1d8800c7f696bafe11017ce37ea6cb09fa544846654cb7f94945c2a5ec671a3ee5791b9f50d60804c45bea6ad5a88c896d662432b4f6d467669263fcc38ab425ab89f079b04e51a5742ab91503041a2d3af6e63a36c3ba760b0e6c16fe92ad1d6a9284fb6da83997cc8a485aa33175cad3f19bb7a6d2952ad16028b85ddbe1fa6f53a767fccdca9acbecde78c993e6bd";
const MONA_REPLY: &str = "a52388c42ac9e98b8dea614f67b3e2663d24819f";
const MONA_PLAYER_K: &str = "40e8436b1a24ad8bdd27e2db2ae0491291a46aa6e631744a6723dcd40c8907d75f22d61e0d43869f746c7e96d5c51e3991233893de6312194340b36140dced7625347f3670c0dbd3af35ec985ec440b344bd9f306e0d0c89cc1774925f45f47d3a4c2abbb3369558eac21b13a58f9ef6c3d7311d0b45f679c98d914260961fe5";
const P2P_RHELLO: &str = "d1aa213f28797a28f9d35b17e386ff4dcc59b5ebe62b44db68496355abcebf79a62f5bbcc91c3d07ceabc10a1ab69cd823d1609e708c8ac31637e00fad725c94eab699ac9aac20a62619fcfc206dc36b8ba8ed9682430f86319d6397f3535ddf5d3f065133927d5eaee87be72664c35dab8a6ec538e5c652567834703eed6d3536c93b75a193e00ad4a5988960971f9c393cfc70db4a75926784530fd593ff283e0b2899dbbce595857f8f901cc400aa03dd8dca9a3144a0f59dbc51cb4ea157fe3efe1f3df2e63076fd78040156ef91f034b30c1dfce8c1377c7141875263c1d6cb6b6a";
const P2P_IIKEYING: &str = "58092c8040aaafa118a383218268441d76b044f7f686a3b64d9ddbd3fd32774790631c1e92e6fb8581e3aafa8b133d45b44b6676d3382a77870cda156881b8ebef917d81eecdaf60bf3c78b038e10306b6b12bc4c05d9631a7205d0b44ef274a61852c9843cbbb941e471c9d550d4fe3f0c0c47edeb6981b62fa9d2bce6c52763510f4d417164fe607e8b8d3a0dc034bf09fcd5d30a7924f090e9451adb38ae35b2d13b27b180f4978df6131b058888e8b276127b4e36d5a1870989a681e5e46884323bbe624e39ade9a34e02da7dcdc40e442005f995615dbbbcbea0236daef234c116e87150b83ed596ca9196c600e85792209c60a863a701baa5c0e213afcd061a884c68a4c18a06f1a55ca98fc0439fc360237d13e8c02ca51d1f43c0f03066b7f84bf18375e53db89a188d860ed1f61f568";
const P2P_RIKEYING: &str = "4d58c3388aacd02ec4f413166ddaa26e79b88d2ec5c93788f3ee1bbd538ea20a241a069ccd35da3a946f0546042361459e57d1494697babc0422fbe0e1201d0651991aa10e30f43ce4d07711ca252f6e548b1891f6449cc8fc08da4b1f934ef1022e5164";
const P2P_FIRST: &str = "2ff6cf78c27c4624ee8a895c01ef67f095e385bd33392485e250b47e5f04f430008762b33136fa0df6c31472fb5c57935bff4c30658f3797e1efc4209e2158eacdcd42f7";
const P2P_REPLY: &str = "b2081cbedfbb40f56eb35c4b9b2668275eb9fd35";
const P2P_K: &str = "bfba3db0da25d97e7ae08dbf2d622f8e35a03e3c5c8f4227f18b1b9b3859a4fa50aa5148c9667169deaa37850214a07a8cb6d1702757dddaca24d509d500e30cc59ab33c37a8c8a69914c903df41b71780a059d67ac88983cf35b96afa6152f15cf8ec0e244cc2ddb40c110d24d3d5314d1614223ae9c5f4d4f438bcbc88f38e";

#[test]
fn flash_cirrus_datagrams_spec01_11_1() {
    let (t, p, plain) = open_startup(&h(FLASH_IHELLO));
    assert_eq!(t, 0x30);
    assert_eq!(plain[..3], h("0b132d"));
    assert_eq!(p[..23], h("16150a72746d66703a2f2f63632e72746d66702e6e6574"));
    let epd = &p[1..23];
    assert_eq!(
        Epd::parse(epd).unwrap().ancillary(),
        Some(&b"rtmfp://cc.rtmfp.net"[..])
    );

    let (t, p, _) = open_startup(&h(CIRRUS_RHELLO));
    assert_eq!(t, 0x70);
    let cert = rhello_cert(&p);
    let c = Certificate::parse(&cert).unwrap();
    assert!(!c.is_static() && c.accepts_ancillary());
    assert_eq!(
        c.groups().collect::<Vec<_>>(),
        [DhGroup::G2, DhGroup::G5, DhGroup::G14]
    );
    assert!(cert_selected_by(&c, epd));

    let (t, p, _) = open_startup(&h(FLASH_IIKEYING));
    assert_eq!(t, 0x38);
    let (isid, _, cert, skic, sig) = split_iikeying(&p);
    assert_eq!(isid, h("02000000"));
    assert_eq!(sig, SIGNATURE);
    let c = Certificate::parse(&cert).unwrap();
    assert!(c.is_static());
    assert_eq!(c.static_key(DhGroup::G2).map(<[u8]>::len), Some(128));
    assert_eq!(c.groups().collect::<Vec<_>>(), [DhGroup::G2]);
    let comp = parse_component(&skic).unwrap();
    assert_eq!(
        (comp.group_select, comp.hmac, comp.sseq),
        (Some(2), Some((0x02, 10)), Some(0x02))
    );
    assert!(validate_public_key(DhGroup::G2, c.static_key(DhGroup::G2).unwrap()).is_ok());

    let dg = h(CIRRUS_RIKEYING);
    assert_eq!(super::cipher::unscramble(&dg), [2, 0, 0, 0]);
    let (t, p, _) = open_startup(&dg);
    assert_eq!(t, 0x78);
    let (rsid, skrc, sig) = split_rikeying(&p);
    assert_eq!(rsid, h("45020000"));
    assert_eq!(skrc.len(), 139);
    assert_eq!(skrc[..11], h("031a0000021e0081020d02"));
    assert_eq!(sig, SIGNATURE);
    assert!(validate_public_key(DhGroup::G2, &skrc[11..]).is_ok());
}

#[test]
fn rtmfp_cpp_tcserver_handshake() {
    let (t, p, _) = open_startup(&h(CPP_RHELLO));
    assert_eq!(t, 0x70);
    let cert = rhello_cert(&p);
    let c = Certificate::parse(&cert).unwrap();
    assert!(!c.is_static());
    assert_eq!(
        c.groups().collect::<Vec<_>>(),
        [DhGroup::G16, DhGroup::G14, DhGroup::G2]
    );
    // tcconn log: "fingerprint: 081b6425…" for the server.
    assert_eq!(
        peer_id_hex(&c.fingerprint()),
        "081b6425477dbe0fe188822ea8290073078d408fe02b0426b6b059cda1a59b15"
    );

    let (t, p, _) = open_startup(&h(CPP_IIKEYING));
    assert_eq!(t, 0x38);
    let (_, _, cert, skic, sig) = split_iikeying(&p);
    assert_eq!(sig, SIGNATURE);
    let c = Certificate::parse(&cert).unwrap();
    assert!(c.is_static());
    assert_eq!(
        c.groups().collect::<Vec<_>>(),
        [DhGroup::G16, DhGroup::G14, DhGroup::G2]
    );
    assert_eq!(c.static_key(DhGroup::G16).map(<[u8]>::len), Some(512));
    // tcconn log: "my fingerprint: 33940b2f…".
    assert_eq!(
        peer_id_hex(&c.fingerprint()),
        "33940b2f94c0ec07b645b63be6c53b9b78d3344e7230f305e09904f1393d6441"
    );
    let comp = parse_component(&skic).unwrap();
    assert_eq!(comp.group_select, Some(16), "strongest common group");
    // tcconn too runs with SND|SOR|REQ by default.
    assert_eq!(comp.hmac, Some((NEG_SND | NEG_SOR | NEG_REQ, 16)));

    let (t, p, _) = open_startup(&h(CPP_RIKEYING));
    assert_eq!(t, 0x78);
    let (_, skrc, _) = split_rikeying(&p);
    let comp = parse_component(&skrc).unwrap();
    // tcserver requires both features (flags 0x07) and is ephemeral in group 16.
    assert_eq!(comp.hmac, Some((NEG_SND | NEG_SOR | NEG_REQ, 16)));
    assert_eq!(comp.sseq, Some(NEG_SND | NEG_SOR | NEG_REQ));
    let (g, key) = comp.ephemeral.unwrap();
    assert_eq!(g, 16);
    assert!(validate_public_key(DhGroup::G16, key).is_ok());
}

/// Derives both sides' keys from a librtmfp-printed shared secret and opens
/// the first session packet each way.
fn mona_session(iik: &str, rik: &str, k: &str, first: &str, reply: &str) -> (Vec<u8>, Vec<u8>) {
    let (_, p, _) = open_startup(&h(iik));
    let (_, _, _cert, skic, _) = split_iikeying(&p);
    let (_, p, _) = open_startup(&h(rik));
    let (_, skrc, _) = split_rikeying(&p);
    assert_eq!(skrc[..7], h("031a0000021e00"), "librtmfp/Mona SKRC prefix");
    let k = SharedSecret::from_bytes(&h(k));
    let off = keying::Neg {
        send: false,
        recv: false,
        want: false,
    };
    let mut ikeys = keying::derive(&k, &skic, &skrc, DhGroup::G2, off, off, 16, 0);
    let mut rkeys = keying::derive(&k, &skrc, &skic, DhGroup::G2, off, off, 16, 0);
    let mut out = vec![0u8; 1500];
    let up = rkeys
        .cipher
        .open(&h(first), &mut out)
        .expect("first I→R session packet")
        .to_vec();
    let down = ikeys
        .cipher
        .open(&h(reply), &mut out)
        .expect("R→I reply")
        .to_vec();
    // Re-sealing the plaintext reproduces the captured datagram exactly.
    let sid = super::cipher::unscramble(&h(first));
    let mut dg = vec![0u8; 1500];
    let n = ikeys.cipher.seal(sid, &up, &mut dg).unwrap();
    assert_eq!(dg[..n], h(first));
    (up, down)
}

#[test]
fn monaserver2_player_session_keys() {
    let (up, down) = mona_session(
        MONA_IIKEYING,
        MONA_RIKEYING,
        MONA_PLAYER_K,
        MONA_FIRST,
        MONA_REPLY,
    );
    // player.out: the NetConnection connect on flow 2, TC metadata `00 54 43 04 00`.
    assert_eq!(up[5..19], h("10010180020101050054430400 00"));
    assert!(up.windows(7).any(|w| w == b"connect"));
    assert_eq!(down[5..], h("5100050283fe7f01ff"));
}

#[test]
fn librtmfp_p2p_static_static_session_keys() {
    // The P2P responder (librtmfp imitating Flash) answers with only randomness.
    let (_, p, _) = open_startup(&h(P2P_RHELLO));
    let rcert = rhello_cert(&p);
    let rc = Certificate::parse(&rcert).unwrap();
    assert!(rc.is_static());
    let (_, p, _) = open_startup(&h(P2P_RIKEYING));
    let (_, skrc, _) = split_rikeying(&p);
    assert_eq!(skrc.len(), 73);
    assert_eq!(skrc[..9], h("031a0000021e00410e"));
    let (up, down) = mona_session(P2P_IIKEYING, P2P_RIKEYING, P2P_K, P2P_FIRST, P2P_REPLY);
    assert!(up.windows(4).any(|w| w == b"play"));
    assert_eq!(down[5..], h("5100050283fe7f01ff"));
}

#[test]
fn precomputed_secret_keys_as_the_plain_path() {
    // Two static peers (group 14, as peer sessions prefer): the initiator's
    // secret computed while the IIKeying travels gives the same keys as one
    // computed from the RIKeying, and those agree with the responder's.
    let mut rng = SeededRng::new(21);
    let s = CryptoSettings::default();
    let a = Identity::generate_static(&[DhGroup::G14], None, false, &mut rng).unwrap();
    let b = Identity::generate_static(&[DhGroup::G14], None, false, &mut rng).unwrap();
    let mut ik = InitiatorKeying::new(&a, &s, b.certificate(), &mut SeededRng::new(5)).unwrap();
    let plain = InitiatorKeying::new(&a, &s, b.certificate(), &mut SeededRng::new(5)).unwrap();
    assert!(ik.can_precompute());
    ik.precompute();
    assert!(!ik.can_precompute());
    let (skrc, mut rkeys) = respond(&b, &s, a.certificate(), ik.skic(), &mut rng).unwrap();
    let mut early = ik.finish(&skrc).unwrap();
    let late = plain.finish(&skrc).unwrap();
    assert_eq!(early.near_nonce, late.near_nonce);
    assert_eq!(early.far_nonce, late.far_nonce);
    cross_check(&mut early, &mut rkeys);
    // A responder without a static key (a server) leaves nothing to precompute.
    let server = Identity::generate_ephemeral_server(&[DhGroup::G14], &mut rng).unwrap();
    let ik = InitiatorKeying::new(&a, &s, server.certificate(), &mut rng).unwrap();
    assert!(!ik.can_precompute());
}

// ---- our responder facing Flash-class peers ------------------------------

#[test]
fn librtmfp_compatible_skrc_layouts() {
    let mut rng = SeededRng::new(11);
    let flash = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
    assert_eq!(flash.certificate()[..4], h("81021d02"));
    let settings = CryptoSettings::default();

    // Ephemeral server (groups 16, 14, 5, 2) keyed by a Flash-like client.
    let server = Identity::generate_ephemeral_server(&DhGroup::ALL, &mut rng).unwrap();
    let ik = InitiatorKeying::new(
        &flash,
        &CryptoSettings::flash_player(),
        server.certificate(),
        &mut rng,
    )
    .unwrap();
    assert_eq!(ik.skic()[..3], h("021d02"));
    let (skrc, mut rkeys) =
        respond(&server, &settings, flash.certificate(), ik.skic(), &mut rng).unwrap();
    assert_eq!(skrc.len(), 139);
    assert_eq!(skrc[..11], h("031a0000021e0081020d02"));
    let mut ikeys = ik.finish(&skrc).unwrap();
    assert_eq!(ikeys.near_nonce, rkeys.far_nonce);
    cross_check(&mut ikeys, &mut rkeys);

    // Static P2P responder: only randomness after the prefix, 73 bytes.
    let peer = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
    let ik = InitiatorKeying::new(
        &flash,
        &CryptoSettings::flash_player(),
        peer.certificate(),
        &mut rng,
    )
    .unwrap();
    let (skrc, mut rkeys) =
        respond(&peer, &settings, flash.certificate(), ik.skic(), &mut rng).unwrap();
    assert_eq!(skrc.len(), 73);
    assert_eq!(skrc[..9], h("031a0000021e00410e"));
    let mut ikeys = ik.finish(&skrc).unwrap();
    cross_check(&mut ikeys, &mut rkeys);

    // Static *server* (stable fingerprint): librtmfp connecting to a server
    // reads the key at SKRC offset 11 and needs 139 bytes, so the static
    // group-2 key is repeated there; our initiator keys with the
    // certificate's copy and must agree.
    let sserver = Identity::generate_static(&DhGroup::ALL, None, true, &mut rng).unwrap();
    let ik = InitiatorKeying::new(
        &flash,
        &CryptoSettings::flash_player(),
        sserver.certificate(),
        &mut rng,
    )
    .unwrap();
    let (skrc, mut rkeys) = respond(
        &sserver,
        &settings,
        flash.certificate(),
        ik.skic(),
        &mut rng,
    )
    .unwrap();
    assert_eq!(skrc.len(), 139);
    assert_eq!(skrc[..11], h("031a0000021e0081020d02"));
    let g2 = sserver.static_key(DhGroup::G2).unwrap().public_key();
    assert_eq!(&skrc[11..], g2);
    let mut ikeys = ik.finish(&skrc).unwrap();
    cross_check(&mut ikeys, &mut rkeys);

    // A Flash-like initiator that requests HMAC gets the reference layout.
    let req = CryptoSettings {
        hmac_recv_required: true,
        ..CryptoSettings::flash_player()
    };
    let ik = InitiatorKeying::new(&flash, &req, server.certificate(), &mut rng).unwrap();
    let (skrc, mut rkeys) =
        respond(&server, &settings, flash.certificate(), ik.skic(), &mut rng).unwrap();
    assert_eq!(skrc[..3], h("021e02"));
    assert_eq!(skrc[3..7], h("031a0610"));
    let mut ikeys = ik.finish(&skrc).unwrap();
    assert!(ikeys.hmac_rx && rkeys.hmac_tx && !ikeys.hmac_tx);
    cross_check(&mut ikeys, &mut rkeys);
}

fn cross_check(i: &mut SessionKeys, r: &mut SessionKeys) {
    let mut dg = [0u8; 256];
    let mut out = [0u8; 256];
    for round in 0..3u8 {
        let n = i
            .cipher
            .seal([0, 0, 0, 7], &[0x09, 0, round, 0x01, 0, 0], &mut dg)
            .unwrap();
        assert_eq!(
            r.cipher.open(&dg[..n], &mut out).unwrap()[..6],
            [0x09, 0, round, 0x01, 0, 0]
        );
        let n = r
            .cipher
            .seal([0, 0, 0, 8], &[0x0a, 0, round], &mut dg)
            .unwrap();
        assert_eq!(
            i.cipher.open(&dg[..n], &mut out).unwrap()[..3],
            [0x0a, 0, round]
        );
    }
}

#[test]
fn group_choice() {
    let mut rng = SeededRng::new(12);
    let ours = Identity::generate_static(
        &[DhGroup::G16, DhGroup::G14, DhGroup::G2],
        None,
        false,
        &mut rng,
    )
    .unwrap();
    let s = CryptoSettings::default();
    let reference =
        Identity::generate_ephemeral_server(&[DhGroup::G16, DhGroup::G14, DhGroup::G2], &mut rng)
            .unwrap();
    let ik = InitiatorKeying::new(&ours, &s, reference.certificate(), &mut rng).unwrap();
    assert_eq!(ik.group(), DhGroup::G16, "strongest common group");
    let (skrc, mut r) = respond(&reference, &s, ours.certificate(), ik.skic(), &mut rng).unwrap();
    let mut i = ik.finish(&skrc).unwrap();
    cross_check(&mut i, &mut r);

    // Cirrus / Mona certificate (groups 2, 5, 14): Mona computes with group 2
    // whatever we select, so group 2 it is.
    let (_, p, _) = open_startup(&h(CIRRUS_RHELLO));
    let ik = InitiatorKeying::new(&ours, &s, &rhello_cert(&p), &mut rng).unwrap();
    assert_eq!(ik.group(), DhGroup::G2);
    // Another list with 14 in it gets 14, the best we hold a static key for.
    let other =
        Identity::generate_ephemeral_server(&[DhGroup::G5, DhGroup::G14, DhGroup::G2], &mut rng)
            .unwrap();
    let ik = InitiatorKeying::new(&ours, &s, other.certificate(), &mut rng).unwrap();
    assert_eq!(ik.group(), DhGroup::G14);
    // A Flash peer (group 2 only).
    let flash = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
    let ik = InitiatorKeying::new(&ours, &s, flash.certificate(), &mut rng).unwrap();
    assert_eq!(ik.group(), DhGroup::G2);
    let (skrc, mut r) = respond(&flash, &s, ours.certificate(), ik.skic(), &mut rng).unwrap();
    let mut i = ik.finish(&skrc).unwrap();
    cross_check(&mut i, &mut r);
    // Static identity without a key for the only common group: ephemeral fallback.
    let g5only = Identity::generate_ephemeral_server(&[DhGroup::G5], &mut rng).unwrap();
    let ik = InitiatorKeying::new(&ours, &s, g5only.certificate(), &mut rng).unwrap();
    assert_eq!(
        (ik.group(), &ik.skic()[..3]),
        (DhGroup::G5, &[0x81, 0x42, 0x0d][..])
    );
    let (skrc, mut r) = respond(&g5only, &s, ours.certificate(), ik.skic(), &mut rng).unwrap();
    let mut i = ik.finish(&skrc).unwrap();
    cross_check(&mut i, &mut r);
    // No common group at all.
    let only2 = CryptoSettings {
        groups: vec![DhGroup::G16],
        ..CryptoSettings::default()
    };
    assert_eq!(
        InitiatorKeying::new(&ours, &only2, flash.certificate(), &mut rng).unwrap_err(),
        CryptoError::NoCommonGroup
    );
}

#[test]
fn glare_and_override() {
    assert!(near_wins_glare(b"\x01\x0a", b"\x01\x0b"));
    assert!(!near_wins_glare(b"\x01\x0b", b"\x01\x0a"));
    assert!(
        near_wins_glare(b"same", b"same"),
        "!(far < near) holds for equal certs"
    );
    assert!(!near_wins_glare(b"abc", b"ab"));
    assert!(cert_overrides(b"abc", b"abc"));
    assert!(!cert_overrides(b"abc", b"abd"));
}

// ---- malformed inputs -----------------------------------------------------

#[test]
fn certificates_malformed() {
    let key = h(A_PUB);
    let good = [h("81021d02"), key.clone()].concat();
    assert!(Certificate::parse(&good).is_ok());
    for cut in 0..good.len() {
        assert_eq!(
            Certificate::parse(&good[..cut]).unwrap_err(),
            CryptoError::BadCertificate,
            "cut {cut}"
        );
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "both static and ephemeral",
            [good.clone(), h("021502")].concat(),
        ),
        ("neither", h("010a")),
        ("empty", vec![]),
        ("absurd option length", h("ffffffff7f0a")),
        ("vlu overflow", vec![0xff; 12]),
        ("static key without key", h("021d02")),
        ("group vlu truncated", h("021d82")),
        ("ephemeral group truncated", h("021582")),
    ];
    for (name, c) in cases {
        assert_eq!(
            Certificate::parse(&c).unwrap_err(),
            CryptoError::BadCertificate,
            "{name}"
        );
    }
    // Options after the first marker are not canonical: they neither count
    // for validity nor for the fingerprint, but must still be well formed.
    let with_tail = [good.clone(), h("00"), h("021502")].concat();
    let c = Certificate::parse(&with_tail).unwrap();
    assert!(c.is_static());
    assert_eq!(c.canonical().len(), good.len() + 1);
    assert_ne!(
        c.fingerprint(),
        Certificate::parse(&good).unwrap().fingerprint()
    );
    assert!(Certificate::parse(&[with_tail.clone(), h("05")].concat()).is_err());
    // Unknown options are ignored.
    assert!(Certificate::parse(&[h("027700"), good].concat()).is_ok());
}

#[test]
fn keying_malformed() {
    let mut rng = SeededRng::new(13);
    let flash = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
    let server =
        Identity::generate_ephemeral_server(&[DhGroup::G14, DhGroup::G2], &mut rng).unwrap();
    let s = CryptoSettings::default();
    let ik = InitiatorKeying::new(
        &flash,
        &CryptoSettings::flash_player(),
        server.certificate(),
        &mut rng,
    )
    .unwrap();
    let skic = ik.skic().to_vec();
    let fc = flash.certificate();
    let resp = |cert: &[u8], skic: &[u8], s: &CryptoSettings, rng: &mut SeededRng| {
        respond(&server, s, cert, skic, rng)
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(
        resp(b"\x01\x0a", &skic, &s, &mut rng),
        CryptoError::BadCertificate
    );
    // Truncation inside an option is malformed (cuts at option boundaries
    // can leave a valid, shorter SKIC: `02 1d 02` alone is acceptable).
    for cut in [1, 2, 4, 10, 70, skic.len() - 1] {
        assert_eq!(
            resp(fc, &skic[..cut], &s, &mut rng),
            CryptoError::BadComponent,
            "cut {cut}"
        );
    }
    assert_eq!(
        resp(fc, &h("ffffff7f1d"), &s, &mut rng),
        CryptoError::BadComponent
    );
    assert_eq!(
        resp(fc, &h("021d03031a020a021e02"), &s, &mut rng),
        CryptoError::UnsupportedGroup
    );
    assert_eq!(
        resp(fc, &h("021d0e031a020a021e02"), &s, &mut rng),
        CryptoError::BadComponent,
        "no static key for 14 in cert"
    );
    assert_eq!(
        resp(fc, &h("031a020a021e02"), &s, &mut rng),
        CryptoError::BadComponent,
        "no key at all"
    );
    let both = [h("021d02"), h("03 0d 02 05"), h("031a020a021e02")].concat();
    assert_eq!(resp(fc, &both, &s, &mut rng), CryptoError::BadComponent);
    // Bad ephemeral public keys: 0, 1, p - 1, low weight.
    let mut pm1 = DhGroup::G2.prime();
    pm1[127] -= 1;
    let mut low = vec![0u8; 128];
    low[0] = 0x80;
    low[127] = 0x03;
    for y in [vec![0u8], vec![1u8], pm1, low] {
        let mut skic = Vec::new();
        crate::proto::wire::option::push(&mut skic, 0x0d, &[&[2u8][..], &y].concat());
        assert_eq!(resp(fc, &skic, &s, &mut rng), CryptoError::BadPublicKey);
    }
    // Groups outside our settings are refused before any DH work.
    let only14 = CryptoSettings {
        groups: vec![DhGroup::G14],
        ..CryptoSettings::default()
    };
    assert_eq!(
        resp(fc, &skic, &only14, &mut rng),
        CryptoError::UnsupportedGroup
    );
    // Negotiation: we require HMAC, the initiator advertises 0x00.
    let req = CryptoSettings {
        hmac_recv_required: true,
        ..CryptoSettings::default()
    };
    assert_eq!(
        resp(fc, &h("021d02031a0000021e00"), &req, &mut rng),
        CryptoError::Negotiation
    );
    // The initiator will always send HMAC but with a 2-byte tag: refused.
    assert_eq!(
        resp(fc, &h("021d02031a0602021e02"), &s, &mut rng),
        CryptoError::Negotiation
    );
    // Bad settings.
    let bad = CryptoSettings {
        hmac_len: 40,
        ..CryptoSettings::default()
    };
    assert_eq!(resp(fc, &skic, &bad, &mut rng), CryptoError::BadSettings);

    // Initiator side: malformed SKRCs.
    let fin = |skrc: &[u8], rng: &mut SeededRng| {
        InitiatorKeying::new(
            &flash,
            &CryptoSettings::flash_player(),
            server.certificate(),
            rng,
        )
        .unwrap()
        .finish(skrc)
        .unwrap_err()
    };
    assert_eq!(
        fin(&h("031a0000021e00"), &mut rng),
        CryptoError::BadComponent,
        "no key"
    );
    assert_eq!(fin(&h("ff"), &mut rng), CryptoError::BadComponent);
    assert_eq!(
        fin(
            &[h("031a0000021e0082010d0e"), vec![0x55; 255]].concat(),
            &mut rng
        ),
        CryptoError::UnsupportedGroup
    );
    assert_eq!(
        fin(&h("031a0000021e00030d0201"), &mut rng),
        CryptoError::BadPublicKey
    );
    let flash_req = CryptoSettings {
        sseq_recv_required: true,
        ..CryptoSettings::flash_player()
    };
    let e = InitiatorKeying::new(&flash, &flash_req, server.certificate(), &mut rng)
        .unwrap()
        .finish(&[h("031a0000021e0081020d02"), h(B_PUB)].concat())
        .unwrap_err();
    assert_eq!(e, CryptoError::Negotiation);
}

#[test]
fn keying_never_panics_on_garbage() {
    let mut rng = SeededRng::new(14);
    let flash = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
    let server = Identity::generate_ephemeral_server(&[DhGroup::G2], &mut rng).unwrap();
    let s = CryptoSettings::default();
    for seed in 0..300u64 {
        let mut r = SeededRng::new(seed);
        let len = (r.next_u32() % 40) as usize;
        let mut junk = vec![0u8; len];
        r.fill(&mut junk);
        let _ = respond(&server, &s, flash.certificate(), &junk, &mut rng);
        let _ = respond(&server, &s, &junk, &junk, &mut rng);
        let _ = Certificate::parse(&junk);
        let _ = Epd::parse(&junk);
        let _ = Identity::from_key_file_bytes(&junk);
        if let Ok(ik) = InitiatorKeying::new(&flash, &s, server.certificate(), &mut rng) {
            let _ = ik.finish(&junk);
        }
    }
}

/// Our default (`preferred`) turns HMAC and sequence numbers on with a peer
/// that supports them actively, and leaves Flash-class initiators (bare
/// SOR offers, as Flash Player and librtmfp send) exactly as before.
#[test]
fn preferred_integrity_is_used_when_supported_and_never_forced() {
    let mut rng = SeededRng::new(7);
    let server = Identity::generate_static(&[DhGroup::G2], None, true, &mut rng).unwrap();
    let client = Identity::generate_static(&[DhGroup::G2], None, false, &mut rng).unwrap();
    let run = |ic: &CryptoSettings, rc: &CryptoSettings, rng: &mut SeededRng| {
        let ik = InitiatorKeying::new(&client, ic, server.certificate(), rng).unwrap();
        let skic = ik.skic().to_vec();
        let (skrc, rk) = respond(&server, rc, client.certificate(), &skic, rng).unwrap();
        let ik = ik.finish(&skrc).unwrap();
        (skrc, ik, rk)
    };
    let pref = CryptoSettings::preferred();
    // Ours with ours: all four on, both ends agree.
    let (_, i, r) = run(&pref, &pref, &mut rng);
    assert!(i.hmac_tx && i.hmac_rx && i.sseq_tx && i.sseq_rx);
    assert!(r.hmac_tx && r.hmac_rx && r.sseq_tx && r.sseq_rx);
    // A reference-default responder (SOR only) still gives ours what it asks.
    let (_, i, r) = run(&pref, &CryptoSettings::default(), &mut rng);
    assert!(i.hmac_rx && r.hmac_tx && i.sseq_rx && r.sseq_tx);
    assert!(!i.hmac_tx && !r.hmac_rx);
    // A Flash-class initiator: nothing on, and the SKRC librtmfp insists on.
    let (skrc, i, r) = run(&CryptoSettings::flash_player(), &pref, &mut rng);
    assert!(!(i.hmac_tx || i.hmac_rx || i.sseq_tx || i.sseq_rx));
    assert!(!(r.hmac_tx || r.hmac_rx || r.sseq_tx || r.sseq_rx));
    assert_eq!(skrc[..7], h("031a0000021e00"));
    // An operator's requirement still refuses such an initiator.
    let ik = InitiatorKeying::new(
        &client,
        &CryptoSettings::flash_player(),
        server.certificate(),
        &mut rng,
    )
    .unwrap();
    let req = CryptoSettings {
        hmac_recv_required: true,
        ..CryptoSettings::preferred()
    };
    // Flash offers SOR, so a requiring server gets HMAC from it.
    let (_, rk) = respond(&server, &req, client.certificate(), ik.skic(), &mut rng).unwrap();
    assert!(rk.hmac_rx);
}
