use quote::quote;
use syn::ItemFn;

use crate::args::TaskArgs;
use crate::ast::TaskFn;

/// The messages of every error `check` reports for `item`, in order.
fn errors(item: proc_macro2::TokenStream) -> Vec<String> {
    let item: ItemFn = syn::parse2(item).unwrap();
    let args = TaskArgs::default();
    match super::check(&TaskFn::from_syn(&item, &args)) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_iter().map(|error| error.to_string()).collect(),
    }
}

/// The first words of each message, enough to tell them apart.
fn kinds(item: proc_macro2::TokenStream) -> Vec<String> {
    errors(item)
        .iter()
        .map(|message| message.split(':').next().unwrap().to_owned())
        .collect()
}

#[test]
fn accepts_owned_values() {
    assert!(
        errors(quote!(
            fn f() {}
        ))
        .is_empty()
    );
    assert!(
        errors(quote!(
            pub fn add(a: i64, b: i64) -> i64 {
                a + b
            }
        ))
        .is_empty()
    );
    assert!(
        errors(quote!(
            fn f((a, b): (u8, u8), mut c: Vec<String>) -> Result<u8, String> {}
        ))
        .is_empty()
    );
    assert!(
        errors(quote!(
            const fn f(x: [u8; 4]) -> Option<Box<u8>> {}
        ))
        .is_empty()
    );
    assert!(
        errors(quote!(
            fn f() -> ! {
                loop {}
            }
        ))
        .is_empty()
    );
}

#[test]
fn accepts_static_lifetimes() {
    assert!(
        errors(quote!(
            fn f(s: Cow<'static, str>) -> Box<dyn Error + 'static> {}
        ))
        .is_empty()
    );
}

#[test]
fn leaves_fn_pointers_to_the_value_check() {
    // Not values a task can send, but the `Serialize` bound says so, not a borrow error.
    assert!(
        errors(quote!(
            fn f(g: fn(&str) -> usize, h: Box<dyn Fn(&u8)>) {}
        ))
        .is_empty()
    );
}

#[test]
fn refuses_each_kind_of_signature() {
    let cases = [
        (
            quote!(
                async fn f() {}
            ),
            "`#[task]` functions cannot be `async`",
        ),
        (
            quote!(
                unsafe fn f() {}
            ),
            "`#[task]` functions cannot be `unsafe`",
        ),
        (
            quote!(
                extern "C" fn f() {}
            ),
            "`#[task]` functions cannot be `extern`",
        ),
        (
            quote!(
                fn f<T>(t: T) {}
            ),
            "`#[task]` functions cannot be generic",
        ),
        (
            quote!(
                fn f<'a>(t: String) {}
            ),
            "`#[task]` functions cannot be generic",
        ),
        (
            quote!(
                fn f()
                where
                    u8: Copy,
                {
                }
            ),
            "`#[task]` functions cannot have a `where` clause",
        ),
        (
            quote!(
                fn f(self) {}
            ),
            "`#[task]` functions cannot take `self`",
        ),
        (
            quote!(
                fn f(&self) {}
            ),
            "`#[task]` functions cannot take `self`",
        ),
    ];
    assert_refused(cases);
}

#[test]
fn refuses_each_kind_of_type() {
    let cases = [
        (
            quote!(
                fn f(s: &str) {}
            ),
            "`#[task]` arguments cannot be borrowed",
        ),
        (
            quote!(
                fn f(s: Vec<&mut u8>) {}
            ),
            "`#[task]` arguments cannot be borrowed",
        ),
        (
            quote!(
                fn f(s: Cow<'_, str>) {}
            ),
            "`#[task]` arguments cannot borrow",
        ),
        (
            quote!(
                fn f(s: Box<dyn Error + 'a>) {}
            ),
            "`#[task]` arguments cannot borrow",
        ),
        (
            quote!(
                fn f() -> &'static str {}
            ),
            "`#[task]` results cannot be borrowed",
        ),
        (
            quote!(
                fn f() -> Result<Cow<'a, str>, ()> {}
            ),
            "`#[task]` results cannot borrow",
        ),
        (
            quote!(
                fn f(i: impl Iterator) {}
            ),
            "`#[task]` arguments cannot be `impl Trait`",
        ),
        (
            quote!(
                fn f() -> Option<impl Debug> {}
            ),
            "`#[task]` results cannot be `impl Trait`",
        ),
        (
            quote!(
                fn f(n: usize, args: ...) {}
            ),
            "`#[task]` functions cannot be variadic",
        ),
    ];
    assert_refused(cases);
}

/// Checks that each item gets exactly its one error.
fn assert_refused<const N: usize>(cases: [(proc_macro2::TokenStream, &str); N]) {
    for (item, expected) in cases {
        assert_eq!(kinds(item.clone()), [expected], "{item}");
    }
}

#[test]
fn reports_every_problem_in_order() {
    let item = quote! {
        async unsafe fn f<T>(self, a: &u8, b: impl Copy) -> &'static u8 {}
    };
    assert_eq!(
        kinds(item),
        [
            "`#[task]` functions cannot be `async`",
            "`#[task]` functions cannot be `unsafe`",
            "`#[task]` functions cannot be generic",
            "`#[task]` functions cannot take `self`",
            "`#[task]` arguments cannot be borrowed",
            "`#[task]` arguments cannot be `impl Trait`",
            "`#[task]` results cannot be borrowed",
        ],
    );
}

#[test]
fn one_error_per_borrow() {
    // The reference is reported once, not again for its lifetime or what it points at.
    assert_eq!(
        errors(quote!(
            fn f(s: &'a &'b str) {}
        ))
        .len(),
        1
    );
}

#[test]
fn not_a_fn() {
    let item: syn::Item = syn::parse2(quote!(
        struct S;
    ))
    .unwrap();
    assert_eq!(
        super::not_a_fn(&item).to_string(),
        "`#[task]` applies only to a free `fn` with a body"
    );
}

#[test]
fn refuses_associated_functions_that_name_self() {
    assert_eq!(
        kinds(quote!(
            fn new(n: u64) -> Self {
                Self { n }
            }
        )),
        ["`#[task]` cannot be used inside an `impl` or a trait"]
    );
    // A nested `impl` has a `Self` of its own.
    assert!(
        errors(quote!(
            fn f() {
                struct S;
                impl S {
                    fn s() -> Self {
                        S
                    }
                }
            }
        ))
        .is_empty()
    );
}

#[test]
fn refuses_more_than_sixteen_arguments() {
    let params = (0..17).map(|i| quote::format_ident!("a{i}"));
    assert_eq!(
        kinds(quote!(fn f(#(#params: u8),*) {})),
        ["`#[task]` functions take at most 16 arguments"]
    );
}
