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

#[test]
fn a_byte_string_prefix_is_what_bincode_writes() {
    let lengths = [
        0,
        1,
        250,
        251,
        65_535,
        65_536,
        SPLIT_AT + 1,
        u32::MAX as usize,
        u32::MAX as usize + 1,
    ];
    for len in lengths {
        let mut ours = Vec::new();
        bytes_prefix(len, &mut ours);
        let mut theirs = Vec::new();
        bincode::encode_into_std_write(len as u64, &mut theirs, config()).unwrap();
        assert_eq!(ours, theirs, "length {len}");
        assert_eq!(prefix_size(ours[0]), Some(ours.len()), "length {len}");
        assert_eq!(read_prefix(&ours), Some((len as u64, ours.len())));
        assert_eq!(
            read_prefix(&ours[..ours.len() - 1]),
            None,
            "a prefix cut short"
        );
    }
    assert_eq!(prefix_size(254), None);
}

#[test]
fn large_byte_strings_give_up_their_buffer_and_others_stay_whole() {
    let data = vec![3u8; SPLIT_AT + 1];
    let at = data.as_ptr();
    let bytes = split(data).unwrap();
    assert_eq!(bytes.as_ptr(), at, "the same buffer, not a copy");
    let buf = ByteBuf::from(vec![4u8; SPLIT_AT + 1]);
    let at = buf.as_ptr();
    let bytes = split(buf).unwrap();
    assert_eq!((bytes.as_ptr(), bytes.len()), (at, SPLIT_AT + 1));
    let text = "é".repeat(SPLIT_AT);
    let at = text.as_ptr();
    let bytes = split(text).unwrap();
    assert_eq!((bytes.as_ptr(), bytes.len()), (at, 2 * SPLIT_AT));
    // At the threshold, not over it: encoded like any value.
    assert_eq!(split(vec![1u8; SPLIT_AT]).unwrap_err().len(), SPLIT_AT);
    assert_eq!(split("x".repeat(SPLIT_AT)).unwrap_err().len(), SPLIT_AT);
    // Not a byte string.
    assert_eq!(
        split(vec![1u16; SPLIT_AT * 2]).unwrap_err().len(),
        SPLIT_AT * 2
    );
    assert_eq!(split((vec![1u8; SPLIT_AT + 1], 2u8)).unwrap_err().1, 2);
}

/// `value` split: its head and tail together are its encoding, and the tail alone decodes to it.
fn split_round_trip<T>(value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + Clone + fmt::Debug + 'static,
{
    let mut head = Vec::new();
    let tail = encode_split(value.clone(), &mut head).unwrap().unwrap();
    let mut encoded = Vec::new();
    encode_into(&value, &mut encoded).unwrap();
    let mut whole = head.clone();
    whole.extend_from_slice(&tail);
    assert!(whole == encoded, "the split bytes are the encoding");
    assert!(decode_payload::<T>(Payload::Bytes(tail)).unwrap() == value);
    assert!(decode_payload::<T>(Payload::Encoded(&whole)).unwrap() == value);
}

#[test]
fn a_split_value_is_its_encoding_and_decodes_from_its_tail() {
    let bytes: Vec<u8> = (0..SPLIT_AT * 3).map(|i| (i % 253) as u8).collect();
    split_round_trip(bytes.clone());
    split_round_trip(ByteBuf::from(bytes));
    split_round_trip("€uro ".repeat(SPLIT_AT / 4));
}

#[test]
fn a_tail_that_is_not_utf8_is_an_error_for_a_string() {
    let error = decode_payload::<String>(Payload::Bytes(vec![b'a', 0xff])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid UTF-8 in a string: invalid utf-8 sequence of 1 bytes from index 1"
    );
    let error = unsplit::<u32>(vec![1, 2]).unwrap_err();
    assert_eq!(error.to_string(), "`u32` is not a byte string");
    assert_eq!(unsplit::<String>(b"ok".to_vec()).unwrap(), "ok");
}

#[test]
fn a_tail_for_another_type_decodes_from_the_whole_encoding() {
    // Not a type a worker splits, but the bytes are its encoding all the same.
    let boxed: Box<[u8]> = decode_payload(Payload::Bytes(vec![1, 2, 3])).unwrap();
    assert_eq!(&*boxed, &[1, 2, 3]);
}
