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
        error(quote!(retries = 5)),
        "unknown `#[task]` argument `retries`: expected `#[task]` or `#[task(...)]` with any of `name = \"...\"`, \
         `timeout = \"500ms\"`, `result`, `result = false` and `crate = path`",
    );
    assert_eq!(
        error(quote!(type = "x")),
        "unknown `#[task]` argument `type`: expected `#[task]` or `#[task(...)]` with any of `name = \"...\"`, \
         `timeout = \"500ms\"`, `result`, `result = false` and `crate = path`",
    );
    assert_eq!(
        error(quote!("adder")),
        "unexpected `#[task]` argument: expected `#[task]` or `#[task(...)]` with any of `name = \"...\"`, \
         `timeout = \"500ms\"`, `result`, `result = false` and `crate = path`",
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
        "expected `,` between `#[task]` arguments: expected `#[task]` or `#[task(...)]` with any of `name = \"...\"`, \
         `timeout = \"500ms\"`, `result`, `result = false` and `crate = path`",
    );
}

#[test]
fn timeout() {
    let ms = |tokens| parse(tokens).unwrap().timeout_ms.unwrap();
    assert_eq!(ms(quote!(timeout = "500ms")), 500);
    assert_eq!(ms(quote!(timeout = "2s")), 2000);
    assert_eq!(ms(quote!(timeout = "1.5m")), 90_000);
    assert_eq!(ms(quote!(name = "x", timeout = "0.25s")), 250);
    assert!(error(quote!(timeout = "5")).contains("with a number and a unit"));
    assert!(error(quote!(timeout = "0ms")).contains("at least 1 ms"));
    assert!(error(quote!(timeout = 5)).contains("expected `#[task(timeout"));
    assert!(error(quote!(timeout = "1s", timeout = "2s")).contains("duplicate"));
}

#[test]
fn result() {
    let result = |tokens| parse(tokens).unwrap().result.map(|lit| lit.value);
    assert_eq!(result(quote!()), None);
    assert_eq!(result(quote!(result)), Some(true));
    assert_eq!(result(quote!(result = true)), Some(true));
    assert_eq!(result(quote!(result = false, name = "x")), Some(false));
    assert_eq!(
        error(quote!(result = "no")),
        "expected `#[task(result)]`, `#[task(result = true)]` or `#[task(result = false)]`"
    );
    assert_eq!(
        error(quote!(result, result)),
        "duplicate `#[task]` argument `result`"
    );
}

#[test]
fn krate() {
    let krate = |tokens| {
        let path = parse(tokens).unwrap().krate.unwrap();
        quote!(#path).to_string()
    };
    assert_eq!(krate(quote!(crate = ::pools)), ":: pools");
    assert_eq!(krate(quote!(crate = pools, name = "x")), "pools");
    assert_eq!(
        krate(quote!(crate = crate::reexports::cf)),
        "crate :: reexports :: cf"
    );
    assert_eq!(
        error(quote!(crate = "pools")),
        "expected `#[task(crate = path)]` with the path of the `concurrent-futures` library, as \
         in `crate = ::pools`"
    );
}
