use super::*;

#[derive(Clone, Copy)]
struct Small;

impl Task for Small {
    type Args = u32;
    type Output = u32;
    type Error = Never;
    const NAME: &'static str = "task::test::same_name";
    fn call(args: u32) -> Result<u32, Never> {
        Ok(args)
    }
    fn entry() -> &'static TaskEntry {
        static ENTRY: TaskEntry = TaskEntry::new::<Small>();
        &ENTRY
    }
}

#[derive(Clone, Copy)]
struct Large;

impl Task for Large {
    type Args = u64;
    type Output = u32;
    type Error = Never;
    const NAME: &'static str = "task::test::same_name";
    fn call(args: u64) -> Result<u32, Never> {
        Ok(u32::try_from(args).unwrap_or(u32::MAX))
    }
    fn entry() -> &'static TaskEntry {
        static ENTRY: TaskEntry = TaskEntry::new::<Large>();
        &ENTRY
    }
}

/// A build whose task has the same name but another argument type must not pass the handshake:
/// the fingerprint covered only the names, so such a worker would decode another type's bytes.
#[test]
fn the_fingerprint_covers_the_types() {
    let small = [TaskEntry::new::<Small>()];
    let large = [TaskEntry::new::<Large>()];
    assert_eq!(
        fingerprint(&small),
        fingerprint(&[TaskEntry::new::<Small>()])
    );
    assert_ne!(fingerprint(&small), fingerprint(&large));
}
