//! A borrowed model of a `#[task]` function. Each node keeps the syn node it came from, so an
//! error can point at exactly what the user wrote.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemFn, Meta, PatType, PathArguments, PathSegment,
    Receiver, ReturnType, Type,
};

use crate::args::TaskArgs;

/// A function under `#[task]`, with its arguments.
pub(crate) struct TaskFn<'a> {
    /// The function as written.
    pub(crate) original: &'a ItemFn,
    /// The arguments of the attribute.
    pub(crate) args: &'a TaskArgs,
    /// The function's attributes, sorted by the generated item they go on.
    pub(crate) attrs: Attrs<'a>,
    /// A `self` receiver (refused).
    pub(crate) receiver: Option<&'a Receiver>,
    /// The typed parameters, in order.
    pub(crate) params: Vec<Param<'a>>,
    /// What the function returns.
    pub(crate) output: Output<'a>,
}

/// The function's attributes, sorted by the generated item they go on.
#[derive(Default)]
pub(crate) struct Attrs<'a> {
    /// `#[cfg(...)]`: on every generated item.
    pub(crate) cfgs: Vec<&'a Attribute>,
    /// `#[allow]`, `#[warn]`, `#[deny]`, `#[forbid]`: on every generated item, so they reach the
    /// body too.
    pub(crate) lints: Vec<&'a Attribute>,
    /// Doc comments, `#[doc(...)]` and `#[deprecated]`: on the constant, the name users see.
    pub(crate) docs: Vec<&'a Attribute>,
    /// `#[doc(hidden)]`: also on the marker type.
    pub(crate) hidden: Vec<&'a Attribute>,
    /// Everything else (`#[inline]`, `#[expect]`, `#[track_caller]`, ...): on the function.
    pub(crate) body: Vec<&'a Attribute>,
}

/// One typed parameter.
pub(crate) struct Param<'a> {
    /// The parameter as written (`(a, b): (i32, i32)`, `mut x: u8`).
    pub(crate) original: &'a PatType,
    /// The fresh name the argument is bound to before the function is called.
    pub(crate) binding: Ident,
}

impl<'a> Param<'a> {
    /// The parameter's type.
    pub(crate) fn ty(&self) -> &'a Type {
        &self.original.ty
    }
}

/// What the function returns, sorted by how the task's outcome is built from it.
pub(crate) enum Output<'a> {
    /// No `->`: the task produces `()`.
    Unit,
    /// `-> !`: the task never produces a value.
    Never,
    /// `-> T`: the task produces `T` and cannot fail.
    Value(&'a Type),
    /// `-> Result<T, E>` (any path ending in `Result` with two type arguments, unless
    /// `result = false`): the task produces `T` or fails with `E`.
    Result {
        /// The whole return type.
        original: &'a Type,
        /// `T`.
        ok: &'a Type,
        /// `E`.
        err: &'a Type,
    },
    /// `-> io::Result<T>`, `-> fmt::Result`, or any type under `result = true`: an alias of
    /// `Result<T, E>` whose `T` and `E` only the compiler knows. The task produces `T` or fails
    /// with `E`; a type that is no `Result` is a compile error.
    ResultAlias(&'a Type),
}

impl<'a> TaskFn<'a> {
    /// The model of `item`. Building it cannot fail: [`valid`](crate::valid) refuses what the
    /// expansion cannot handle.
    pub(crate) fn from_syn(item: &'a ItemFn, args: &'a TaskArgs) -> Self {
        let mut receiver = None;
        let mut params = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(original) => receiver = Some(original),
                FnArg::Typed(original) => params.push(Param {
                    original,
                    binding: Ident::new(&format!("__cf_arg{}", params.len()), Span::mixed_site()),
                }),
            }
        }
        TaskFn {
            original: item,
            args,
            attrs: Attrs::sort(&item.attrs),
            receiver,
            params,
            output: Output::from_syn(&item.sig.output, args.result.as_ref().map(|lit| lit.value)),
        }
    }

    /// The function's name.
    pub(crate) fn ident(&self) -> &'a Ident {
        &self.original.sig.ident
    }

    /// The path of the facade in generated code: `::cf`, or the `crate = path` argument.
    pub(crate) fn krate(&self) -> TokenStream {
        self.args
            .krate
            .as_ref()
            .map_or_else(|| quote!(::cf), ToTokens::to_token_stream)
    }
}

impl<'a> Attrs<'a> {
    /// Sorts `attrs` by the generated item they go on.
    fn sort(attrs: &'a [Attribute]) -> Self {
        let mut sorted = Attrs::default();
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("cfg") {
                sorted.cfgs.push(attr);
            } else if ["allow", "warn", "deny", "forbid"]
                .iter()
                .any(|lint| path.is_ident(lint))
            {
                sorted.lints.push(attr);
            } else if path.is_ident("doc") {
                if is_doc_hidden(attr) {
                    sorted.hidden.push(attr);
                }
                sorted.docs.push(attr);
            } else if path.is_ident("deprecated") {
                sorted.docs.push(attr);
            } else {
                sorted.body.push(attr);
            }
        }
        sorted
    }
}

/// Whether `attr` is `#[doc(hidden)]`.
fn is_doc_hidden(attr: &Attribute) -> bool {
    match &attr.meta {
        Meta::List(list) => list
            .parse_args::<Ident>()
            .is_ok_and(|word| word == "hidden"),
        Meta::Path(_) | Meta::NameValue(_) => false,
    }
}

impl<'a> Output<'a> {
    /// Sorts a return type; `result` is the `result` argument, if given.
    fn from_syn(output: &'a ReturnType, result: Option<bool>) -> Self {
        let ReturnType::Type(_, ty) = output else {
            return Output::Unit;
        };
        let inner = ungroup(ty);
        if matches!(inner, Type::Never(_)) {
            return Output::Never;
        }
        if result == Some(false) {
            return Output::Value(ty);
        }
        match (result_args(inner), is_named_result(inner)) {
            (Some((ok, err)), _) => Output::Result {
                original: ty,
                ok,
                err,
            },
            (None, true) => Output::ResultAlias(ty),
            (None, false) if result == Some(true) => Output::ResultAlias(ty),
            (None, false) => Output::Value(ty),
        }
    }
}

/// Whether `ty` is a path whose last segment is `Result`: `Result<T>`, `io::Result<T>`,
/// `fmt::Result`, ...
fn is_named_result(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|last| last.ident == "Result")
}

/// The last segment of a plain path type.
fn last_segment(ty: &Type) -> Option<&PathSegment> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    path.path.segments.last()
}

/// `T` and `E` of a type written `...Result<T, E>`.
fn result_args(ty: &Type) -> Option<(&Type, &Type)> {
    let last = last_segment(ty)?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(Some(ok)), Some(Some(err)), None) => Some((ok, err)),
        _ => None,
    }
}

/// `ty` without the invisible groups and parentheses around it.
fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}
