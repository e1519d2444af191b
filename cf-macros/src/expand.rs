//! The expansion of `#[task]`. Pure: syntax in, tokens out.

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::{Error, Ident, ItemFn, Type};

use crate::args::TaskArgs;
use crate::ast::{Attrs, Output, Param, TaskFn};
use crate::valid;

#[cfg(test)]
mod test;

/// The expansion of `#[task]` with `args` on `item`; on any error, `item` unchanged plus the
/// errors.
pub(crate) fn expand(args: syn::Result<TaskArgs>, item: &ItemFn) -> TokenStream {
    match try_expand(args, item) {
        Ok(expanded) => expanded,
        Err(error) => {
            // Without its `...`, which rustc would refuse a second time.
            let mut item = item.clone();
            item.sig.variadic = None;
            fallback(&item, &error)
        }
    }
}

/// `item` unchanged plus `error`: the function stays callable, so the only errors the user sees
/// are ours.
pub(crate) fn fallback(item: &impl ToTokens, error: &Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}

/// The expansion, or every error in the arguments and the function.
fn try_expand(args: syn::Result<TaskArgs>, item: &ItemFn) -> syn::Result<TokenStream> {
    let (args, args_error) = match args {
        Ok(args) => (args, None),
        Err(error) => (TaskArgs::default(), Some(error)),
    };
    let task = TaskFn::from_syn(item, &args);
    match (args_error, valid::check(&task)) {
        (None, Ok(())) => Ok(expand_task(&task)),
        (Some(mut error), Err(more)) => {
            error.combine(more);
            Err(error)
        }
        (Some(error), Ok(())) | (None, Err(error)) => Err(error),
    }
}

/// The expansion of a valid task: a marker type and a constant, both with the function's name,
/// and, hidden in an anonymous constant, the function itself and the impls that make the
/// constant callable and submittable.
fn expand_task(task: &TaskFn<'_>) -> TokenStream {
    let marker = marker_items(task);
    let hidden = hidden_items(task);
    quote!(#marker #hidden)
}

/// The names users see: the marker type and its one value, the constant.
fn marker_items(task: &TaskFn<'_>) -> TokenStream {
    let vis = &task.original.vis;
    let ident = task.ident();
    let Attrs {
        cfgs,
        lints,
        docs,
        hidden,
        ..
    } = &task.attrs;
    let marker_doc = format!(
        " The marker type of the `#[task]` function `{}`: the constant of the same name is its \
         only value, which calls like the function and is what `submit` takes.",
        ident.unraw(),
    );
    quote! {
        #(#cfgs)*
        #(#lints)*
        #(#hidden)*
        #[doc = #marker_doc]
        #[allow(non_camel_case_types)]
        #[derive(::core::clone::Clone, ::core::marker::Copy)]
        #vis struct #ident {
            _private: (),
        }

        #(#cfgs)*
        #(#lints)*
        #(#docs)*
        #[allow(non_upper_case_globals)]
        #vis const #ident: #ident = #ident { _private: () };
    }
}

/// The anonymous constant: the user's function, the impls of the marker type, the table entry
/// and the checks of the argument types.
fn hidden_items(task: &TaskFn<'_>) -> TokenStream {
    let krate = task.krate();
    let ident = task.ident();
    let Attrs {
        cfgs, lints, body, ..
    } = &task.attrs;
    // The user's function, private and otherwise exactly as written. Inside the anonymous
    // constant its name is the function again, not the constant: a parameter or a `let` may
    // reuse the name (a constant cannot be shadowed), and recursion is a direct call.
    let ItemFn { sig, block, .. } = task.original;
    let deref = deref_impl(task);
    let task_impl = task_impl(task);
    let checks = value_checks(task);
    quote! {
        #(#cfgs)*
        #(#lints)*
        const _: () = {
            #[allow(
                clippy::needless_pass_by_value,
                reason = "a task takes its arguments by value: they arrive from another process",
            )]
            #(#body)*
            #sig #block

            #deref

            impl ::core::fmt::Debug for #ident {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(<Self as #krate::__private::Task>::NAME)
                }
            }

            #[#krate::__private::linkme::distributed_slice(#krate::__private::TASKS)]
            #[linkme(crate = #krate::__private::linkme)]
            static __CF_ENTRY: #krate::__private::TaskEntry =
                #krate::__private::TaskEntry::new::<#ident>();

            #task_impl

            #(#checks)*
        };
    }
}

