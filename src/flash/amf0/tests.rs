use super::*;
use crate::flash::amf3::Amf3Value;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).unwrap()
}

fn enc(v: &Value) -> Vec<u8> {
    v.to_bytes().unwrap()
}

#[test]
fn spec_9_2_examples() {
    assert_eq!(enc(&Value::str("connect")), hex("02 0007 636f6e6e656374"));
    assert_eq!(enc(&Value::Number(1.0)), hex("00 3ff0000000000000"));
    assert_eq!(enc(&Value::Null), hex("05"));
    let app = Value::object([("app", Value::str("live"))]);
    assert_eq!(enc(&app), hex("03 0003 617070 02 0004 6c697665 000009"));
    assert_eq!(
        decode(
            &hex("03 0003 617070 02 0004 6c697665 000009"),
            Limits::default()
        )
        .unwrap(),
        app
    );
}

#[test]
fn every_marker_round_trips_byte_exact() {
    let cases = [
        "00 4059000000000000",
        "01 00",
        "01 01",
        "02 0000",
        "03 000009",
        "03 0001 61 05 0001 62 06 000009",
        "05",
        "06",
        "07 0003",
        "08 00000002 0001 61 00 3ff0000000000000 0001 62 01 01 000009",
        "0a 00000003 05 06 0a 00000000",
        "0b 4271b1d7d4d00000 0000",
        "0c 00000003 616263",
        "0d",
        "0f 00000004 3c612f3e",
        "10 0003 466f6f 0001 78 00 4000000000000000 000009",
        "11 06 09 74657374",
        "11 0a 0b 01 03 6b 04 07 01",
    ];
    for c in cases {
        let b = hex(c);
        let v = decode(&b, Limits::default()).unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(enc(&v), b, "{c} -> {v:?}");
    }
}

#[test]
fn boolean_nonzero_is_true_and_normalises() {
    assert_eq!(
        decode(&[0x01, 0x7f], Limits::default()).unwrap(),
        Value::Boolean(true)
    );
}

#[test]
fn empty_key_with_value_is_a_member_not_the_end() {
    let v = decode(&hex("03 0000 05 000009"), Limits::default()).unwrap();
    assert_eq!(v, Value::object([("", Value::Null)]));
}

#[test]
fn long_strings_switch_marker() {
    let s = "x".repeat(70_000);
    let b = enc(&Value::String(s.clone()));
    assert_eq!(&b[..5], &[0x0c, 0x00, 0x01, 0x11, 0x70]);
    assert_eq!(decode(&b, Limits::default()).unwrap(), Value::LongString(s));
    assert_eq!(
        enc(&Value::str("x".repeat(65_535)))[..3],
        [0x02, 0xff, 0xff]
    );
}

#[test]
fn encoder_rejects_keys_that_do_not_fit() {
    let v = Value::object([("k".repeat(65_536), Value::Null)]);
    assert!(matches!(
        v.to_bytes(),
        Err(AmfError::TooLongToEncode {
            what: "object key",
            ..
        })
    ));
}

#[test]
fn avmplus_string_reads_through() {
    let v = decode(&hex("11 06 09 74657374"), Limits::default()).unwrap();
    assert_eq!(v.as_str(), None);
    assert_eq!(v.to_text().as_deref(), Some("test"));
    let n = decode(&hex("11 04 ff ff ff ff"), Limits::default()).unwrap();
    assert_eq!(n.as_f64(), Some(-1.0));
}

#[test]
fn errors_are_typed() {
    let l = Limits::default();
    assert_eq!(decode(&[], l), Err(AmfError::Truncated));
    assert_eq!(decode(&[0x09], l), Err(AmfError::UnexpectedObjectEnd));
    assert_eq!(decode(&[0x04], l), Err(AmfError::UnsupportedMarker(0x04)));
    assert_eq!(decode(&[0x0e], l), Err(AmfError::UnsupportedMarker(0x0e)));
    assert_eq!(decode(&[0x12], l), Err(AmfError::UnknownMarker(0x12)));
    assert_eq!(decode(&[0x05, 0x05], l), Err(AmfError::TrailingBytes));
    assert_eq!(decode(&hex("02 0002 c328"), l), Err(AmfError::InvalidUtf8));
    assert_eq!(
        decode(&hex("11 12"), l),
        Err(AmfError::UnknownAmf3Marker(0x12))
    );
    assert_eq!(
        decode(&hex("11 06 02"), l),
        Err(AmfError::BadAmf3Reference(1))
    );
    assert_eq!(
        decode(&hex("11 0a 07 07 46 6f 6f"), l),
        Err(AmfError::Amf3Externalizable("Foo".into()))
    );
    let small = Limits { max_size: 3, ..l };
    assert_eq!(
        decode(&hex("02 0001 61"), small),
        Err(AmfError::TooLarge { size: 4, limit: 3 })
    );
}

