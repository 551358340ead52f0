//! `rediss://` against a real redis-server with a TLS port (feature `tls`; `scripts/test` runs this file
//! with `cargo test -p lockattr-tests --features tls --test tls`). The certificate is a throw-away
//! self-signed one made with the `openssl` command-line tool.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lockattr_runtime::testing::free_port;
use lockattr_runtime::{LockClient, LockError};
use lockattr_tests::{get, hand_over, raw, spawn_waiter, RedisServer};
use tokio::time::Instant;

/// A redis-server that listens on a plain port (for the test's own checks) and on a TLS port.
struct TlsServer {
    server: RedisServer,
    tls_port: u16,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn spawn() -> TlsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        make_certificate(&cert, &key);
        let tls_port = free_port();
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let server = RedisServer::spawn_with(&[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            cert,
            "--tls-auth-clients",
            "no",
        ]);
        TlsServer {
            server,
            tls_port,
            _dir: dir,
        }
    }

    /// The TLS URL; `#insecure` skips the certificate check (the certificate is self-signed).
    fn url(&self, insecure: bool) -> String {
        let suffix = if insecure { "/#insecure" } else { "" };
        format!("rediss://127.0.0.1:{}{suffix}", self.tls_port)
    }
}

fn make_certificate(cert: &Path, key: &Path) {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("the TLS test needs the openssl command-line tool (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn tls_client(url: &str) -> Result<LockClient, LockError> {
    LockClient::builder()
        .url(url)
        .prefix("t")
        .command_timeout(Duration::from_secs(2))
        .connect()
        .await
}

/// Acquire, fence, renew, release and wake a waiter, all over TLS (the waiter's release notice comes
/// through the subscriber connection, also TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_work_over_tls() {
    let tls = TlsServer::spawn();
    let a = tls_client(&tls.url(true)).await.expect("TLS connect");
    let b = tls_client(&tls.url(true)).await.expect("TLS connect");
    let mut plain = raw(&tls.server.url()).await;

    let g = a
        .lock("order:1")
        .ttl(Duration::from_millis(600))
        .auto_renew(true)
        .acquire()
        .await
        .unwrap();
    assert!(g.fence().await.unwrap() > 0);
    // The lock is on this server (seen through its plain port).
    assert!(get(&mut plain, "t:{order:1}").await.is_some());
    // Renewals over TLS keep it past its TTL.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(g.is_held());

    let waiter = spawn_waiter(&b, "order:1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let handoff = hand_over(g, waiter).await;
    // Woken by the notice, not by the re-check at the holder's TTL (its TTL was renewed to 600 ms).
    assert!(handoff < Duration::from_millis(500), "hand-off {handoff:?}");
    assert!(get(&mut plain, "t:{order:1}").await.is_none());
}

/// The attribute works unchanged over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attribute_works_over_tls() {
    #[lockattr_runtime::distributed_lock(key = "job:{id}", ttl = "5s", client = client)]
    async fn job(client: &LockClient, id: u32) -> Result<u64, LockError> {
        Ok(lockattr_runtime::current_fence()
            .await
            .expect("inside the lock"))
    }
    let tls = TlsServer::spawn();
    let client = tls_client(&tls.url(true)).await.expect("TLS connect");
    let f1 = job(&client, 7).await.unwrap();
    let f2 = job(&client, 7).await.unwrap();
    assert!(f2 > f1);
}

/// A certificate the client does not trust is a clear error that names the fix, not a hang or a panic;
/// and a plain `redis://` client on the TLS port fails within its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_and_wrong_scheme_are_clear_errors() {
    let tls = TlsServer::spawn();
    let err = tls_client(&tls.url(false)).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LockError::Unavailable { .. }), "{msg}");
    assert!(msg.contains("certificate"), "{msg}");
    assert!(msg.contains("#insecure"), "the fix is named: {msg}");

    let t0 = Instant::now();
    let err = tls_client(&format!("redis://127.0.0.1:{}", tls.tls_port))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}
