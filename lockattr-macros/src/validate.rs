//! The validation pass: turns the parsed [`Args`] and the annotated fn into a [`Plan`] for
//! [`crate::expand`], or into errors. Every check runs even after an earlier one failed, so one
//! compile shows every mistake.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::visit_mut::VisitMut;
use syn::{
    Block, Error, Expr, ExprAsync, FnArg, GenericArgument, Ident, ItemFn, Lit, LitStr, Local, Pat,
    Path, PathArguments, ReturnType, Stmt, Type, TypeParamBound,
};

use crate::args::{Args, Opt};
use crate::key::{self, Segment};

/// The message for a fn that does not return a `Result`.
const RESULT_REQUIRED: &str = "a locked fn must return `Result<T, E>` where \
    `E: From<lockattr_runtime::LockError>`, so that a busy, timed-out or lost lock can be \
    reported; change the return type to `Result<..., YourError>`";

/// Accepted duration forms, shown in every duration error.
const DURATION_FORMS: &str =
    "expected a duration like \"500ms\", \"7s\", \"1m30s\" (units: ms, s, m, h, d)";

/// Default `ttl` when the option is omitted.
pub(crate) const DEFAULT_TTL_MS: u64 = 30_000;

const MS: u64 = 1;
const SECOND: u64 = 1_000 * MS;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Everything [`crate::expand`] needs, all of it checked.
pub(crate) struct Plan {
    /// Where the key comes from.
    pub key: KeySource,
    /// The lock options.
    pub options: LockOptions,
    /// `client = <expr>`, if given.
    pub client: Option<Expr>,
    /// Path of the runtime crate (`::lockattr_runtime` unless `crate = ...`).
    pub krate: Path,
    /// How the fn is written: a plain `async fn`, or the shape `#[async_trait]` leaves.
    pub shape: Shape,
    /// The `Result` type the locked body produces (the fn's return type, or the boxed future's
    /// `Output` for `#[async_trait]`).
    pub output: Type,
    /// The names the key template may use.
    pub scope: Scope,
}

/// The lock key's source.
pub(crate) enum KeySource {
    /// `key = "..."`: the literal (for spans) and its parsed pieces.
    Template(LitStr, Vec<Segment>),
    /// `key_expr = <expr>`.
    Expr(Expr),
}

/// The checked numeric and flag options; `None` means "not given" (the runtime default applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockOptions {
    pub ttl_ms: u64,
    pub auto_renew: Option<bool>,
    pub wait_ms: Option<u64>,
    pub on_lost_finish: bool,
    pub min_hold_ms: Option<u64>,
}

/// How the annotated fn is written.
pub(crate) enum Shape {
    /// `async fn ... { body }`.
    AsyncFn,
    /// What `#[async_trait]` turns an `async fn` into:
    /// `fn ...(..) -> Pin<Box<dyn Future<Output = R> + ..>> { Box::pin(async move { .. }) }`.
    AsyncTrait {
        /// Index, in the async block, of async-trait's `let __ret: R = { body };`. When it is
        /// missing (another version, or a hand-written boxed future) the whole async block is
        /// wrapped instead.
        ret_stmt: Option<usize>,
    },
}

/// The names a key template may use.
#[derive(Default)]
pub(crate) struct Scope {
    /// Identifiers bound by the fn's parameter patterns (for `#[async_trait]`: also by its
    /// re-bindings at the top of the async block), in order, without duplicates.
    pub params: Vec<Ident>,
    /// Whether the fn has a `self` receiver.
    pub has_receiver: bool,
    /// What `self` is called where the key is computed (`__self` inside `#[async_trait]`'s
    /// block).
    pub self_alias: Option<Ident>,
}

impl Scope {
    /// The binding named `name` (raw identifiers match without their `r#`).
    pub fn param(&self, name: &str) -> Option<&Ident> {
        self.params.iter().find(|p| p.unraw() == name)
    }

    fn add_pattern(&mut self, pat: &Pat) {
        let mut names = Vec::new();
        pattern_bindings(pat, &mut names);
        for name in names {
            let unraw = name.unraw();
            let positional = unraw
                .to_string()
                .strip_prefix("__arg")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !positional && unraw != "__self" && self.param(&unraw.to_string()).is_none() {
                self.params.push(name);
            }
        }
    }

