use quote::quote;

use super::TaskArgs;

fn parse(tokens: proc_macro2::TokenStream) -> syn::Result<TaskArgs> {
    syn::parse2(tokens)
}

fn error(tokens: proc_macro2::TokenStream) -> String {
    match parse(tokens) {
        Ok(_) => panic!("expected an error"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn empty() {
    assert!(parse(quote!()).unwrap().name.is_none());
}

#[test]
fn name() {
    let args = parse(quote!(name = "adder-v1")).unwrap();
    assert_eq!(args.name.unwrap().value(), "adder-v1");
    let args = parse(quote!(name = "adder-v1",)).unwrap();
    assert_eq!(args.name.unwrap().value(), "adder-v1");
}

#[test]
fn unknown() {
    assert_eq!(
        error(quote!(timeout = 5)),
        "unknown `#[task]` argument `timeout`: expected `#[task]` or `#[task(name = \"...\")]`",
    );
    assert_eq!(
        error(quote!(type = "x")),
        "unknown `#[task]` argument `type`: expected `#[task]` or `#[task(name = \"...\")]`",
    );
    assert_eq!(
        error(quote!("adder")),
        "unexpected `#[task]` argument: expected `#[task]` or `#[task(name = \"...\")]`",
    );
}

#[test]
fn bad_name() {
    assert_eq!(
        error(quote!(name = "a", name = "b")),
        "duplicate `#[task]` argument `name`"
    );
    assert_eq!(error(quote!(name)), "expected `#[task(name = \"...\")]`");
    assert_eq!(
        error(quote!(name = adder)),
        "the `#[task]` name must be a string literal: expected `#[task(name = \"...\")]`",
    );
    assert_eq!(
        error(quote!(name = "")),
        "the `#[task]` name must not be empty"
    );
    assert_eq!(
        error(quote!(name = "a" name = "b")),
        "expected `,` between `#[task]` arguments: expected `#[task]` or `#[task(name = \"...\")]`",
    );
}
