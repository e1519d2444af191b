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
