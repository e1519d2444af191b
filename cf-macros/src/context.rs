//! Whether `#[task]` sits inside an `impl` or a trait. An attribute macro sees only its item, and
//! the expansion (a type and a constant) is not valid there, which rustc reports as a cascade of
//! six unrelated errors. Two ways to tell it first, so the user gets one error that says why:
//! the function names `Self` (see [`valid`](crate::valid)), or, read here, the source file has
//! a `#[task]` function of that name inside an `impl` or a trait and none outside.
//!
//! Only a yes is acted on; anything unknown (no file on disk, a file syn cannot parse, a name also
//! used by a free task) is a no, and the expansion goes ahead as usual.

use syn::ext::IdentExt as _;
use syn::visit::{self, Visit};
use syn::{Attribute, Ident, ImplItemFn, ItemFn, TraitItemFn};

/// Whether `item`, under the attribute being expanded, is a method or an associated function.
pub(crate) fn in_impl_or_trait(item: &ItemFn) -> bool {
    let attribute = proc_macro::Span::call_site();
    // A free function is usually not indented: skip reading the file for those.
    if attribute.column() <= 1 {
        return false;
    }
    let Some(path) = attribute.local_file() else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(file) = syn::parse_file(&text) else {
        return false;
    };
    let name = item.sig.ident.unraw();
    let mut finder = Finder {
        name: &name,
        free: 0,
        associated: 0,
    };
    finder.visit_file(&file);
    finder.associated > 0 && finder.free == 0
}

/// Counts the `#[task]` functions named `name`, free and associated.
struct Finder<'n> {
    name: &'n Ident,
    free: usize,
    associated: usize,
}

impl Finder<'_> {
    /// Whether a function with `ident` and `attrs` is a `#[task]` named like ours.
    fn is_ours(&self, ident: &Ident, attrs: &[Attribute]) -> bool {
        ident.unraw() == *self.name
            && attrs.iter().any(|attr| {
                attr.path()
                    .segments
                    .last()
                    .is_some_and(|segment| segment.ident == "task")
            })
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_item_fn(&mut self, node: &'ast ItemFn) {
        if self.is_ours(&node.sig.ident, &node.attrs) {
            self.free += 1;
        }
        visit::visit_item_fn(self, node);
    }

    fn visit_impl_item_fn(&mut self, node: &'ast ImplItemFn) {
        if self.is_ours(&node.sig.ident, &node.attrs) {
            self.associated += 1;
        }
        visit::visit_impl_item_fn(self, node);
    }

    fn visit_trait_item_fn(&mut self, node: &'ast TraitItemFn) {
        if self.is_ours(&node.sig.ident, &node.attrs) {
            self.associated += 1;
        }
        visit::visit_trait_item_fn(self, node);
    }
}
