//! The arguments of the attribute: `#[task]`, `#[task(name = "...", timeout = "...", result,
//! crate = path)]`.

use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream};
use syn::{Error, Ident, LitBool, LitStr, Path, Token};

#[cfg(test)]
mod test;

/// Every accepted form, for the error on a bad argument.
const ACCEPTED: &str = "expected `#[task]` or `#[task(...)]` with any of `name = \"...\"`, \
     `timeout = \"500ms\"`, `result`, `result = false` and `crate = path`";

/// The parsed arguments of one `#[task(...)]`.
///
/// Each argument is `key = value`, separated by commas. A new argument is one more field and one
/// more arm in [`TaskArgs::parse`], plus its form in [`ACCEPTED`].
#[derive(Default)]
pub(crate) struct TaskArgs {
    /// `name = "..."`: the name a worker dispatches on, instead of module path and fn name.
    pub(crate) name: Option<LitStr>,
    /// `timeout = "500ms"`: the task's default time limit, in milliseconds.
    pub(crate) timeout_ms: Option<u64>,
    /// `result` (`= true`) or `result = false`: whether the return type is a `Result` whose error
    /// fails the task, instead of deciding from its name.
    pub(crate) result: Option<LitBool>,
    /// `crate = path`: the path of the facade, for a dependency renamed from `cf`.
    pub(crate) krate: Option<Path>,
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
                "timeout" => {
                    if args.timeout_ms.is_some() {
                        return Err(Error::new_spanned(
                            &key,
                            "duplicate `#[task]` argument `timeout`",
                        ));
                    }
                    args.timeout_ms = Some(parse_timeout(&key, input)?);
                }
                "result" => {
                    if args.result.is_some() {
                        return Err(Error::new_spanned(
                            &key,
                            "duplicate `#[task]` argument `result`",
                        ));
                    }
                    args.result = Some(parse_result(&key, input)?);
                }
                "crate" => {
                    if args.krate.is_some() {
                        return Err(Error::new_spanned(
                            &key,
                            "duplicate `#[task]` argument `crate`",
                        ));
                    }
                    args.krate = Some(parse_crate(&key, input)?);
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

/// Parses what follows `result`: nothing (`true`), `= true` or `= false`.
fn parse_result(key: &Ident, input: ParseStream<'_>) -> syn::Result<LitBool> {
    if !input.peek(Token![=]) {
        return Ok(LitBool::new(true, key.span()));
    }
    input.parse::<Token![=]>()?;
    if !input.peek(LitBool) {
        return Err(input.error(
            "expected `#[task(result)]`, `#[task(result = true)]` or `#[task(result = false)]`",
        ));
    }
    input.parse()
}

/// Parses the `= path` after `crate`.
fn parse_crate(key: &Ident, input: ParseStream<'_>) -> syn::Result<Path> {
    const FORM: &str = "expected `#[task(crate = path)]` with the path of the `concurrent-futures` library, as in `crate = ::pools`";
    if !input.peek(Token![=]) {
        return Err(Error::new_spanned(key, FORM));
    }
    input.parse::<Token![=]>()?;
    input
        .call(Path::parse_mod_style)
        .map_err(|error| Error::new(error.span(), FORM))
}

/// Parses the `= "..."` after `timeout`: a number with a unit, `ms`, `s` or `m`.
fn parse_timeout(key: &Ident, input: ParseStream<'_>) -> syn::Result<u64> {
    const FORM: &str = "expected `#[task(timeout = \"...\")]` with a number and a unit: `ms`, `s` or `m`, \
         as in \"500ms\", \"2s\" or \"1.5m\"";
    if !input.peek(Token![=]) {
        return Err(Error::new_spanned(key, FORM));
    }
    input.parse::<Token![=]>()?;
    if !input.peek(LitStr) {
        return Err(input.error(FORM));
    }
    let lit: LitStr = input.parse()?;
    let text = lit.value();
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return Err(Error::new_spanned(&lit, FORM));
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * scale >= 1.0 && n * scale < 1e15 =>
        {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked to be in 1..1e15 just above"
            )]
            Ok((n * scale).round() as u64)
        }
        _ => Err(Error::new_spanned(
            &lit,
            format!("the `#[task]` timeout must be at least 1 ms: {FORM}"),
        )),
    }
}
