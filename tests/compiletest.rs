//! Compile-fail tests: what `#[task]` refuses and how `submit` checks its arguments. Each
//! `tests/ui/*.rs` holds one mistake; its `.stderr` is the expected diagnostic.

#[test]
#[cfg_attr(miri, ignore)]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
