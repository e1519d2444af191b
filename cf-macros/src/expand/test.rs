use quote::quote;
use syn::{File, Item, ItemFn};

use crate::args::TaskArgs;

fn expand(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> File {
    let args: syn::Result<TaskArgs> = syn::parse2(args);
    let item: ItemFn = syn::parse2(item).unwrap();
    syn::parse2(super::expand(args, &item)).unwrap()
}

#[test]
fn marker_type_constant_and_hidden_impls() {
    let file = expand(
        quote!(),
        quote!(
            /// Adds.
            #[inline]
            #[cfg(unix)]
            pub fn add(a: i64, b: i64) -> i64 {
                a + b
            }
        ),
    );
    let [
        Item::Struct(marker),
        Item::Const(constant),
        Item::Const(hidden),
    ] = &file.items[..]
    else {
        panic!("unexpected items: {}", quote!(#file));
    };
    assert_eq!(marker.ident, "add");
    assert_eq!(constant.ident, "add");
    assert!(matches!(marker.vis, syn::Visibility::Public(_)));
    assert!(matches!(constant.vis, syn::Visibility::Public(_)));
    assert_eq!(hidden.ident, "_");
    for attrs in [&marker.attrs, &constant.attrs, &hidden.attrs] {
        assert!(attrs.iter().any(|attr| attr.path().is_ident("cfg")));
    }
    // The docs go on the constant; `#[inline]` on the function, inside the anonymous constant.
    let doc = |attrs: &[syn::Attribute]| attrs.iter().any(|attr| attr.path().is_ident("doc"));
    assert!(doc(&constant.attrs));
    assert!(
        !constant
            .attrs
            .iter()
            .any(|attr| attr.path().is_ident("inline"))
    );
    let hidden = quote!(#hidden).to_string();
    assert!(
        hidden.contains("# [inline] fn add (a : i64 , b : i64) -> i64 { a + b }"),
        "{hidden}"
    );
}

#[test]
fn pinned_name() {
    let file = expand(
        quote!(name = "adder-v1"),
        quote!(
            fn add(a: i64) -> i64 {
                a
            }
        ),
    );
    let tokens = quote!(#file).to_string();
    assert!(
        tokens.contains("const NAME : & 'static str = \"adder-v1\" ;"),
        "{tokens}"
    );
}

#[test]
fn failure_keeps_the_function() {
    let file = expand(
        quote!(bogus),
        quote!(
            fn add<T>(a: T) -> T {
                a
            }
        ),
    );
    let [Item::Fn(item), Item::Macro(error), ..] = &file.items[..] else {
        panic!("unexpected items: {}", quote!(#file));
    };
    assert_eq!(item.sig.ident, "add");
    assert!(error.mac.path.segments.last().unwrap().ident == "compile_error");
    // Both the argument and the generics are reported.
    assert_eq!(file.items.len(), 3, "{}", quote!(#file));
}

#[test]
fn failure_drops_the_variadic() {
    let file = expand(
        quote!(),
        quote!(
            fn sum(n: usize, args: ...) -> usize {
                n
            }
        ),
    );
    let Item::Fn(item) = &file.items[0] else {
        panic!()
    };
    assert!(item.sig.variadic.is_none());
}
