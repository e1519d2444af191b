//! `#[task]` expands to absolute paths only: it compiles in a module without the prelude whose
//! own items shadow every name the expansion could reach for, and it passes strict lints.
#![deny(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unsafe_code,
    unused,
    unused_qualifications,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic
)]

/// Tasks in a module that shadows `core`, `std`, `cf`, the prelude and the expansion's own
/// names.
#[no_implicit_prelude]
pub mod shadowed {
    #![allow(
        non_camel_case_types,
        non_snake_case,
        clippy::upper_case_acronyms,
        reason = "shadows of the names in use"
    )]

    /// Defines the shadows, each allowed to be unused (and no more, so that an unused item of
    /// the expansion still fails the test).
    macro_rules! shadows {
        ($($item:item)*) => {
            $(
                #[allow(dead_code, reason = "a shadow, never used")]
                $item
            )*
        };
    }

    shadows! {
        mod core {}
        mod std {}
        mod cf {}
        mod serde {}
        mod linkme {}
        mod __private {}
        struct Result;
        struct Option;
        struct Vec;
        struct String;
        struct Box;
        struct Never;
        struct TaskEntry;
        struct TASKS;
        trait Task {}
        trait Copy {}
        trait Clone {}
        trait Send {}
        trait Sync {}
        trait Sized {}
        trait Deref {}
        trait Debug {}
        trait Fn {}
        fn Ok() {}
        fn Err() {}
        fn concat() {}
        fn module_path() {}
        fn assert_value() {}
        fn __cf_arg0() {}
        static __CF_ENTRY: () = ();
        static __CF_FN: () = ();
    }

    /// Adds.
    #[::cf::task]
    pub fn add(a: i64, b: i64) -> i64 {
        a + b
    }

    /// Does nothing.
    #[::cf::task]
    pub fn nothing() {}

    /// Parses a number.
    #[::cf::task]
    pub fn parse(
        text: ::std::string::String,
    ) -> ::core::result::Result<i64, ::std::string::String> {
        text.parse()
            .map_err(|_| ::std::borrow::ToOwned::to_owned("not a number"))
    }

    /// Renamed.
    #[::cf::task(name = "hygiene::renamed")]
    pub fn renamed(values: ::std::vec::Vec<u8>) -> usize {
        values.len()
    }

    /// Never returns.
    #[::cf::task]
    pub fn diverge() -> ! {
        ::core::panic!("diverged")
    }

    /// Private, and used by the test below.
    #[::cf::task]
    fn private(n: u8) -> u8 {
        n
    }

    /// Calls the private task.
    #[must_use]
    pub fn call_private(n: u8) -> u8 {
        private(n)
    }
}

/// Takes a `String` it only reads: `clippy::needless_pass_by_value` would suggest `&str`, which a
/// task cannot take, so the expansion allows that lint.
#[cf::task]
pub fn takes_ownership(text: String) -> usize {
    text.len()
}

#[test]
fn shadowed_tasks_work() {
    use cf::Task as _;

    assert_eq!(shadowed::add(2, 3), 5);
    shadowed::nothing();
    assert_eq!(shadowed::parse("7".to_owned()), Ok(7));
    assert_eq!(shadowed::renamed(vec![1, 2]), 2);
    assert_eq!(shadowed::call_private(4), 4);
    assert_eq!(takes_ownership("abc".to_owned()), 3);
    assert_eq!(shadowed::add::NAME, "hygiene::shadowed::add");
    assert_eq!(shadowed::renamed::NAME, "hygiene::renamed");
    assert_eq!(
        shadowed::parse::call("x".to_owned()),
        Err("not a number".to_owned())
    );
    let _ = shadowed::diverge;
}