#[test]
fn huge_declared_counts_fail_before_allocating() {
    let l = Limits::default();
    assert_eq!(
        decode(&hex("0a ffffffff 05"), l),
        Err(AmfError::CountExceedsInput {
            count: 0xffff_ffff,
            remaining: 1
        })
    );
    assert_eq!(decode(&hex("0c ffffffff 61"), l), Err(AmfError::Truncated));
    assert_eq!(decode(&hex("0f ffffffff"), l), Err(AmfError::Truncated));
    // AMF3: a 2^28-entry dense array, a 2^28-entry Vector.<Number>, a 2^27-long string.
    assert!(matches!(
        decode(&hex("11 09 ff ff ff ff 01"), l),
        Err(AmfError::CountExceedsInput { .. })
    ));
    assert!(matches!(
        decode(&hex("11 0f ff ff ff ff 00"), l),
        Err(AmfError::CountExceedsInput { .. })
    ));
    assert_eq!(
        decode(&hex("11 06 ff ff ff ff"), l),
        Err(AmfError::Truncated)
    );
    assert!(matches!(
        decode(&hex("11 0a ff ff ff f3 01"), l),
        Err(AmfError::CountExceedsInput { .. })
    ));
}

#[test]
fn deep_nesting_fails_fast_without_stack_overflow() {
    let l = Limits::default();
    // 100k nested strict arrays of one element each.
    let mut b = Vec::new();
    for _ in 0..100_000 {
        b.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
    }
    b.push(0x05);
    assert_eq!(decode(&b, l), Err(AmfError::TooDeep(64)));
    // 100k nested objects.
    let mut b = Vec::new();
    for _ in 0..100_000 {
        b.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    assert_eq!(decode(&b, l), Err(AmfError::TooDeep(64)));
    // 100k nested AMF3 arrays behind one escape.
    let mut b = vec![0x11];
    for _ in 0..100_000 {
        b.extend_from_slice(&[0x09, 0x03, 0x01]);
    }
    assert_eq!(decode(&b, l), Err(AmfError::TooDeep(64)));
    // Exactly at the limit is fine.
    let mut b = Vec::new();
    for _ in 0..64 {
        b.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
    }
    b.push(0x05);
    assert!(decode(&b, l).is_ok());
    b.splice(0..0, [0x0a, 0, 0, 0, 1]);
    assert_eq!(decode(&b, l), Err(AmfError::TooDeep(64)));
}

#[test]
fn element_budget_caps_cheap_values() {
    let mut b = vec![0x0a, 0x00, 0x10, 0x00, 0x00];
    b.extend(std::iter::repeat_n(0x05u8, 0x10_0000));
    assert_eq!(
        decode(&b, Limits::default()),
        Err(AmfError::TooManyElements(1 << 18))
    );
}

#[test]
fn amf3_string_references_are_charged() {
    // A 1000-byte string, then 5000 references to it in a dense array.
    // U29 headers: 5001 dense = (5001<<1)|1 = 10003 = ce 13; 1000-byte string = 8f 51.
    let mut b = vec![0x11, 0x09, 0xce, 0x13, 0x01, 0x06, 0x8f, 0x51];
    b.extend(std::iter::repeat_n(b'z', 1000));
    for _ in 0..5000 {
        b.extend_from_slice(&[0x06, 0x00]);
    }
    let l = Limits {
        max_size: 1 << 20,
        ..Limits::default()
    };
    assert!(matches!(decode(&b, l), Err(AmfError::TooLarge { .. })));
    // With room for it, the references resolve.
    let v = crate::flash::amf3::decode(
        &b[1..],
        Limits {
            max_size: 8 << 20,
            ..Limits::default()
        },
    )
    .unwrap();
    match v {
        Amf3Value::Array { dense, .. } => {
            assert_eq!(dense.len(), 5001);
            assert_eq!(dense[4000], Amf3Value::String("z".repeat(1000)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_truncation_of_valid_values_is_an_error() {
    let samples = [
        "08 00000002 0001 61 00 3ff0000000000000 0001 62 01 01 000009",
        "10 0003 466f6f 0001 78 0a 00000002 0b 4271b1d7d4d00000 0000 0c 00000001 61 000009",
        "11 0a 0b 01 03 6b 09 05 01 06 03 61 04 81 00 03 62 0c 03 ff 01",
        "11 0a 13 03 43 03 78 05 3ff0000000000000",
    ];
    for s in samples {
        let b = hex(s);
        assert!(decode(&b, Limits::default()).is_ok(), "{s}");
        for n in 0..b.len() {
            assert!(
                decode(&b[..n], Limits::default()).is_err(),
                "{s} prefix {n}"
            );
        }
    }
}

#[test]
fn json_rendering() {
    let v = Value::object([
        ("a", Value::Number(1.5)),
        ("s", Value::str("q\"\n")),
        (
            "l",
            Value::StrictArray(vec![
                Value::Boolean(true),
                Value::Null,
                Value::Number(f64::NAN),
            ]),
        ),
        (
            "3",
            decode(&hex("11 0a 0b 01 03 6b 04 07 01"), Limits::default()).unwrap(),
        ),
    ]);
    assert_eq!(
        v.to_json(),
        r#"{"a":1.5,"s":"q\"\n","l":[true,null,null],"3":{"k":7}}"#
    );
}

fn arb_amf3() -> impl Strategy<Value = Amf3Value> {
    let leaf = prop_oneof![
        Just(Amf3Value::Null),
        Just(Amf3Value::Undefined),
        any::<bool>().prop_map(Amf3Value::Boolean),
        (-(1i32 << 28)..(1 << 28)).prop_map(Amf3Value::Integer),
        any::<f64>()
            .prop_filter("NaN != NaN", |d| !d.is_nan())
            .prop_map(Amf3Value::Double),
        ".{0,12}".prop_map(Amf3Value::String),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Amf3Value::ByteArray),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            (
                proptest::collection::vec(("[a-z]{1,4}", inner.clone()), 0..4),
                proptest::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|(assoc, dense)| Amf3Value::Array { assoc, dense }),
            (
                "[A-Za-z]{0,4}",
                proptest::collection::vec(("[a-z]{1,4}", inner.clone()), 0..3),
                proptest::option::of(proptest::collection::vec(("[a-z]{1,4}", inner), 0..3)),
            )
                .prop_map(|(class, sealed, dynamic)| Amf3Value::Object {
                    class,
                    sealed,
                    dynamic
                }),
        ]
    })
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<f64>()
            .prop_filter("NaN != NaN", |d| !d.is_nan())
            .prop_map(Value::Number),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,16}".prop_map(Value::String),
        ".{0,16}".prop_map(Value::LongString),
        Just(Value::Null),
        Just(Value::Undefined),
        Just(Value::Unsupported),
        any::<u16>().prop_map(Value::Reference),
        (
            any::<f64>().prop_filter("NaN", |d| !d.is_nan()),
            any::<i16>()
        )
            .prop_map(|(millis, tz)| Value::Date { millis, tz }),
        ".{0,16}".prop_map(Value::XmlDocument),
        arb_amf3().prop_map(|v| v.to_amf0().unwrap()),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let members = proptest::collection::vec((".{0,6}", inner.clone()), 0..5);
        prop_oneof![
            members.clone().prop_map(Value::Object),
            members.clone().prop_map(Value::EcmaArray),
            proptest::collection::vec(inner, 0..5).prop_map(Value::StrictArray),
            (".{0,6}", members).prop_map(|(class, members)| Value::TypedObject { class, members }),
        ]
    })
}

