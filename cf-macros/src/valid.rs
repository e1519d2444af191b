//! Every refusal of `#[task]`. Each error points at the offending node and says what is allowed.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{
    Error, Ident, Item, ItemFn, Lifetime, ParenthesizedGenericArguments, Safety, Type, TypeFnPtr,
};

use crate::ast::{Output, TaskFn};

#[cfg(test)]
mod test;

/// The most parameters a task can have: its arguments travel as one tuple, and serde implements
/// `Serialize` and `Deserialize` for tuples of up to 16 elements.
const MAX_ARGS: usize = 16;

/// Checks that `task` is a function `#[task]` can expand, reporting every problem at once.
pub(crate) fn check(task: &TaskFn<'_>) -> syn::Result<()> {
    let mut errors = Errors::default();
    let sig = &task.original.sig;
    if let Some(asyncness) = &sig.asyncness {
        errors.push(
            asyncness,
            "`#[task]` functions cannot be `async`: a task runs to completion in a worker \
             process; write a plain `fn`",
        );
    }
    if let Safety::Unsafe(unsafety) = &sig.safety {
        errors.push(
            unsafety,
            "`#[task]` functions cannot be `unsafe`: a worker calls them with no way to uphold \
             a safety contract; write a safe `fn`",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(
            abi,
            "`#[task]` functions cannot be `extern`: write a plain Rust `fn`",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.push(
            &sig.generics,
            "`#[task]` functions cannot be generic: a worker dispatches on one concrete \
             signature; use concrete types",
        );
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(
            where_clause,
            "`#[task]` functions cannot have a `where` clause: use concrete types",
        );
    }
    if let Some(receiver) = task.receiver {
        errors.push(
            receiver,
            format_args!(
                "`#[task]` functions cannot take `self`: {WHY_FREE}; take the value as an \
                 ordinary argument"
            ),
        );
    } else if let Some(self_type) = find_self_type(task.original) {
        errors.push(self_type, NOT_FREE);
    }
    for param in &task.params {
        check_type(param.ty(), Position::Argument, &mut errors);
    }
    if let Some(extra) = task.params.get(MAX_ARGS) {
        errors.push(
            extra.original,
            format_args!(
                "`#[task]` functions take at most {MAX_ARGS} arguments: they travel as one tuple, \
                 and serde implements tuples of up to {MAX_ARGS}; group them in a struct"
            ),
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(
            variadic,
            "`#[task]` functions cannot be variadic: take a `Vec<T>` or a tuple instead",
        );
    }
    match task.output {
        Output::Unit | Output::Never => {
            if let Some(result) = task.args.result.as_ref().filter(|lit| lit.value) {
                errors.push(
                    result,
                    "`#[task(result)]` needs a function that returns a `Result`",
                );
            }
        }
        Output::Value(ty) | Output::Result { original: ty, .. } | Output::ResultAlias(ty) => {
            check_type(ty, Position::Result, &mut errors);
        }
    }
    errors.finish()
}

/// Why a task must be a free function.
const WHY_FREE: &str = "a task must be a free function, because a worker looks it up by name in \
     a table and calls it with its arguments alone, without a receiver or a `Self` type";

/// The error for `#[task]` on a method or an associated function.
const NOT_FREE: &str = "`#[task]` cannot be used inside an `impl` or a trait: a task must be a free \
     function, because a worker looks it up by name in a table and calls it with its arguments \
     alone, without a receiver or a `Self` type; move it out of the `impl` (a method may call it)";

/// The error for `#[task]` on a function found inside an `impl` or a trait, at `attribute`.
pub(crate) fn not_free(attribute: Span) -> Error {
    Error::new(attribute, NOT_FREE)
}

/// The first `Self` in `item`'s signature or body, outside nested items: a function that names
/// it is inside an `impl` or a trait.
fn find_self_type(item: &ItemFn) -> Option<&Ident> {
    /// The visitor behind [`find_self_type`].
    struct FindSelf<'ast>(Option<&'ast Ident>);
    impl<'ast> Visit<'ast> for FindSelf<'ast> {
        fn visit_ident(&mut self, ident: &'ast Ident) {
            if self.0.is_none() && ident == "Self" {
                self.0 = Some(ident);
            }
        }
        // A nested `impl` has a `Self` of its own.
        fn visit_item(&mut self, _: &'ast Item) {}
    }
    let mut finder = FindSelf(None);
    finder.visit_signature(&item.sig);
    finder.visit_block(&item.block);
    finder.0
}

/// The error for `#[task]` on an item that is not a function.
pub(crate) fn not_a_fn(item: &Item) -> Error {
    Error::new_spanned(item, "`#[task]` applies only to a free `fn` with a body")
}

/// Where a type appears, for the wording of its errors.
#[derive(Clone, Copy)]
enum Position {
    /// The type of a parameter: sent to a worker.
    Argument,
    /// The return type: sent back from a worker.
    Result,
}

/// Refuses borrows and `impl Trait` anywhere in `ty`.
fn check_type(ty: &Type, position: Position, errors: &mut Errors) {
    TypeCheck { position, errors }.visit_type(ty);
}

/// The visitor behind [`check_type`].
struct TypeCheck<'e> {
    position: Position,
    errors: &'e mut Errors,
}

impl<'ast> Visit<'ast> for TypeCheck<'_> {
    fn visit_type_reference(&mut self, node: &'ast syn::TypeReference) {
        let message = match self.position {
            Position::Argument => {
                "`#[task]` arguments cannot be borrowed: they are sent to a worker process; \
                 take an owned type such as `String` or `Vec<T>`"
            }
            Position::Result => {
                "`#[task]` results cannot be borrowed: they are sent back from a worker \
                 process; return an owned type such as `String` or `Vec<T>`"
            }
        };
        self.errors.push(node, message);
    }

    fn visit_type_impl_trait(&mut self, node: &'ast syn::TypeImplTrait) {
        let message = match self.position {
            Position::Argument => {
                "`#[task]` arguments cannot be `impl Trait`: a worker dispatches on one \
                 concrete signature; name the type"
            }
            Position::Result => {
                "`#[task]` results cannot be `impl Trait`: a worker dispatches on one concrete \
                 signature; name the type"
            }
        };
        self.errors.push(node, message);
    }

    fn visit_lifetime(&mut self, node: &'ast Lifetime) {
        if node.ident == "static" {
            return;
        }
        let message = match self.position {
            Position::Argument => {
                "`#[task]` arguments cannot borrow: they are sent to a worker process; only \
                 `'static` lifetimes are allowed"
            }
            Position::Result => {
                "`#[task]` results cannot borrow: they are sent back from a worker process; \
                 only `'static` lifetimes are allowed"
            }
        };
        self.errors.push(node, message);
    }

    // Function pointers and `Fn(..)` bounds bind their own lifetimes; they are not values a
    // task can send at all, which the `Serialize` check after expansion reports.
    fn visit_type_fn_ptr(&mut self, _: &'ast TypeFnPtr) {}

    fn visit_parenthesized_generic_arguments(&mut self, _: &'ast ParenthesizedGenericArguments) {}
}

/// Errors gathered with [`Error::combine`].
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    /// Adds an error at `node`.
    fn push(&mut self, node: impl ToTokens, message: impl Display) {
        let error = Error::new_spanned(node, message);
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Err` with every error, if there was one.
    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
