//! Every refusal of `#[task]`. Each error points at the offending node and says what is allowed.

use std::fmt::Display;

use quote::ToTokens;
use syn::visit::Visit;
use syn::{Error, Item, Lifetime, ParenthesizedGenericArguments, Safety, Type, TypeFnPtr};

use crate::ast::{Output, TaskFn};

#[cfg(test)]
mod test;

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
            "`#[task]` functions cannot take `self`: a task is a free function; take the value \
             as an ordinary argument",
        );
    }
    for param in &task.params {
        check_type(param.ty(), Position::Argument, &mut errors);
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(
            variadic,
            "`#[task]` functions cannot be variadic: take a `Vec<T>` or a tuple instead",
        );
    }
    match task.output {
        Output::Unit | Output::Never => {}
        Output::Value(ty) | Output::Result { original: ty, .. } => {
            check_type(ty, Position::Result, &mut errors);
        }
    }
    errors.finish()
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
