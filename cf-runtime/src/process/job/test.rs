use std::io::Write;

use super::{Args, INLINE};

#[test]
fn small_arguments_stay_inline_and_large_ones_spill_whole() {
    let mut args = Args::new();
    args.write_all(&[1; INLINE - 1]).unwrap();
    args.write_all(&[2]).unwrap();
    assert!(matches!(args, Args::Inline(..)));
    assert_eq!(&args[..INLINE - 1], &[1; INLINE - 1]);
    assert_eq!(args[INLINE - 1], 2);
    args.write_all(&[3, 4]).unwrap();
    assert!(matches!(args, Args::Heap(_)));
    assert_eq!(args.len(), INLINE + 2);
    assert_eq!(&args[INLINE - 1..], &[2, 3, 4]);
}

#[test]
fn inline_arguments_take_at_most_32_bytes_of_a_job() {
    assert!(size_of::<Args>() <= 32, "{}", size_of::<Args>());
}

#[test]
fn a_queued_job_takes_at_most_128_bytes() {
    // The queue of a million submitted jobs is most of the memory a future costs at its peak.
    assert!(
        size_of::<super::Job>() <= 128,
        "{}",
        size_of::<super::Job>()
    );
}