    fn describe(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        if self.has_receiver {
            names.push("`self`".to_owned());
        }
        names.extend(self.params.iter().map(|p| format!("`{}`", p.unraw())));
        if names.is_empty() {
            "this fn has no parameters".to_owned()
        } else {
            format!("parameters are {}", names.join(", "))
        }
    }
}

/// Collects the identifiers a pattern binds.
fn pattern_bindings(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                pattern_bindings(sub, out);
            }
        }
        Pat::Tuple(p) => p.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| pattern_bindings(&f.pat, out)),
        Pat::Slice(p) => p.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::Reference(p) => pattern_bindings(&p.pat, out),
        Pat::Paren(p) => pattern_bindings(&p.pat, out),
        Pat::Type(p) => pattern_bindings(&p.pat, out),
        // Every alternative binds the same names.
        Pat::Or(p) => {
            if let Some(first) = p.cases.first() {
                pattern_bindings(first, out);
            }
        }
        _ => {}
    }
}

/// Runs every check; returns the plan when the attribute and the fn are usable. Errors are pushed
/// to `errors` (which may already hold argument parse errors): the plan is only used when
/// `errors` ends up empty.
pub(crate) fn validate(args: Args, func: &ItemFn, errors: &mut Vec<Error>) -> Option<Plan> {
    let analysed = analyse_fn(func, errors);
    let scope = analysed.as_ref().map(|a| &a.scope);
    let key = key_source(&args, scope, errors);
    let options = lock_options(&args, errors);
    let krate = crate_path(args.krate.as_ref(), errors);
    let analysed = analysed?;
    Some(Plan {
        key: key?,
        options: options?,
        client: args.client.map(|c| c.value),
        krate: krate?,
        shape: analysed.shape,
        output: analysed.output?,
        scope: analysed.scope,
    })
}

struct Analysed {
    shape: Shape,
    /// `None` after a return-type error.
    output: Option<Type>,
    scope: Scope,
}

/// Checks the fn itself: `async` (or `#[async_trait]`'s shape) and a `Result` return type, and
/// collects the names the key may use. `None` when the fn is not async.
fn analyse_fn(func: &ItemFn, errors: &mut Vec<Error>) -> Option<Analysed> {
    let sig = &func.sig;
    let mut scope = Scope::default();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(_) => scope.has_receiver = true,
            FnArg::Typed(arg) => scope.add_pattern(&arg.pat),
        }
    }

    if sig.asyncness.is_some() {
        let output = match &sig.output {
            ReturnType::Type(_, ty) if is_result(ty) => Some((**ty).clone()),
            ReturnType::Type(_, ty) => {
                errors.push(Error::new_spanned(ty, RESULT_REQUIRED));
                None
            }
            ReturnType::Default => {
                errors.push(signature_error(func, RESULT_REQUIRED));
                None
            }
        };
        return Some(Analysed {
            shape: Shape::AsyncFn,
            output,
            scope,
        });
    }

    let (Some(future_output), Some(async_block)) = (
        boxed_future_output(&sig.output),
        boxed_async_block(&func.block),
    ) else {
        errors.push(Error::new(
            sig.fn_token.span,
            "#[distributed_lock] needs an `async fn`: add `async`",
        ));
        // Still check the key against the parameters, so every mistake shows at once.
        return Some(Analysed {
            shape: Shape::AsyncFn,
            output: None,
            scope,
        });
    };

    // `#[async_trait]` rebinds the parameters at the top of the block (`let __self = self;`,
    // `let (a, b) = __arg1;`) and then evaluates the original body in `let __ret: R = { .. };`.
    let stmts = &async_block.block.stmts;
    let ret_stmt = stmts.iter().position(|s| ret_local(s).is_some());
    let mut output_ty = future_output;
    if let Some(index) = ret_stmt {
        if let Some(ty) = ret_local(&stmts[index]) {
            output_ty = ty;
        }
        for stmt in &stmts[..index] {
            if let Stmt::Local(local) = stmt {
                match self_alias(local) {
                    Some(alias) => scope.self_alias = Some(alias),
                    None => scope.add_pattern(&local.pat),
                }
            }
        }
    }
    let output = if is_result(output_ty) {
        Some(output_ty.clone())
    } else {
        errors.push(match output_ty {
            // `#[async_trait]` writes `()` itself when the fn had no return type.
            Type::Tuple(t) if t.elems.is_empty() => signature_error(func, RESULT_REQUIRED),
            ty => Error::new_spanned(ty, RESULT_REQUIRED),
        });
        None
    };
    Some(Analysed {
        shape: Shape::AsyncTrait { ret_stmt },
        output,
        scope,
    })
}

