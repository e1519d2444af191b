use cf_worker::Never;

use super::Core;

/// A million futures of a tiny task must fit in 300 bytes each at peak (issue "Speed"): the
/// future's one allocation is most of it (168 bytes with its error kept unboxed, 88 boxed, plus
/// the `Arc`'s two counts).
#[test]
fn a_small_future_is_one_small_allocation() {
    let core = size_of::<Core<u64, Never>>();
    assert!(core <= 88, "Core<u64, Never> is {core} bytes");
}
