use super::*;

#[test]
fn values_round_trip() {
    let value = (7u64, "seven".to_owned(), vec![1u128, u128::MAX], Some(-3i8));
    let mut bytes = Vec::new();
    encode_into(&value, &mut bytes).unwrap();
    assert_eq!(
        decode::<(u64, String, Vec<u128>, Option<i8>)>(&bytes).unwrap(),
        value
    );
}

#[test]
fn many_small_wide_integers_are_not_mistaken_for_a_lie() {
    let value = vec![1u128; 100_000];
    let mut bytes = Vec::new();
    encode_into(&value, &mut bytes).unwrap();
    assert_eq!(decode::<Vec<u128>>(&bytes).unwrap(), value);
}

#[test]
fn a_length_that_claims_more_than_the_input_allocates_nothing() {
    // A string that claims 2^62 bytes, in a 9-byte input.
    let mut bytes = vec![0xfd];
    bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let error = decode::<String>(&bytes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "a length in the data claims far more bytes than the input holds"
    );
}

#[test]
fn leftover_bytes_are_an_error() {
    let mut bytes = Vec::new();
    encode_into(&5u8, &mut bytes).unwrap();
    bytes.push(0);
    assert_eq!(
        decode::<u8>(&bytes).unwrap_err().to_string(),
        "1 bytes left over after the value"
    );
}

/// The encoding of `bytes` through serde's sequence path: a one-element tuple is its element to
/// bincode, and a tuple is not a `Vec<u8>`, so it skips the byte fast path.
fn as_sequence(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&(bytes.to_vec(),), &mut out).unwrap();
    out
}

/// The byte fast path for `Vec<u8>` writes exactly what the element-by-element path writes,
/// for lengths at every varint boundary, and each decodes what the other encoded.
#[test]
fn a_vec_of_bytes_is_encoded_as_the_sequence_would_be() {
    for len in [0, 1, 250, 251, 252, 65_535, 65_536, 65_537, 1 << 20] {
        let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut fast = Vec::new();
        encode_into(&value, &mut fast).unwrap();
        let slow = as_sequence(&value);
        assert_eq!(fast, slow, "length {len}");
        assert_eq!(decode::<Vec<u8>>(&slow).unwrap(), value);
        assert_eq!(decode::<(Vec<u8>,)>(&fast).unwrap().0, value);
    }
}

proptest::proptest! {
    #[test]
    fn any_vec_of_bytes_round_trips_through_the_fast_path(
        value in proptest::collection::vec(proptest::num::u8::ANY, 0..2_000),
    ) {
        let mut bytes = Vec::new();
        encode_into(&value, &mut bytes).unwrap();
        proptest::prop_assert_eq!(&bytes, &as_sequence(&value));
        proptest::prop_assert_eq!(decode::<Vec<u8>>(&bytes).unwrap(), value);
    }
}

/// The fast path's decoder keeps the limit: a byte string that claims 2^62 bytes in a 9-byte
/// input is refused before anything is allocated for it.
#[test]
fn a_vec_of_bytes_that_claims_more_than_the_input_allocates_nothing() {
    let mut bytes = vec![0xfd];
    bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let error = decode::<Vec<u8>>(&bytes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "a length in the data claims far more bytes than the input holds"
    );
}

/// The fast path's decoder refuses a value that ends early or has bytes left over.
#[test]
fn a_vec_of_bytes_must_fill_its_input_exactly() {
    let mut bytes = Vec::new();
    encode_into(&vec![1u8, 2, 3], &mut bytes).unwrap();
    bytes.push(0);
    assert_eq!(
        decode::<Vec<u8>>(&bytes).unwrap_err().to_string(),
        "1 bytes left over after the value"
    );
    assert!(decode::<Vec<u8>>(&bytes[..2]).is_err());
}