/// An error spanning `fn name(...)`.
fn signature_error(func: &ItemFn, message: &str) -> Error {
    let sig = &func.sig;
    let mut tokens = TokenStream::new();
    sig.fn_token.to_tokens(&mut tokens);
    sig.ident.to_tokens(&mut tokens);
    Ident::new("x", sig.paren_token.span.close()).to_tokens(&mut tokens);
    Error::new_spanned(tokens, message)
}

/// Whether `ty` names a `Result`: its last path segment ends with `Result` (`Result<T, E>`,
/// `io::Result<T>`, `anyhow::Result<T>`, `AppResult<T>`).
pub(crate) fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident.to_string().ends_with("Result")),
        Type::Group(g) => is_result(&g.elem),
        Type::Paren(p) => is_result(&p.elem),
        _ => false,
    }
}

/// `R` of `Pin<Box<dyn Future<Output = R> + ..>>`.
pub(crate) fn boxed_future_output(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let boxed = single_type_arg(ty, "Pin")?;
    let Type::TraitObject(object) = single_type_arg(boxed, "Box")? else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let segment = bound.path.segments.last()?;
        if segment.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &segment.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// The one type argument of `Name<T>` (by the last path segment).
fn single_type_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let segment = path.path.segments.last()?;
    if segment.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) if args.args.len() == 1 => Some(t),
        _ => None,
    }
}

/// The async block of a body ending in `Box::pin(async move { .. })`.
pub(crate) fn boxed_async_block(block: &Block) -> Option<&ExprAsync> {
    let Some(Stmt::Expr(expr, None)) = block.stmts.last() else {
        return None;
    };
    let Expr::Call(call) = peel(expr) else {
        return None;
    };
    if !is_box_pin(&call.func) || call.args.len() != 1 {
        return None;
    }
    match peel(call.args.first()?) {
        Expr::Async(block) => Some(block),
        _ => None,
    }
}

/// [`boxed_async_block`], mutably.
pub(crate) fn boxed_async_block_mut(block: &mut Block) -> Option<&mut ExprAsync> {
    let Some(Stmt::Expr(expr, None)) = block.stmts.last_mut() else {
        return None;
    };
    let Expr::Call(call) = peel_mut(expr) else {
        return None;
    };
    if !is_box_pin(&call.func) || call.args.len() != 1 {
        return None;
    }
    match peel_mut(call.args.first_mut()?) {
        Expr::Async(block) => Some(block),
        _ => None,
    }
}

fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(path) = peel(func) else {
        return false;
    };
    let segments: Vec<_> = path.path.segments.iter().map(|s| &s.ident).collect();
    matches!(segments.as_slice(), [.., boxed, pin] if *boxed == "Box" && *pin == "pin")
}

fn peel(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(g) => peel(&g.expr),
        Expr::Paren(p) => peel(&p.expr),
        e => e,
    }
}

fn peel_mut(expr: &mut Expr) -> &mut Expr {
    match expr {
        Expr::Group(g) => peel_mut(&mut g.expr),
        Expr::Paren(p) => peel_mut(&mut p.expr),
        e => e,
    }
}

/// `R` of async-trait's `let __ret: R = ..;`.
pub(crate) fn ret_local(stmt: &Stmt) -> Option<&Type> {
    let Stmt::Local(Local {
        pat: Pat::Type(typed),
        init: Some(_),
        ..
    }) = stmt
    else {
        return None;
    };
    match &*typed.pat {
        Pat::Ident(p) if p.ident == "__ret" => Some(&typed.ty),
        _ => None,
    }
}

