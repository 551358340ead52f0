//! The process-wide default client, built lazily from LOCKATTR_REDIS_URL (one test per binary: the
//! default client is set once per process).

use std::time::Duration;

use lockattr_runtime::{default_client, LockError};
use lockattr_tests::RedisServer;

#[tokio::test]
async fn default_client_from_env() {
    std::env::remove_var(lockattr_runtime::ENV_REDIS_URL);
    // Not configured yet: a clear error naming both ways to fix it.
    let err = default_client().unwrap_err();
    assert!(matches!(err, LockError::NoDefaultClient(_)), "{err}");
    assert!(
        err.to_string().contains("LOCKATTR_REDIS_URL")
            && err.to_string().contains("set_default_client"),
        "{err}"
    );

    let server = RedisServer::spawn();
    std::env::set_var(lockattr_runtime::ENV_REDIS_URL, server.url());
    std::env::set_var(lockattr_runtime::ENV_PREFIX, "envapp");
    let client = default_client().expect("built from the environment");
    let g = client
        .lock("job")
        .ttl(Duration::from_secs(2))
        .acquire()
        .await
        .unwrap();
    assert_eq!(server.cli(&["EXISTS", "envapp:{job}"]), "1");
    g.release().await.unwrap();
    // Later calls return the same client; setting another one is refused.
    assert!(lockattr_runtime::set_default_client(lockattr_runtime::LockClient::memory()).is_err());
    assert_eq!(default_client().unwrap().config().prefix(), "envapp");
}