/// `Deref` to the plain function pointer, so the constant calls like the function.
fn deref_impl(task: &TaskFn<'_>) -> TokenStream {
    let ident = task.ident();
    let types = task.params.iter().map(Param::ty);
    let ret = &task.original.sig.output;
    let fn_ptr = quote!(fn(#(#types),*) #ret);
    quote! {
        impl ::core::ops::Deref for #ident {
            type Target = #fn_ptr;

            #[inline]
            fn deref(&self) -> &Self::Target {
                static __CF_FN: #fn_ptr = #ident;
                &__CF_FN
            }
        }
    }
}

/// `impl Task`: the argument shape, the outcome types, the name, the time limit and the call.
fn task_impl(task: &TaskFn<'_>) -> TokenStream {
    let krate = task.krate();
    let ident = task.ident();
    let (args_ty, args_pat) = args_shape(task);
    let Outcome {
        output,
        error,
        call,
    } = outcome(task);
    let name = task_name(task);
    let timeout = task.args.timeout_ms.map(|ms| {
        quote! {
            const TIMEOUT: ::core::option::Option<::core::time::Duration> =
                ::core::option::Option::Some(::core::time::Duration::from_millis(#ms));
        }
    });
    quote! {
        impl #krate::__private::Task for #ident {
            type Args = #args_ty;
            type Output = #output;
            type Error = #error;
            const NAME: &'static str = #name;
            #timeout

            #[inline]
            fn call(#args_pat: Self::Args) -> ::core::result::Result<Self::Output, Self::Error> {
                #call
            }

            fn entry() -> &'static #krate::__private::TaskEntry {
                &__CF_ENTRY
            }
        }
    }
}

/// `Task::Args` and the pattern that takes it apart: the value itself for one parameter, a tuple
/// otherwise.
fn args_shape(task: &TaskFn<'_>) -> (TokenStream, TokenStream) {
    let types: Vec<&Type> = task.params.iter().map(Param::ty).collect();
    let bindings: Vec<&Ident> = task.params.iter().map(|param| &param.binding).collect();
    match (types.as_slice(), bindings.as_slice()) {
        ([ty], [binding]) => (quote!(#ty), quote!(#binding)),
        _ => {
            // An unmet bound on the tuple is reported at the tuple: make that the parameter
            // list rather than the attribute.
            let mut tuple = Group::new(Delimiter::Parenthesis, quote!(#(#types),*));
            tuple.set_span(task.original.sig.paren_token.span.join());
            (tuple.into_token_stream(), quote!((#(#bindings),*)))
        }
    }
}

/// The outcome types of a task and the body of `Task::call`.
struct Outcome {
    /// `Task::Output`.
    output: TokenStream,
    /// `Task::Error`.
    error: TokenStream,
    /// Calls the function and makes its return value a `Result`.
    call: TokenStream,
}

/// How the function's return value becomes the task's outcome.
fn outcome(task: &TaskFn<'_>) -> Outcome {
    let krate = task.krate();
    let ident = task.ident();
    let bindings = task.params.iter().map(|param| &param.binding);
    let call = quote!(#ident(#(#bindings),*));
    let never = quote!(#krate::__private::Never);
    let (output, error, call) = match task.output {
        Output::Unit => (
            quote!(()),
            never,
            quote!(#call; ::core::result::Result::Ok(())),
        ),
        Output::Never => (never.clone(), never, call),
        Output::Value(ty) => (
            quote!(#ty),
            never,
            quote!(::core::result::Result::Ok(#call)),
        ),
        Output::Result { ok, err, .. } => (quote!(#ok), quote!(#err), call),
        Output::ResultAlias(ty) => {
            let result = quote_spanned!(ty.span()=> <#ty as #krate::__private::TaskResult>);
            (
                quote!(#result::Ok),
                quote!(#result::Err),
                quote_spanned!(ty.span()=> #result::into_result(#call)),
            )
        }
    };
    Outcome {
        output,
        error,
        call,
    }
}

/// `Task::NAME`: the pinned name, or module path and function name.
fn task_name(task: &TaskFn<'_>) -> TokenStream {
    match &task.args.name {
        Some(name) => name.to_token_stream(),
        None => {
            let fn_name = task.ident().unraw().to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #fn_name))
        }
    }
}

/// A value check per parameter of a tuple, spanned at its type.
///
/// A type that is not a value fails a bound of `Task`. Where the associated type is the user's
/// own type (one parameter, the result, the error) that error already points at it; the
/// parameters of a tuple get a check each, so E0277 points at the parameter too.
fn value_checks(task: &TaskFn<'_>) -> Vec<TokenStream> {
    let krate = task.krate();
    if task.params.len() < 2 {
        return Vec::new();
    }
    task.params
        .iter()
        .map(|param| {
            let ty = param.ty();
            quote_spanned! {ty.span()=>
                const _: () = #krate::__private::assert_value::<#ty>();
            }
        })
        .collect()
}