/// The `__self` of async-trait's `let [mut] __self = self;`.
fn self_alias(local: &Local) -> Option<Ident> {
    let Pat::Ident(p) = &local.pat else {
        return None;
    };
    let init = local.init.as_ref()?;
    match peel(&init.expr) {
        Expr::Path(path) if p.ident == "__self" && path.path.is_ident("self") => {
            Some(p.ident.clone())
        }
        _ => None,
    }
}

/// Checks `key`/`key_expr`; with a template, also every placeholder against the fn's names.
fn key_source(args: &Args, scope: Option<&Scope>, errors: &mut Vec<Error>) -> Option<KeySource> {
    match (&args.key, &args.key_expr) {
        (Some(_), Some(key_expr)) => {
            errors.push(Error::new(
                key_expr.name,
                "give either `key` or `key_expr`, not both: `key = \"...\"` is a template over \
                 the parameters, `key_expr = <expr>` computes the key with code",
            ));
            None
        }
        (None, None) => {
            errors.push(Error::new(
                Span::call_site(),
                "missing lock key: add `key = \"...\"`, a template over the fn's parameters \
                 (e.g. `key = \"order:{order.id}\"`), or `key_expr = <expression>`",
            ));
            None
        }
        (None, Some(key_expr)) => Some(KeySource::Expr(key_expr.value.clone())),
        (Some(key), None) => {
            let Expr::Lit(syn::ExprLit {
                lit: Lit::Str(lit), ..
            }) = peel(&key.value)
            else {
                errors.push(Error::new_spanned(
                    &key.value,
                    "`key` takes a string template, e.g. `key = \"order:{order.id}\"`; \
                     to compute the key with code, use `key_expr = ...`",
                ));
                return None;
            };
            let value = lit.value();
            let (segments, mut problems) = key::parse(&value);
            problems.extend(key::check_structure(&value, &segments));
            let before = errors.len();
            errors.extend(problems.into_iter().map(|p| template_error(lit, p)));
            if let Some(scope) = scope {
                for segment in &segments {
                    let Segment::Field(field) = segment else {
                        continue;
                    };
                    let message = if field.root == "self" {
                        (!scope.has_receiver)
                            .then(|| "`self` is not available: this fn has no receiver".into())
                    } else if scope.param(&field.root).is_none() {
                        Some(format!(
                            "no parameter `{}` in this fn; {}",
                            field.root,
                            scope.describe()
                        ))
                    } else {
                        None
                    };
                    if let Some(message) = message {
                        errors.push(template_error(
                            lit,
                            key::TemplateError {
                                range: field.range.clone(),
                                message,
                            },
                        ));
                    }
                }
            }
            (errors.len() == before).then(|| KeySource::Template(lit.clone(), segments))
        }
    }
}

/// An error pointing inside the literal where the compiler allows it, else at the literal.
fn template_error(lit: &LitStr, problem: key::TemplateError) -> Error {
    Error::new(placeholder_span(lit, problem.range), problem.message)
}

/// The span of `range` (of the literal's value) inside the literal. On stable compilers
/// `Literal::subspan` is not available to proc-macros yet, so this is the literal's span there.
pub(crate) fn placeholder_span(lit: &LitStr, range: std::ops::Range<usize>) -> Span {
    if range.is_empty() {
        return lit.span();
    }
    key::source_range(lit, range)
        .and_then(|r| lit.token().subspan(r))
        .unwrap_or_else(|| lit.span())
}