proptest! {
    #[test]
    fn value_round_trip(v in arb_value()) {
        let b = enc(&v);
        let back = decode(&b, Limits::default()).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(enc(&back), b);
    }

    #[test]
    fn argument_lists_round_trip(vs in proptest::collection::vec(arb_value(), 0..5)) {
        let b = encode_all(&vs).unwrap();
        prop_assert_eq!(decode_all(&b, Limits::default()).unwrap(), vs);
    }

    #[test]
    fn amf3_round_trip(v in arb_amf3()) {
        let mut b = Vec::new();
        v.encode(&mut b).unwrap();
        prop_assert_eq!(crate::flash::amf3::decode(&b, Limits::default()).unwrap(), v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_all(&b, Limits::default());
        let _ = crate::flash::amf3::decode(&b, Limits::default());
    }

    #[test]
    fn mutated_values_never_panic(v in arb_value(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut b = enc(&v);
        for (i, x) in flips {
            if !b.is_empty() {
                let n = b.len();
                b[i % n] ^= x;
            }
        }
        let _ = decode_all(&b, Limits::default());
    }
}

#[test]
fn amf3_reference_budget_is_shared_across_escapes() {
    // One escape: a 1000-byte string then 40 references to it (~40 KB copied
    // from ~1.1 KB of input).
    let mut one = vec![0x11, 0x09, 0x53, 0x01, 0x06, 0x8f, 0x51]; // 41 dense entries
    one.extend(std::iter::repeat_n(b'z', 1000));
    for _ in 0..40 {
        one.extend_from_slice(&[0x06, 0x00]);
    }
    let l = Limits {
        max_size: 64 * 1024,
        ..Limits::default()
    };
    assert!(decode(&one, l).is_ok());
    // Two of them copy ~80 KB: over the budget of the whole input.
    let two = [one.clone(), one].concat();
    assert!(matches!(
        decode_all(&two, l),
        Err(AmfError::TooLarge { .. })
    ));
}

#[test]
fn value_stays_small() {
    // The element budget's memory bound (Limits::max_elements) assumes this.
    assert!(
        std::mem::size_of::<Value>() <= 56,
        "{}",
        std::mem::size_of::<Value>()
    );
}

#[test]
fn conversions() {
    assert_eq!(Value::from(2.5), Value::Number(2.5));
    assert_eq!(Value::from(true), Value::Boolean(true));
    assert_eq!(Value::from("a"), Value::str("a"));
    assert_eq!(Value::from(String::from("b")), Value::str("b"));
    let o = Value::object([("k", Value::from(1.0))]);
    assert_eq!(o.get("k").and_then(Value::as_f64), Some(1.0));
    assert_eq!(o.get("missing"), None);
    assert_eq!(Value::Null.get("k"), None);
}
