//! The arguments of the attribute: `#[task]` or `#[task(name = "...")]`.

use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream};
use syn::{Error, Ident, LitStr, Token};

#[cfg(test)]
mod test;

/// Every accepted form, for the error on a bad argument.
const ACCEPTED: &str = "expected `#[task]` or `#[task(name = \"...\")]`";

/// The parsed arguments of one `#[task(...)]`.
///
/// Each argument is `key = value`, separated by commas. A new argument is one more field and one
/// more arm in [`TaskArgs::parse`], plus its form in [`ACCEPTED`].
#[derive(Default)]
pub(crate) struct TaskArgs {
    /// `name = "..."`: the name a worker dispatches on, instead of module path and fn name.
    pub(crate) name: Option<LitStr>,
}

impl Parse for TaskArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = TaskArgs::default();
        while !input.is_empty() {
            if !input.peek(Ident::peek_any) {
                return Err(input.error(format!("unexpected `#[task]` argument: {ACCEPTED}")));
            }
            let key = input.call(Ident::parse_any)?;
            match key.to_string().as_str() {
                "name" => {
                    if args.name.is_some() {
                        return Err(Error::new_spanned(
                            &key,
                            "duplicate `#[task]` argument `name`",
                        ));
                    }
                    args.name = Some(parse_name(&key, input)?);
                }
                _ => {
                    return Err(Error::new_spanned(
                        &key,
                        format!("unknown `#[task]` argument `{key}`: {ACCEPTED}"),
                    ));
                }
            }
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(input.error(format!(
                    "expected `,` between `#[task]` arguments: {ACCEPTED}"
                )));
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// Parses the `= "..."` after `name`.
fn parse_name(key: &Ident, input: ParseStream<'_>) -> syn::Result<LitStr> {
    const FORM: &str = "expected `#[task(name = \"...\")]`";
    if !input.peek(Token![=]) {
        return Err(Error::new_spanned(key, FORM));
    }
    input.parse::<Token![=]>()?;
    if !input.peek(LitStr) {
        return Err(input.error(format!(
            "the `#[task]` name must be a string literal: {FORM}"
        )));
    }
    let name: LitStr = input.parse()?;
    if name.value().is_empty() {
        return Err(Error::new_spanned(
            &name,
            "the `#[task]` name must not be empty",
        ));
    }
    Ok(name)
}