fn lock_options(args: &Args, errors: &mut Vec<Error>) -> Option<LockOptions> {
    let before = errors.len();
    let ttl_ms = duration(
        args.ttl.as_ref(),
        DurationRule {
            option: "ttl",
            min: 100 * MS,
            max: 7 * DAY,
            range: "between 100ms and 7d",
            zero: "a ttl of zero would expire at once",
        },
        errors,
    );
    let wait_ms = duration(
        args.wait.as_ref(),
        DurationRule {
            option: "wait",
            min: 0,
            max: DAY,
            range: "between 0ms (do not wait) and 1d",
            zero: "",
        },
        errors,
    );
    let min_hold_ms = duration(
        args.min_hold.as_ref(),
        DurationRule {
            option: "min_hold",
            min: MS,
            max: 7 * DAY,
            range: "between 1ms and 7d",
            zero: "a zero `min_hold` is no minimum at all: remove the option",
        },
        errors,
    );
    let auto_renew = args.auto_renew.as_ref().and_then(|opt| match &opt.value {
        None => Some(true),
        Some(value) => match peel(value) {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Bool(b), ..
            }) => Some(b.value),
            other => {
                errors.push(Error::new_spanned(
                    other,
                    "`auto_renew` takes `true` or `false`; or write just `auto_renew`",
                ));
                None
            }
        },
    });
    let on_lost_finish = args
        .on_lost
        .as_ref()
        .and_then(|opt| match peel(&opt.value) {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => match s.value().as_str() {
                "cancel" => Some(false),
                "finish" => Some(true),
                other => {
                    errors.push(Error::new(
                        s.span(),
                        format!(
                            "unknown `on_lost` behaviour \"{other}\"; expected \"cancel\" (the \
                         default: stop the body as soon as the lock is lost) or \"finish\" \
                         (let the body run to its end; the call still reports the loss)"
                        ),
                    ));
                    None
                }
            },
            other => {
                errors.push(Error::new_spanned(
                    other,
                    "write `on_lost` as a string: `on_lost = \"cancel\"` or `on_lost = \"finish\"`",
                ));
                None
            }
        });
    (errors.len() == before).then(|| LockOptions {
        ttl_ms: ttl_ms.unwrap_or(DEFAULT_TTL_MS),
        auto_renew,
        wait_ms,
        on_lost_finish: on_lost_finish.unwrap_or(false),
        min_hold_ms,
    })
}

/// How one duration option is checked.
struct DurationRule {
    option: &'static str,
    min: u64,
    max: u64,
    range: &'static str,
    /// The problem reported for a zero duration when `min > 0`.
    zero: &'static str,
}

/// Checks a duration option; `None` when omitted or wrong (the error is pushed).
fn duration(opt: Option<&Opt<Expr>>, rule: DurationRule, errors: &mut Vec<Error>) -> Option<u64> {
    let opt = opt?;
    let DurationRule {
        option,
        min,
        max,
        range,
        zero,
    } = rule;
    let problem = match peel(&opt.value) {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let text = s.value();
            let problem = match parse_duration_ms(&text) {
                Ok(0) if min > 0 => zero.to_owned(),
                Ok(ms) if (min..=max).contains(&ms) => return Some(ms),
                Ok(_) => format!("\"{text}\" is out of range"),
                Err(problem) => format!("invalid duration \"{text}\": {problem}"),
            };
            Error::new(s.span(), format!("{problem}; {DURATION_FORMS}, {range}"))
        }
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(n), ..
        }) => Error::new(
            n.span(),
            format!("write the unit: `{option} = \"{}s\"`", n.base10_digits()),
        ),
        other => Error::new_spanned(
            other,
            format!(
                "`{option}` takes a string literal, parsed at compile time; {DURATION_FORMS}, \
                 {range}"
            ),
        ),
    };
    errors.push(problem);
    None
}

/// Parses `<integer><unit>` parts (`ms`, `s`, `m`, `h`, `d`, largest first, each at most once)
/// into milliseconds. The error names what is wrong.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("the duration is empty".to_owned());
    }
    if text.contains(char::is_whitespace) {
        return Err("remove the spaces".to_owned());
    }
    if text.starts_with('-') {
        return Err("a duration cannot be negative".to_owned());
    }
    if text.starts_with('+') {
        return Err("remove the `+`".to_owned());
    }
    if text.contains(['.', ',']) {
        return Err(
            "decimals are not supported: write \"1s500ms\" rather than \"1.5s\"".to_owned(),
        );
    }
    let mut total: u64 = 0;
    let mut last_rank = None;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (digits, after) = rest.split_at(digits_len);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        if digits.is_empty() {
            return Err(match after.chars().next() {
                Some(c) if unit.is_empty() => format!("unexpected `{c}`"),
                _ => format!("`{unit}` needs a number before it, e.g. \"7s\""),
            });
        }
        if unit.is_empty() {
            return Err(match after.chars().next() {
                Some(c) => format!("unexpected `{c}`"),
                None => format!("`{digits}` needs a unit, e.g. \"{digits}s\""),
            });
        }
        let (rank, factor) = match unit {
            "d" => (0, DAY),
            "h" => (1, HOUR),
            "m" => (2, MINUTE),
            "s" => (3, SECOND),
            "ms" => (4, MS),
            other => return Err(format!("unknown unit `{other}`")),
        };
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(
                "write the units from largest to smallest, each once, e.g. \"1h15m\"".to_owned(),
            );
        }
        last_rank = Some(rank);
        total = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| "the duration is too large".to_owned())?;
        rest = after;
    }
    Ok(total)
}

