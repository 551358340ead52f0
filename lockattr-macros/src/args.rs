//! Parsing `#[distributed_lock(...)]`'s arguments into typed, not yet validated, options.
//!
//! Each option is `name = value` (or the bare flag `auto_renew`). Values are kept as expressions
//! here; whether they are the right kind of value (a string template, a duration, a bool) is
//! decided by [`crate::validate`], so that every mistake is reported, not just the first.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Error, Expr, Ident, Token};

/// The option names, as custom keywords (`crate` is a real keyword: `Token![crate]`).
pub(crate) mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(key_expr);
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(auto_renew);
    syn::custom_keyword!(wait);
    syn::custom_keyword!(client);
    syn::custom_keyword!(on_lost);
    syn::custom_keyword!(min_hold);
}

/// Every option name, in the order the docs list them.
pub(crate) const OPTION_NAMES: &str =
    "key, key_expr, ttl, auto_renew, wait, client, on_lost, min_hold, crate";

/// One option as written.
pub(crate) struct Opt<T> {
    /// The span of the option's name (where "given twice" and similar errors point).
    pub name: Span,
    /// The value after `=`.
    pub value: T,
}

/// The options as written, each at most once.
#[derive(Default)]
pub(crate) struct Args {
    pub key: Option<Opt<Expr>>,
    pub key_expr: Option<Opt<Expr>>,
    pub ttl: Option<Opt<Expr>>,
    /// `None` inside: the bare flag `auto_renew`.
    pub auto_renew: Option<Opt<Option<Expr>>>,
    pub wait: Option<Opt<Expr>>,
    pub client: Option<Opt<Expr>>,
    pub on_lost: Option<Opt<Expr>>,
    pub min_hold: Option<Opt<Expr>>,
    pub krate: Option<Opt<Expr>>,
}

/// Parses the attribute's arguments. Never stops at the first mistake: after an error it skips to
/// the next top-level `,` and carries on, so all errors are returned together.
pub(crate) fn parse(tokens: TokenStream) -> (Args, Vec<Error>) {
    let mut args = Args::default();
    let mut errors = Vec::new();
    let parser = |input: ParseStream| -> syn::Result<()> {
        while !input.is_empty() {
            if let Err(error) = parse_one(input, &mut args) {
                errors.push(error);
                skip_past_comma(input)?;
                continue;
            }
            if input.is_empty() {
                break;
            }
            if let Err(error) = input.parse::<Token![,]>() {
                errors.push(error);
                skip_past_comma(input)?;
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    (args, errors)
}

/// Skips tokens up to and including the next top-level `,` (or to the end).
fn skip_past_comma(input: ParseStream) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            rest = next;
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
        }
        Ok(((), rest))
    })
}

fn parse_one(input: ParseStream, args: &mut Args) -> syn::Result<()> {
    let lookahead = input.lookahead1();
    if lookahead.peek(kw::key) {
        let name = input.parse::<kw::key>()?.span;
        let value = value(input, name, "key", "key = \"order:{order.id}\"")?;
        set(&mut args.key, "key", name, value)
    } else if lookahead.peek(kw::key_expr) {
        let name = input.parse::<kw::key_expr>()?.span;
        let example = "key_expr = format!(\"job:{}\", self.name)";
        let value = value(input, name, "key_expr", example)?;
        set(&mut args.key_expr, "key_expr", name, value)
    } else if lookahead.peek(kw::ttl) {
        let name = input.parse::<kw::ttl>()?.span;
        let value = value(input, name, "ttl", "ttl = \"30s\"")?;
        set(&mut args.ttl, "ttl", name, value)
    } else if lookahead.peek(kw::auto_renew) {
        let name = input.parse::<kw::auto_renew>()?.span;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse::<Expr>()?)
        } else {
            None
        };
        set(&mut args.auto_renew, "auto_renew", name, value)
    } else if lookahead.peek(kw::wait) {
        let name = input.parse::<kw::wait>()?.span;
        let value = value(input, name, "wait", "wait = \"2s\"")?;
        set(&mut args.wait, "wait", name, value)
    } else if lookahead.peek(kw::client) {
        let name = input.parse::<kw::client>()?.span;
        let value = value(input, name, "client", "client = APP_LOCKS")?;
        set(&mut args.client, "client", name, value)
    } else if lookahead.peek(kw::on_lost) {
        let name = input.parse::<kw::on_lost>()?.span;
        let value = value(input, name, "on_lost", "on_lost = \"finish\"")?;
        set(&mut args.on_lost, "on_lost", name, value)
    } else if lookahead.peek(kw::min_hold) {
        let name = input.parse::<kw::min_hold>()?.span;
        let value = value(input, name, "min_hold", "min_hold = \"10s\"")?;
        set(&mut args.min_hold, "min_hold", name, value)
    } else if lookahead.peek(Token![crate]) {
        let name = input.parse::<Token![crate]>()?.span;
        let value = value(input, name, "crate", "crate = \"lockattr_runtime\"")?;
        set(&mut args.krate, "crate", name, value)
    } else if input.peek(Ident::peek_any) {
        let unknown = input.call(Ident::parse_any)?;
        Err(Error::new(
            unknown.span(),
            format!("unknown option `{unknown}`; expected one of: {OPTION_NAMES}"),
        ))
    } else {
        Err(lookahead.error())
    }
}

