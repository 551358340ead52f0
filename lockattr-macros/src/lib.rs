//! The `#[distributed_lock]` attribute of lockattr.
//!
//! Use it through the runtime crate, which re-exports it and provides everything the generated
//! code calls: `use lockattr_runtime::distributed_lock;`. This crate contains no lock logic: it
//! parses the attribute, checks it at compile time and rewrites the fn to call
//! `lockattr_runtime::__private::run_locked`.
//!
//! See [`macro@distributed_lock`] for the reference.

mod args;
mod expand;
mod key;
mod validate;

use proc_macro::TokenStream;

/// Runs an `async fn` only while holding a distributed lock.
///
/// ```text
/// use lockattr_runtime::{distributed_lock, LockError};
///
/// #[derive(Debug)]
/// enum AppError { Lock(LockError), Db(String) }
/// impl From<LockError> for AppError {
///     fn from(e: LockError) -> Self { AppError::Lock(e) }
/// }
///
/// #[distributed_lock(key = "order:{order.id}", ttl = "7s", auto_renew)]
/// async fn settle(order: &Order, db: &Db) -> Result<Receipt, AppError> {
///     // Strictly increasing per key: hand it to the storage so stale holders are rejected.
///     let fence = lockattr_runtime::current_fence().await?;
///     db.write_receipt(order, fence).await
/// }
/// ```
///
/// Each call renders the key from its arguments, takes the lock (or reports that it is busy),
/// runs the body while the lock is held, and releases the lock on every way out of the body:
/// normal return, `?`, early `return`, panic, or the caller dropping the future. A busy,
/// timed-out or lost lock is returned as `Err(LockError::.. .into())`; the body does not run
/// without the lock.
///
/// # Requirements on the fn
///
/// - It is an `async fn` with a body: a free fn, an inherent or trait-impl method (any receiver:
///   `&self`, `&mut self`, `self`, `mut self`, `self: Arc<Self>`), a default method of a trait,
///   or a method of an `#[async_trait]` impl. Generics, lifetimes, `where` clauses, pattern
///   parameters and `impl Trait` parameters all work; the signature is kept exactly as written.
/// - It returns `Result<T, E>` (any type whose name ends in `Result`: `io::Result<T>`,
///   `anyhow::Result<T>`, `AppResult<T>`, ...) where `E: From<lockattr_runtime::LockError>`.
///   `std::io::Error`, `anyhow::Error` and `Box<dyn Error + Send + Sync>` qualify. `T` may be
///   `impl Trait`.
/// - The returned future is `Send` whenever the body's is: the generated code holds nothing but
///   the key `String` and the client across its `.await`.
///
/// # Options
///
/// | option | value | default |
/// |---|---|---|
/// | `key` | string template over the parameters | one of `key`/`key_expr` is required |
/// | `key_expr` | any expression whose value implements `Display` | |
/// | `ttl` | duration string, `100ms` ..= `7d` | `"30s"` |
/// | `auto_renew` | flag, or `auto_renew = true \| false` | `false` |
/// | `wait` | duration string, `0ms` ..= `1d` | do not wait |
/// | `client` | expression: the client to use | the process-wide default client |
/// | `on_lost` | `"cancel"` or `"finish"` | `"cancel"` |
/// | `min_hold` | duration string, `1ms` ..= `7d` | no minimum |
/// | `crate` | path of the runtime crate, as a string or a path | `::lockattr_runtime` |
///
/// Every option may be given at most once; unknown options are errors. All mistakes are
/// reported together, each at the offending token.
///
/// ## `key = "template"`
///
/// The lock's name, rendered from the call's arguments:
///
/// - `{name}`: a parameter (any identifier bound by the parameter patterns, including inside
///   tuple and struct patterns, `mut x`, `ref x`);
/// - `{name.field.sub}`, `{name.0}`: a field path from a parameter;
/// - `{self}`, `{self.field}`: the receiver, when the fn has one;
/// - `{{` and `}}`: a literal `{` and `}`.
///
/// Every placeholder is rendered with `Display` (a reference is taken; nothing is moved) before
/// the body runs. The runtime escapes `%`, `:`, `{` and `}` in each rendered value, and the macro requires
/// text containing `:` between any two placeholders (`"{a}:{b}"`, not `"{a}{b}"` or `"{a}-{b}"`),
/// so two different argument tuples can never render the same key.
///
/// ```text
/// #[distributed_lock(key = "invoice:{tenant}:{invoice.id}")]
/// async fn send(tenant: &str, invoice: &Invoice) -> Result<(), AppError> { /* .. */ }
///
/// #[distributed_lock(key = "shard:{self.region}:{pair.0}")]
/// async fn rebalance(&self, pair: (u32, u32)) -> Result<(), AppError> { /* .. */ }
///
/// #[distributed_lock(key = "nightly-report")] // a constant key: one runner at a time
/// async fn nightly_report() -> Result<(), AppError> { /* .. */ }
/// ```
///
/// Errors (each points into the string literal where the compiler supports that, else at the
/// literal):
///
/// - a placeholder naming nothing: ``no parameter `foo` in this fn; parameters are `order`,
///   `user_id` `` (or `this fn has no parameters`);
/// - `{self..}` in a fn without receiver: `` `self` is not available: this fn has no receiver ``;
/// - an unclosed `{` or unmatched `}` (write `{{`/`}}`), an empty `{}`, an invalid path such as
///   `{a..b}`, `{a.}`, `{1}`, `{ a }` or `{a:?}`;
/// - two placeholders without `:` between them; an empty template `""`.
///
/// ## `key_expr = <expr>`
///
/// Any expression whose value implements `Display`, evaluated (by reference) before the body,
/// e.g. `key_expr = format!("job:{}", self.name)` or `key_expr = self.lock_name()`. The value is
/// used as it is: unlike `key`, it is **not** escaped, so keeping such keys unambiguous is up to
/// the expression. Exactly one of `key` and `key_expr` must be given.
///
/// ## `ttl = "7s"`
///
/// How long the lock is held without renewal; when the holder dies, others may take the lock
/// after at most this long. A duration is one or more `<integer><unit>` parts, units `ms`, `s`,
/// `m`, `h`, `d`, largest first, with no spaces, decimals or signs: `"500ms"`, `"7s"`,
/// `"1m30s"`, `"2h"`, `"1h15m"`. The range is `100ms` ..= `7d`. Durations are checked at compile
/// time, so the value must be a string literal; `ttl = 7` is an error (``write the unit: `ttl =
/// "7s"` ``). Default: `"30s"`.
///
/// ## `auto_renew`
///
/// Keep extending the lock (every ttl/3) while the body runs, so the body may run longer than
/// `ttl`. Write the flag `auto_renew`, or `auto_renew = true`/`false`. Default: off, in which case
/// a body still running when `ttl` elapses has lost the lock (see `on_lost`).
///
/// ## `wait = "2s"`
///
/// How long to wait for a busy lock before giving up with `LockError::Timeout`. Same duration
/// syntax, range `0ms` ..= `1d`; `"0s"` means do not wait. Default: do not wait (a busy lock is
/// reported at once as `LockError::Busy`).
///
/// ## `client = <expr>`
///
/// The client to lock with, evaluated in the fn before the body: e.g. `client = APP_LOCKS` (a
/// `static` `LazyLock`/`OnceLock`), `client = self.locks`, `client = crate::locks()`. Anything
/// implementing `lockattr_runtime::AsLockClient` (directly or behind `&`, `Arc`, `Box`).
/// Default: the process-wide default client (set at startup, or built from `LOCKATTR_REDIS_URL`).
///
/// ## `on_lost = "cancel" | "finish"`
///
/// What happens to a running body when the lock is lost (a renewal fails or finds another owner,
/// or `ttl` elapses without `auto_renew`):
///
/// - `"cancel"` (default): the body is stopped (dropped) at its next `.await`; the call returns
///   `LockError::Lost` with `cancelled: true`;
/// - `"finish"`: the body is left to run to its end (e.g. to avoid interrupting a non-idempotent
///   step); the call still reports the loss as `LockError::Lost` with `cancelled: false`.
///
/// ## `min_hold = "10s"`
///
/// Keep the lock for at least this long from acquisition, even if the body finishes sooner
/// (ShedLock's `lockAtLeastFor`): useful for jobs scheduled on many nodes that must run once per
/// period. When the body ends sooner, the key is not deleted: its expiry is set to the rest of
/// `min_hold`. Same duration syntax, range `1ms` ..= `7d`. A `min_hold` longer than `ttl` is
/// allowed, with or without `auto_renew`: the key is then kept until `min_hold` has passed since
/// acquisition (a body that outlives `ttl` without `auto_renew` still loses the lock, see
/// `on_lost`). Default: released as soon as the body ends.
///
/// ## `crate = "path"`
///
/// The path of the runtime crate in the generated code, for crates that rename it:
///
/// ```text
/// extern crate lockattr_runtime as my_locks;
///
/// #[my_locks::distributed_lock(key = "k", crate = "my_locks")]
/// async fn job() -> Result<(), my_locks::LockError> { Ok(()) }
/// ```
///
/// Default: `::lockattr_runtime`. `crate = my_locks` (a path without quotes) also works.
///
/// # Other errors
///
/// - on anything but a fn: ``#[distributed_lock] goes on an `async fn` ``;
/// - on a trait method declaration without a body: put it on the fn in the `impl`;
/// - on a fn without `async`: ``#[distributed_lock] needs an `async fn`: add `async` ``. This
///   is also what an attribute that already turned the `async fn` into a plain fn (such as
///   `#[tokio::main]` or `#[tokio::test]`) leads to: write `#[distributed_lock]` above it, so it
///   sees the `async fn` first;
/// - with no return type, or one that is not a `Result`: ``a locked fn must return `Result<T, E>`
///   where `E: From<lockattr_runtime::LockError>` ...``;
/// - an error type without `From<LockError>` is reported by the compiler at the return type.
///
/// On any error the fn is still emitted unchanged next to the errors, so the rest of the crate
/// (and the IDE) keep working.
///
/// # With `#[async_trait]`
///
/// ```text
/// #[async_trait::async_trait]
/// impl Job for Cleaner {
///     #[distributed_lock(key = "cleanup:{self.bucket}", ttl = "1m", auto_renew)]
///     async fn run(&self) -> Result<(), AppError> { /* .. */ }
/// }
/// ```
///
/// `#[async_trait]` rewrites the method first; the lock is then taken inside the boxed future,
/// and `{self..}` placeholders, `key_expr` and `client` see `self` as usual.
///
/// # What it expands to
///
/// The signature is untouched; the body becomes (roughly):
///
/// ```text
/// async fn settle(&self, order: &Order, user_id: u64) -> Result<Receipt, AppError> {
///     let __lockattr_key: String = { /* "order:" + escaped(order.id) + ":" + escaped(user_id) */ };
///     let __lockattr_client = ::lockattr_runtime::__private::default_client();
///     const __LOCKATTR_OPTS: ::lockattr_runtime::__private::Options =
///         ::lockattr_runtime::__private::Options::new(7000).auto_renew(true).wait_ms(2000);
///     ::lockattr_runtime::__private::run_locked(
///         __lockattr_client, __lockattr_key, __LOCKATTR_OPTS, async move { /* body */ },
///     ).await
/// }
/// ```
#[proc_macro_attribute]
pub fn distributed_lock(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into()).into()
}
