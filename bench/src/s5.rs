//! Scenario 5: the same guarded work written with the attribute and by hand against the runtime.

use std::hint::black_box;
use std::time::Duration;

use lockattr_runtime::{LockClient, LockError};

/// The work under the attribute.
#[lockattr_runtime::distributed_lock(key = "job:{id}", ttl = "10s", client = client)]
pub async fn with_attribute(client: &LockClient, id: u64) -> Result<u64, LockError> {
    Ok(black_box(id))
}

/// The same work written by hand: render the key, lock, run, release.
pub async fn by_hand(client: &LockClient, id: u64) -> Result<u64, LockError> {
    client
        .lock(format!("job:{id}"))
        .ttl(Duration::from_secs(10))
        .run(async move { black_box(id) })
        .await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn both_lock_the_same_key() {
        let client = lockattr_runtime::LockClient::memory();
        assert_eq!(super::with_attribute(&client, 7).await.unwrap(), 7);
        assert_eq!(super::by_hand(&client, 7).await.unwrap(), 7);
        let g = client.lock("job:7").acquire().await.unwrap();
        assert!(super::with_attribute(&client, 8).await.is_ok());
        assert!(super::by_hand(&client, 8).await.is_ok());
        g.release().await.unwrap();
    }
}