/// Parses `= <expr>` after an option's name.
fn value(input: ParseStream, name: Span, option: &str, example: &str) -> syn::Result<Expr> {
    if !input.peek(Token![=]) {
        return Err(Error::new(
            name,
            format!("`{option}` needs a value, e.g. `{example}`"),
        ));
    }
    input.parse::<Token![=]>()?;
    input.parse::<Expr>()
}

fn set<T>(slot: &mut Option<Opt<T>>, option: &str, name: Span, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(Error::new(
            name,
            format!("duplicate option `{option}`: give it once"),
        ));
    }
    *slot = Some(Opt { name, value });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(errors: &[Error]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn parses_every_option() {
        let (args, errors) = parse(quote! {
            key = "order:{order.id}", ttl = "7s", auto_renew, wait = "2s",
            client = self.locks, on_lost = "finish", min_hold = "1s", crate = "my_locks",
        });
        assert!(errors.is_empty(), "{:?}", messages(&errors));
        assert!(args.key.is_some());
        assert!(args.key_expr.is_none());
        assert!(args.ttl.is_some());
        assert!(matches!(args.auto_renew, Some(Opt { value: None, .. })));
        assert!(args.wait.is_some());
        assert!(matches!(
            args.client,
            Some(Opt {
                value: Expr::Field(_),
                ..
            })
        ));
        assert!(args.on_lost.is_some());
        assert!(args.min_hold.is_some());
        assert!(args.krate.is_some());
    }

    #[test]
    fn expression_values_may_contain_commas_and_generics() {
        let (args, errors) = parse(quote! {
            key_expr = format!("job:{}:{}", a, b), client = crate::locks::<A, B>(), auto_renew = false
        });
        assert!(errors.is_empty(), "{:?}", messages(&errors));
        assert!(matches!(
            args.key_expr,
            Some(Opt {
                value: Expr::Macro(_),
                ..
            })
        ));
        assert!(matches!(
            args.client,
            Some(Opt {
                value: Expr::Call(_),
                ..
            })
        ));
        assert!(matches!(args.auto_renew, Some(Opt { value: Some(_), .. })));
    }

    #[test]
    fn empty_arguments_are_fine_here() {
        let (args, errors) = parse(TokenStream::new());
        assert!(errors.is_empty());
        assert!(args.key.is_none());
    }

    #[test]
    fn unknown_option() {
        let (args, errors) = parse(quote!(key = "a", tll = "7s", ttl = "1s"));
        assert_eq!(
            messages(&errors),
            [
                "unknown option `tll`; expected one of: key, key_expr, ttl, auto_renew, wait, \
              client, on_lost, min_hold, crate"
            ]
        );
        // Parsing went on after the mistake.
        assert!(args.ttl.is_some());
    }

    #[test]
    fn duplicates_are_rejected() {
        let (_, errors) = parse(quote!(
            key = "a",
            ttl = "1s",
            ttl = "2s",
            auto_renew,
            auto_renew
        ));
        assert_eq!(
            messages(&errors),
            [
                "duplicate option `ttl`: give it once",
                "duplicate option `auto_renew`: give it once"
            ]
        );
    }

    #[test]
    fn missing_value_and_missing_comma() {
        let (_, errors) = parse(quote!(ttl, key = "a"));
        assert_eq!(
            messages(&errors),
            ["`ttl` needs a value, e.g. `ttl = \"30s\"`"]
        );
        let (args, errors) = parse(quote!(key = "a" ttl = "1s", wait = "1s"));
        assert_eq!(messages(&errors), ["expected `,`"]);
        assert!(args.wait.is_some());
    }

    #[test]
    fn every_error_is_collected() {
        let (_, errors) = parse(quote!(foo = 1, key = "a", key = "b", 42, bar));
        assert_eq!(errors.len(), 4, "{:?}", messages(&errors));
        assert!(messages(&errors)[2].starts_with("expected one of"));
    }
}
