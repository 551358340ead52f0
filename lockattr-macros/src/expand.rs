//! Code generation: the attribute's driver ([`expand`]) and the rewrite of the fn body.
//!
//! The signature is kept verbatim. The body becomes:
//!
//! ```text
//! async fn settle(&self, order: &Order, user_id: u64) -> Result<Receipt, AppError> {
//!     let __lockattr_key: String = { /* KeyBuf: lit("order:"), arg(&order.id), .. */ };
//!     let __lockattr_client = ::lockattr_runtime::__private::default_client();
//!     const __LOCKATTR_OPTS: Options = Options::new(7000).auto_renew(true).wait_ms(2000);
//!     ::lockattr_runtime::__private::run_locked(__lockattr_client, __lockattr_key, __LOCKATTR_OPTS,
//!         async move {
//!             // pins the block's output type, so `?`, `return` and `impl Trait` infer
//!             if let Some(__lockattr_ret) = None::<Result<Receipt, AppError>> { return __lockattr_ret; }
//!             BODY
//!         }).await
//! }
//! ```
//!
//! For the shape `#[async_trait]` leaves (`Box::pin(async move { .. let __ret: R = { BODY }; .. })`)
//! the same is done to `{ BODY }`, inside the boxed async block.

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{AttrStyle, Error, Expr, Ident, Item, ItemFn, Stmt, TraitItemFn, Type};

use crate::args;
use crate::key::{Member, Segment};
use crate::validate::{self, KeySource, Plan, Shape};

/// Expands `#[distributed_lock(attr)] item`. On any error the item is returned unchanged, followed
/// by one `compile_error!` per mistake, so the rest of the crate (and the IDE) keeps working.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let (args, mut errors) = args::parse(attr);
    let func = match parse_fn(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            errors.push(error);
            return with_errors(item, errors);
        }
    };
    match validate::validate(args, &func, &mut errors) {
        Some(plan) if errors.is_empty() => generate(func, &plan),
        _ => with_errors(item, errors),
    }
}

/// The original tokens plus the errors, combined into one `compile_error!` per mistake.
fn with_errors(mut item: TokenStream, errors: Vec<Error>) -> TokenStream {
    let combined = errors.into_iter().reduce(|mut all, error| {
        all.combine(error);
        all
    });
    if let Some(errors) = combined {
        item.extend(errors.into_compile_error());
    }
    item
}

/// Parses the annotated item as a fn with a body; anything else is an error naming what it is.
fn parse_fn(item: TokenStream) -> syn::Result<ItemFn> {
    let fn_error = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => return Ok(func),
        Err(error) => error,
    };
    if let Ok(decl) = syn::parse2::<TraitItemFn>(item.clone()) {
        if decl.default.is_none() {
            return Err(Error::new(
                decl.sig.fn_token.span,
                "#[distributed_lock] goes on an `async fn` with a body; this declaration has \
                 none: put the attribute on the fn in the `impl` block (or on a default body)",
            ));
        }
    }
    let what = match syn::parse2::<Item>(item) {
        Ok(Item::Struct(i)) => Some((i.struct_token.span, "a struct")),
        Ok(Item::Enum(i)) => Some((i.enum_token.span, "an enum")),
        Ok(Item::Union(i)) => Some((i.union_token.span, "a union")),
        Ok(Item::Trait(i)) => Some((i.trait_token.span, "a trait: put it on a fn with a body")),
        Ok(Item::Impl(i)) => Some((
            i.impl_token.span,
            "an `impl` block: put it on each `async fn` that takes the lock",
        )),
        Ok(Item::Mod(i)) => Some((i.mod_token.span, "a module")),
        Ok(Item::Const(i)) => Some((i.const_token.span, "a const")),
        Ok(Item::Static(i)) => Some((i.static_token.span, "a static")),
        Ok(Item::Type(i)) => Some((i.type_token.span, "a type alias")),
        Ok(Item::Use(i)) => Some((i.use_token.span, "a `use`")),
        Ok(Item::Macro(i)) => Some((i.mac.path.span(), "a macro invocation")),
        Ok(Item::ExternCrate(i)) => Some((i.extern_token.span, "an `extern crate`")),
        Ok(Item::ForeignMod(i)) => Some((i.abi.extern_token.span, "an `extern` block")),
        Ok(Item::TraitAlias(i)) => Some((i.trait_token.span, "a trait alias")),
        _ => None,
    };
    Err(match what {
        Some((span, what)) => Error::new(
            span,
            format!("#[distributed_lock] goes on an `async fn`, not on {what}"),
        ),
        None => fn_error,
    })
}