fn crate_path(opt: Option<&Opt<Expr>>, errors: &mut Vec<Error>) -> Option<Path> {
    let Some(opt) = opt else {
        return Some(syn::parse_quote!(::lockattr_runtime));
    };
    let path = match peel(&opt.value) {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => s.parse::<Path>().ok(),
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Some(p.path.clone()),
        _ => None,
    };
    if path.is_none() {
        errors.push(Error::new_spanned(
            &opt.value,
            "`crate` names the path of lockattr's runtime crate, e.g. `crate = \"my_locks\"` \
             after `extern crate lockattr_runtime as my_locks;`",
        ));
    }
    path
}

/// Replaces `impl Trait` with `_` so a type can be named inside the body.
pub(crate) struct EraseImplTrait;

impl VisitMut for EraseImplTrait {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            let span = impl_trait.impl_token.span;
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: syn::Token![_](span),
            });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}

/// Renders a type for messages and tests.
#[cfg(test)]
pub(crate) fn show(tokens: impl ToTokens) -> String {
    tokens.into_token_stream().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args;
    use quote::quote;
    use syn::parse_quote;

    #[test]
    fn durations() {
        for (text, ms) in [
            ("500ms", 500),
            ("7s", 7_000),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("1h15m", 4_500_000),
            ("1d", 86_400_000),
            ("1d2h3m4s5ms", 93_784_005),
            ("0s", 0),
            ("0ms", 0),
            ("007s", 7_000),
        ] {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn duration_errors_name_the_problem() {
        for (text, needle) in [
            ("", "empty"),
            ("7 s", "spaces"),
            (" 7s", "spaces"),
            ("-5s", "negative"),
            ("+5s", "`+`"),
            ("1.5s", "decimals"),
            ("1,5s", "decimals"),
            ("7", "`7` needs a unit"),
            ("1m30", "`30` needs a unit"),
            ("s", "needs a number"),
            ("7sec", "unknown unit `sec`"),
            ("7min", "unknown unit `min`"),
            ("7us", "unknown unit `us`"),
            ("30s1m", "largest to smallest"),
            ("1s1s", "largest to smallest"),
            ("7s!", "unexpected `!`"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999d", "too large"),
        ] {
            let err = parse_duration_ms(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    fn check(attr: proc_macro2::TokenStream, func: ItemFn) -> (Option<Plan>, Vec<String>) {
        let (args, mut errors) = args::parse(attr);
        let plan = validate(args, &func, &mut errors);
        (plan, errors.iter().map(ToString::to_string).collect())
    }

    fn settle() -> ItemFn {
        parse_quote! {
            async fn settle(&self, order: &Order, (a, mut b): (u32, u32), ref user_id: u64)
                -> Result<Receipt, AppError> {}
        }
    }

    #[test]
    fn option_values_and_defaults() {
        let (plan, errors) = check(quote!(key = "k:{order.id}"), settle());
        assert!(errors.is_empty(), "{errors:?}");
        let plan = plan.unwrap();
        assert_eq!(
            plan.options,
            LockOptions {
                ttl_ms: 30_000,
                auto_renew: None,
                wait_ms: None,
                on_lost_finish: false,
                min_hold_ms: None
            }
        );
        assert_eq!(show(&plan.krate), ":: lockattr_runtime");
        assert!(matches!(plan.shape, Shape::AsyncFn));
        assert_eq!(show(&plan.output), "Result < Receipt , AppError >");

        let (plan, errors) = check(
            quote!(
                key = "k",
                ttl = "1m30s",
                auto_renew = false,
                wait = "0s",
                on_lost = "finish",
                min_hold = "10s",
                crate = "my_locks"
            ),
            settle(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let plan = plan.unwrap();
        assert_eq!(
            plan.options,
            LockOptions {
                ttl_ms: 90_000,
                auto_renew: Some(false),
                wait_ms: Some(0),
                on_lost_finish: true,
                min_hold_ms: Some(10_000)
            }
        );
        assert_eq!(show(&plan.krate), "my_locks");

        let (plan, errors) = check(quote!(key = "k", crate = crate::locks_rt), settle());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(show(plan.unwrap().krate), "crate :: locks_rt");
    }

    #[test]
    fn parameter_names_come_from_patterns() {
        let (_, errors) = check(
            quote!(key = "{self}:{order.id}:{a}:{b}:{user_id}"),
            settle(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let (_, errors) = check(quote!(key = "{nope}"), settle());
        assert_eq!(
            errors,
            ["no parameter `nope` in this fn; parameters are `self`, `order`, `a`, `b`, `user_id`"]
        );
        let (_, errors) = check(
            quote!(key = "{x}"),
            parse_quote!(
                async fn f() -> Result<(), E> {}
            ),
        );
        assert_eq!(
            errors,
            ["no parameter `x` in this fn; this fn has no parameters"]
        );
        let (_, errors) = check(
            quote!(key = "{self.id}"),
            parse_quote!(
                async fn f(id: u64) -> Result<(), E> {}
            ),
        );
        assert_eq!(errors, ["`self` is not available: this fn has no receiver"]);
        let (_, errors) = check(
            quote!(key = "{type}:{S}"),
            parse_quote!(
                async fn f(r#type: u8, S { x, y: S2(z) }: S) -> Result<(), E> {}
            ),
        );
        assert_eq!(
            errors,
            ["no parameter `S` in this fn; parameters are `type`, `x`, `z`"]
        );
    }

    #[test]
    fn all_errors_are_collected() {
        let (plan, errors) = check(
            quote!(
                ttl = 7,
                wait = "1.5s",
                on_lost = "panic",
                min_hold = "0s",
                auto_renew = "yes",
                crate = 5,
                bogus
            ),
            parse_quote!(
                fn f(x: u8) -> u8 {
                    x
                }
            ),
        );
        assert!(plan.is_none());
        assert_eq!(
            errors,
            [
                "unknown option `bogus`; expected one of: key, key_expr, ttl, auto_renew, wait, \
                 client, on_lost, min_hold, crate",
                "#[distributed_lock] needs an `async fn`: add `async`",
                "missing lock key: add `key = \"...\"`, a template over the fn's parameters \
                 (e.g. `key = \"order:{order.id}\"`), or `key_expr = <expression>`",
                "write the unit: `ttl = \"7s\"`",
                "invalid duration \"1.5s\": decimals are not supported: write \"1s500ms\" \
                 rather than \"1.5s\"; expected a duration like \"500ms\", \"7s\", \"1m30s\" \
                 (units: ms, s, m, h, d), between 0ms (do not wait) and 1d",
                "a zero `min_hold` is no minimum at all: remove the option; expected a \
                 duration like \"500ms\", \"7s\", \"1m30s\" (units: ms, s, m, h, d), between \
                 1ms and 7d",
                "`auto_renew` takes `true` or `false`; or write just `auto_renew`",
                "unknown `on_lost` behaviour \"panic\"; expected \"cancel\" (the default: stop \
                 the body as soon as the lock is lost) or \"finish\" (let the body run to its \
                 end; the call still reports the loss)",
                "`crate` names the path of lockattr's runtime crate, e.g. `crate = \"my_locks\"` \
                 after `extern crate lockattr_runtime as my_locks;`",
            ]
        );
    }

    #[test]
    fn ttl_range() {
        let f = settle;
        for (ttl, ok) in [
            ("100ms", true),
            ("99ms", false),
            ("7d", true),
            ("7d1ms", false),
            ("0s", false),
        ] {
            let (_, errors) = check(quote!(key = "k", ttl = #ttl), f());
            assert_eq!(errors.is_empty(), ok, "{ttl}: {errors:?}");
        }
        let (_, errors) = check(quote!(key = "k", ttl = "8d"), f());
        assert_eq!(
            errors,
            [
                "\"8d\" is out of range; expected a duration like \"500ms\", \"7s\", \"1m30s\" \
              (units: ms, s, m, h, d), between 100ms and 7d"
            ]
        );
        let (_, errors) = check(quote!(key = "k", wait = "1d1ms"), f());
        assert_eq!(errors.len(), 1);
        let (_, errors) = check(quote!(key = "k", ttl = TTL), f());
        assert!(errors[0].starts_with("`ttl` takes a string literal"));
    }

    #[test]
    fn key_and_key_expr() {
        let (_, errors) = check(quote!(key = "a", key_expr = self.name()), settle());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("give either `key` or `key_expr`, not both"));
        let (plan, errors) = check(quote!(key_expr = self.name()), settle());
        assert!(errors.is_empty());
        assert!(matches!(plan.unwrap().key, KeySource::Expr(_)));
        let (_, errors) = check(quote!(key = order.id), settle());
        assert!(errors[0].starts_with("`key` takes a string template"));
        let (_, errors) = check(quote!(key = ""), settle());
        assert!(errors[0].starts_with("the key template is empty"));
    }

    #[test]
    fn return_types() {
        for ret in [
            quote!(Result<T, E>),
            quote!(std::result::Result<T, E>),
            quote!(io::Result<T>),
            quote!(anyhow::Result<T>),
            quote!(AppResult<T>),
            quote!(Result<impl Display, E>),
        ] {
            let func: ItemFn = parse_quote!(async fn f() -> #ret {});
            let (_, errors) = check(quote!(key = "k"), func);
            assert!(errors.is_empty(), "{ret}: {errors:?}");
        }
        for ret in [
            quote!(u32),
            quote!(Option<T>),
            quote!(impl Future),
            quote!((T, E)),
        ] {
            let func: ItemFn = parse_quote!(async fn f() -> #ret {});
            let (_, errors) = check(quote!(key = "k"), func);
            assert_eq!(errors, [RESULT_REQUIRED], "{ret}");
        }
        let (_, errors) = check(
            quote!(key = "k"),
            parse_quote!(
                async fn f() {}
            ),
        );
        assert_eq!(errors, [RESULT_REQUIRED]);
    }

    /// What `#[async_trait]` 0.1.8x/0.1.9x emits for
    /// `async fn run(&self, n: u32, (a, b): (u8, u8)) -> Result<(), E> { .. }`.
    fn async_trait_output() -> ItemFn {
        parse_quote! {
            fn run<'life0, 'async_trait>(&'life0 self, n: u32, __arg2: (u8, u8))
                -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<(), E>>
                    + ::core::marker::Send + 'async_trait>>
            where 'life0: 'async_trait, Self: 'async_trait
            {
                Box::pin(async move {
                    if let ::core::option::Option::Some(__ret) =
                        ::core::option::Option::None::<Result<(), E>> {
                        #[allow(unreachable_code)]
                        return __ret;
                    }
                    let __self = self;
                    let n = n;
                    let (a, b) = { let __arg2 = __arg2; __arg2 };
                    let __ret: Result<(), E> = { __self.go(n, a, b).await };
                    #[allow(unreachable_code)]
                    __ret
                })
            }
        }
    }

    #[test]
    fn async_trait_shape() {
        let (plan, errors) = check(
            quote!(key = "{self.name}:{n}:{a}:{b}"),
            async_trait_output(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let plan = plan.unwrap();
        assert!(matches!(
            plan.shape,
            Shape::AsyncTrait { ret_stmt: Some(4) }
        ));
        assert_eq!(show(&plan.output), "Result < () , E >");
        assert_eq!(show(plan.scope.self_alias.unwrap()), "__self");
        let (_, errors) = check(quote!(key = "{__arg2}"), async_trait_output());
        assert_eq!(
            errors,
            ["no parameter `__arg2` in this fn; parameters are `self`, `n`, `a`, `b`"]
        );
    }

    #[test]
    fn non_async_fn_without_boxed_future() {
        let (_, errors) = check(
            quote!(key = "k"),
            parse_quote!(
                fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert_eq!(
            errors,
            ["#[distributed_lock] needs an `async fn`: add `async`"]
        );
    }
}
