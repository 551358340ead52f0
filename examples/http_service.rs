//! An HTTP service (axum) whose handlers are guarded by `#[distributed_lock]`.
//!
//! `POST /orders/{id}/settle` settles an order under the lock `order:{id}`: a second request for the same
//! order while the first is running gets `409 Conflict` with `Retry-After`; `POST /reports/{name}` waits
//! up to 300 ms for its lock and answers `503 Service Unavailable` when the wait times out. A lost lock
//! is a `500`, an unreachable Redis a `503`.
//!
//! Run: `cargo run --example http_service` — it starts the service on a free port, fires a few concurrent
//! requests at it, prints every status line, and exits. Add `-- --serve` to keep it running and try it with
//! curl.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use lockattr_runtime::{distributed_lock, LockClient, LockError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone)]
struct AppState {
    locks: LockClient,
}

/// The service's error type: every lock failure maps to a proper HTTP status.
#[derive(Debug)]
enum AppError {
    Lock(LockError),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let AppError::Lock(e) = self;
        let retry_after =
            |d: Option<Duration>| d.map(|d| d.as_secs().max(1)).unwrap_or(1).to_string();
        match &e {
            LockError::Busy { remaining, .. } => (
                StatusCode::CONFLICT,
                [(header::RETRY_AFTER, retry_after(*remaining))],
                e.to_string(),
            )
                .into_response(),
            LockError::Timeout { .. } | LockError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1".to_owned())],
                e.to_string(),
            )
                .into_response(),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

#[derive(serde::Serialize)]
struct Receipt {
    order: u64,
    fence: u64,
}

/// Settling takes a while; two settlements of one order must never run at once.
#[distributed_lock(key = "order:{id}", ttl = "2s", auto_renew, client = state.locks)]
async fn settle(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Receipt>, AppError> {
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fence = lockattr_runtime::current_fence().await?;
    Ok(Json(Receipt { order: id, fence }))
}

/// Reports wait briefly for their lock instead of failing at once.
#[distributed_lock(key = "report:{name}", ttl = "2s", wait = "300ms", client = state.locks)]
async fn build_report(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<String, AppError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(format!("report {name} built\n"))
}

fn app(locks: LockClient) -> Router {
    Router::new()
        .route("/orders/{id}/settle", post(settle))
        .route("/reports/{name}", post(build_report))
        .with_state(AppState { locks })
}

/// A minimal HTTP/1.1 POST for the self-test (the service is the point of this example, not the client).
async fn post_status(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_owned();
    Ok(format!("{status} — {body}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (backing, why) = lockattr_examples::Backing::choose()?;
    if let Some(why) = why {
        println!("NOTE: {why}");
    }
    tokio::runtime::Runtime::new()?.block_on(run(backing))
}

async fn run(backing: lockattr_examples::Backing) -> Result<(), Box<dyn std::error::Error>> {
    let locks = backing.client().await?;
    let what = backing.describe();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("lock backend: {what}; serving on http://{addr}");
    let server = tokio::spawn(async move { axum::serve(listener, app(locks)).await });

    if std::env::args().any(|a| a == "--serve") {
        println!("try: curl -i -X POST http://{addr}/orders/7/settle");
        server.await??;
        return Ok(());
    }

    println!("\n-- two concurrent settlements of order 7, one of order 8:");
    let (a, b, c) = tokio::join!(
        post_status(addr, "/orders/7/settle"),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            post_status(addr, "/orders/7/settle").await
        },
        post_status(addr, "/orders/8/settle"),
    );
    for r in [a?, b?, c?] {
        println!("   {r}");
    }

    println!("\n-- three concurrent report builds (each 500 ms; callers wait at most 300 ms):");
    let (a, b, c) = tokio::join!(
        post_status(addr, "/reports/daily"),
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            post_status(addr, "/reports/daily").await
        },
        post_status(addr, "/reports/weekly"),
    );
    for r in [a?, b?, c?] {
        println!("   {r}");
    }
    server.abort();
    println!("\nbusy -> 409 Conflict (with Retry-After), wait timed out -> 503, different keys never block each other.");
    Ok(())
}