/// Generates the locked fn.
fn generate(mut func: ItemFn, plan: &Plan) -> TokenStream {
    match plan.shape {
        Shape::AsyncFn => {
            let (outer, inner): (Vec<_>, Vec<_>) = func
                .attrs
                .iter()
                .partition(|attr| matches!(attr.style, AttrStyle::Outer));
            let ItemFn {
                vis, sig, block, ..
            } = &func;
            let stmts = &block.stmts;
            let body = locked_body(plan, quote!(#(#stmts)*), None);
            quote! {
                #(#outer)*
                #vis #sig {
                    #(#inner)*
                    #body
                }
            }
        }
        Shape::AsyncTrait { ret_stmt } => {
            let Some(async_block) = validate::boxed_async_block_mut(&mut func.block) else {
                // `validate` checked the shape; keep the fn as it is if that ever changes.
                return func.into_token_stream();
            };
            let stmts = &mut async_block.block.stmts;
            let ret_init = ret_stmt
                .and_then(|index| stmts.get_mut(index))
                .and_then(|stmt| match stmt {
                    Stmt::Local(local) => local.init.as_mut(),
                    _ => None,
                });
            match ret_init {
                // `let __ret: R = { BODY };` -> `let __ret: R = { <lock>; run_locked(.., async move { BODY }).await };`
                Some(init) => {
                    let original = &init.expr;
                    let body = locked_body(plan, quote!(#original), plan.scope.self_alias.as_ref());
                    *init.expr = Expr::Verbatim(quote!({ #body }));
                }
                // Unknown layout: wrap the whole async block; `self` is still `self` there.
                None => {
                    let original = std::mem::take(stmts);
                    let body = locked_body(plan, quote!(#(#original)*), None);
                    *stmts = vec![Stmt::Expr(Expr::Verbatim(body), None)];
                }
            }
            func.into_token_stream()
        }
    }
}

/// The key, client and options, then the call of `run_locked` with `body` as an `async move`
/// block. `self_alias` is the name `self` goes by where this code is placed.
fn locked_body(plan: &Plan, body: TokenStream, self_alias: Option<&Ident>) -> TokenStream {
    let krate = &plan.krate;
    let key = Ident::new("__lockattr_key", Span::mixed_site());
    let client = Ident::new("__lockattr_client", Span::mixed_site());
    let ret = Ident::new("__lockattr_ret", Span::mixed_site());
    let opts = format_ident!("__LOCKATTR_OPTS");

    let key_value = match &plan.key {
        KeySource::Template(lit, segments) => template_key(plan, lit, segments, self_alias),
        KeySource::Expr(expr) => {
            let expr = with_self_alias(expr.clone(), self_alias);
            call_at(
                expr.span(),
                krate,
                "key_from_expr",
                borrow_at(expr.span(), &expr),
            )
        }
    };
    let client_value = match &plan.client {
        Some(expr) => {
            let expr = with_self_alias(expr.clone(), self_alias);
            // "not a lock client" errors point at the expression.
            call_at(expr.span(), krate, "client", borrow_at(expr.span(), &expr))
        }
        None => quote!(#krate::__private::default_client()),
    };
    let options = options(plan);

    let mut output = plan.output.clone();
    validate::EraseImplTrait.visit_type_mut(&mut output);
    // Errors about the error type (`E: From<LockError>`) point at the return type.
    let output_span = plan.output.span();
    let run_locked = call_at(
        output_span,
        krate,
        "run_locked",
        quote! {
            #client, #key, #opts, async move {
                if let ::core::option::Option::Some(#ret) = ::core::option::Option::None::<#output> {
                    #[allow(unreachable_code)]
                    return #ret;
                }
                #body
            }
        },
    );

    let dot_await = relocate(quote!(.await), output_span);
    quote! {
        let #key: ::std::string::String = #key_value;
        let #client = #client_value;
        const #opts: #krate::__private::Options = #options;
        #run_locked #dot_await
    }
}

/// `#krate::__private::#function(#args)`, with the callee and the parentheses located at `at`
/// (their names still resolve as the macro's), so that the compiler reports an unsatisfied bound
/// of the call at the user's token instead of at the whole attribute.
fn call_at(at: Span, krate: &syn::Path, function: &str, args: TokenStream) -> TokenStream {
    let function = Ident::new(function, Span::call_site());
    let mut call = relocate(quote!(#krate::__private::#function), at);
    call.extend([group_at(at, Delimiter::Parenthesis, args)]);
    call
}

/// `&(#expr)`, located at `at` (the compiler reports a call's unsatisfied argument bound at the
/// argument).
fn borrow_at(at: Span, expr: &Expr) -> TokenStream {
    let mut borrow = relocate(quote!(&), at);
    borrow.extend([group_at(at, Delimiter::Parenthesis, expr.to_token_stream())]);
    borrow
}

/// `tokens` (flat: no groups) moved to `at`, resolving as before.
fn relocate(tokens: TokenStream, at: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            tt.set_span(tt.span().located_at(at));
            tt
        })
        .collect()
}

fn group_at(at: Span, delimiter: Delimiter, inner: TokenStream) -> TokenTree {
    let mut group = Group::new(delimiter, inner);
    group.set_span(Span::call_site().located_at(at));
    TokenTree::Group(group)
}

/// `Options::new(ttl)` plus one call per option given.
fn options(plan: &Plan) -> TokenStream {
    let krate = &plan.krate;
    let o = plan.options;
    let ttl = Literal::u64_unsuffixed(o.ttl_ms);
    let mut tokens = quote!(#krate::__private::Options::new(#ttl));
    if let Some(on) = o.auto_renew {
        tokens.extend(quote!(.auto_renew(#on)));
    }
    if let Some(ms) = o.wait_ms {
        let ms = Literal::u64_unsuffixed(ms);
        tokens.extend(quote!(.wait_ms(#ms)));
    }
    if o.on_lost_finish {
        tokens.extend(quote!(.on_lost_finish()));
    }
    if let Some(ms) = o.min_hold_ms {
        let ms = Literal::u64_unsuffixed(ms);
        tokens.extend(quote!(.min_hold_ms(#ms)));
    }
    tokens
}

/// A block building the key from the template: `KeyBuf::new()`, `lit(..)` and `arg(&path)`
/// calls, `finish()`. Paths are spanned at their placeholder, so "doesn't implement `Display`"
/// or "no field" errors point into the literal.
fn template_key(
    plan: &Plan,
    lit: &syn::LitStr,
    segments: &[Segment],
    self_alias: Option<&Ident>,
) -> TokenStream {
    let krate = &plan.krate;
    let buf = Ident::new("__lockattr_k", Span::mixed_site());
    let mut calls = TokenStream::new();
    for segment in segments {
        match segment {
            Segment::Text(text) => calls.extend(quote!(#buf.lit(#text);)),
            Segment::Field(field) => {
                let span = validate::placeholder_span(lit, field.range.clone());
                let root = if field.root == "self" {
                    match self_alias {
                        Some(alias) => Ident::new("__self", alias.span().located_at(span)),
                        None => Ident::new("self", span),
                    }
                } else {
                    match plan.scope.param(&field.root) {
                        Some(param) => {
                            let mut ident = param.clone();
                            ident.set_span(param.span().located_at(span));
                            ident
                        }
                        None => Ident::new(&field.root, span),
                    }
                };
                let members = field.members.iter().map(|member| match member {
                    Member::Named(name) => {
                        let name = Ident::new(name, span);
                        quote_spanned!(span=> .#name)
                    }
                    Member::Index(index) => {
                        let index = syn::Index {
                            index: *index,
                            span,
                        };
                        quote_spanned!(span=> .#index)
                    }
                });
                calls.extend(quote_spanned!(span=> #buf.arg(&#root #(#members)*);));
            }
        }
    }
    quote! {{
        let mut #buf = #krate::__private::KeyBuf::new();
        #calls
        #buf.finish()
    }}
}

/// Inside `#[async_trait]`'s block `self` has been moved to `__self`: rename it in the user's
/// `key_expr`/`client` expressions the same way async-trait renames it in the body.
fn with_self_alias(mut expr: Expr, self_alias: Option<&Ident>) -> Expr {
    if let Some(alias) = self_alias {
        ReplaceSelf { alias }.visit_expr_mut(&mut expr);
    }
    expr
}

struct ReplaceSelf<'a> {
    alias: &'a Ident,
}

impl ReplaceSelf<'_> {
    fn renamed(&self, ident: &Ident) -> Ident {
        Ident::new("__self", self.alias.span().located_at(ident.span()))
    }

    fn tokens(&self, tokens: TokenStream) -> TokenStream {
        tokens
            .into_iter()
            .map(|tt| match tt {
                TokenTree::Ident(ident) if ident == "self" => {
                    TokenTree::Ident(self.renamed(&ident))
                }
                TokenTree::Group(group) => {
                    let mut new = Group::new(group.delimiter(), self.tokens(group.stream()));
                    new.set_span(group.span());
                    TokenTree::Group(new)
                }
                other => other,
            })
            .collect()
    }
}

impl VisitMut for ReplaceSelf<'_> {
    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() == 1 {
            let segment = &mut path.segments[0];
            if segment.ident == "self" {
                segment.ident = self.renamed(&segment.ident);
            }
        }
        syn::visit_mut::visit_path_mut(self, path);
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        mac.tokens = self.tokens(std::mem::take(&mut mac.tokens));
    }

    fn visit_item_mut(&mut self, _: &mut Item) {
        // Items inside the expression have their own `self`.
    }

    fn visit_type_mut(&mut self, _: &mut Type) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: TokenStream, item: TokenStream) -> String {
        expand(attr, item).to_string()
    }

    /// Token strings are spaced out (`a :: b`); compare without spaces.
    fn squash(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    fn assert_contains(haystack: &str, needles: &[&str]) {
        let squashed = squash(haystack);
        for needle in needles {
            assert!(
                squashed.contains(&squash(needle)),
                "expected `{needle}` in:\n{haystack}"
            );
        }
    }

    #[test]
    fn expands_the_sample_fn() {
        let out = expand_str(
            quote!(
                key = "order:{order.id}:{user_id}",
                ttl = "7s",
                auto_renew,
                wait = "2s"
            ),
            quote! {
                /// Settles.
                #[inline]
                async fn settle(&self, order: &Order, user_id: u64) -> Result<Receipt, AppError> {
                    #![allow(unused)]
                    let r = self.db.write(order).await?;
                    Ok(r)
                }
            },
        );
        assert_contains(
            &out,
            &[
                "#[doc = r\" Settles.\"] #[inline] async fn settle(&self, order: &Order, user_id: u64) -> Result<Receipt, AppError> { #![allow(unused)]",
                "let __lockattr_key: ::std::string::String = {",
                "let mut __lockattr_k = ::lockattr_runtime::__private::KeyBuf::new();",
                "__lockattr_k.lit(\"order:\");",
                "__lockattr_k.arg(&order.id);",
                "__lockattr_k.lit(\":\");",
                "__lockattr_k.arg(&user_id);",
                "__lockattr_k.finish()",
                "let __lockattr_client = ::lockattr_runtime::__private::default_client();",
                "const __LOCKATTR_OPTS: ::lockattr_runtime::__private::Options = ::lockattr_runtime::__private::Options::new(7000).auto_renew(true).wait_ms(2000);",
                "::lockattr_runtime::__private::run_locked(__lockattr_client, __lockattr_key, __LOCKATTR_OPTS, async move {",
                "None::<Result<Receipt, AppError>> { #[allow(unreachable_code)] return __lockattr_ret; }",
                "let r = self.db.write(order).await?; Ok(r) }).await }",
            ],
        );
        assert!(!out.contains("unwrap"));
        assert!(!out.split_whitespace().any(|t| t == "use"), "{out}");
    }

    #[test]
    fn options_client_key_expr_and_crate_override() {
        let out = expand_str(
            quote!(
                key_expr = format!("job:{}", self.name),
                client = self.locks,
                on_lost = "finish",
                min_hold = "10s",
                crate = "my_locks"
            ),
            quote!(
                async fn run(&self) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert_contains(
            &out,
            &[
                "let __lockattr_key: ::std::string::String = my_locks::__private::key_from_expr(&(format!(\"job:{}\", self.name)));",
                "let __lockattr_client = my_locks::__private::client(&(self.locks));",
                "my_locks::__private::Options::new(30000).on_lost_finish().min_hold_ms(10000);",
                "my_locks::__private::run_locked(",
            ],
        );
        assert!(!out.contains("lockattr_runtime"), "{out}");
    }

    #[test]
    fn impl_trait_is_erased_in_the_pinned_type() {
        let out = expand_str(
            quote!(key = "k:{x.0}"),
            quote!(
                async fn f(x: (u8,), y: impl Display) -> Result<impl Display, E> {
                    Ok(1)
                }
            ),
        );
        assert_contains(
            &out,
            &[
                "-> Result<impl Display, E>",
                "None::<Result<_, E>>",
                "__lockattr_k.arg(&x.0);",
            ],
        );
    }

    #[test]
    fn errors_keep_the_original_fn() {
        let item = quote!(
            fn f(id: u64) -> Result<(), E> {
                Ok(())
            }
        );
        let out = expand_str(quote!(key = "{nope}", ttl = "0s"), item.clone());
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
        assert!(out.contains("needs an `async fn`"));
        assert!(out.contains("no parameter `nope` in this fn; parameters are `id`"));
        assert!(out.contains("a ttl of zero would expire at once"));
    }

    #[test]
    fn non_fn_items() {
        let out = expand_str(
            quote!(key = "k"),
            quote!(
                struct S;
            ),
        );
        assert!(out.starts_with("struct S ;"), "{out}");
        assert!(out.contains("#[distributed_lock] goes on an `async fn`, not on a struct"));

        let out = expand_str(
            quote!(key = "k"),
            quote!(
                async fn f(&self) -> Result<(), E>;
            ),
        );
        assert!(out.contains("this declaration has none"), "{out}");
    }

    #[test]
    fn async_trait_shape_is_wrapped_inside() {
        let item = quote! {
            #[allow(clippy::type_complexity)]
            fn run<'life0, 'async_trait>(&'life0 self, n: u32)
                -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<u32, E>>
                    + ::core::marker::Send + 'async_trait>>
            where 'life0: 'async_trait, Self: 'async_trait
            {
                Box::pin(async move {
                    if let ::core::option::Option::Some(__ret) =
                        ::core::option::Option::None::<Result<u32, E>> {
                        #[allow(unreachable_code)]
                        return __ret;
                    }
                    let __self = self;
                    let n = n;
                    let __ret: Result<u32, E> = { __self.go(n).await };
                    #[allow(unreachable_code)]
                    __ret
                })
            }
        };
        let out = expand_str(
            quote!(key = "job:{self.name}:{n}", client = self.locks),
            item,
        );
        assert_contains(
            &out,
            &[
                "let __self = self; let n = n; let __ret: Result<u32, E> = {",
                "__lockattr_k.arg(&__self.name);",
                "__lockattr_k.arg(&n);",
                "::lockattr_runtime::__private::client(&(__self.locks));",
                "async move { if let ::core::option::Option::Some(__lockattr_ret) = ::core::option::Option::None::<Result<u32, E>>",
                "{ __self.go(n).await } }).await };",
                "#[allow(unreachable_code)] __ret })",
            ],
        );
    }

    #[test]
    fn unknown_boxed_layout_wraps_the_whole_block() {
        let item = quote! {
            fn run(&self) -> Pin<Box<dyn Future<Output = Result<(), E>> + Send + '_>> {
                Box::pin(async move { self.go().await })
            }
        };
        let out = expand_str(quote!(key = "{self.name}"), item);
        assert_contains(
            &out,
            &[
                "Box::pin(async move { let __lockattr_key",
                "__lockattr_k.arg(&self.name);",
                "return __lockattr_ret; } self.go().await }).await })",
            ],
        );
    }
}
