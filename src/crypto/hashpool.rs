//! A fixed pool of password-hashing threads.
//!
//! Hashing is deliberately slow and memory-hard, so it never runs on the async
//! workers that serve token checks. A fixed pool (one thread per core by default),
//! rather than tokio's elastic blocking pool, bounds both CPU and memory: each thread
//! keeps one argon2 work area (19 MiB at OWASP parameters) and reuses it, which also
//! saves allocating and zero-filling it per hash; after a few idle seconds the area
//! is freed. Jobs wait in a bounded queue; when it is full the caller is told to come
//! back later (503) instead of queueing without limit.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Block;

use crate::error::AppError;

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// How long a hashing thread keeps its work area while idle.
const KEEP_MEMORY_FOR: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct HashPool {
    jobs: SyncSender<Job>,
}

impl HashPool {
    /// Starts `threads` hashing threads with room for `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("portcullis-hash-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(Self { jobs: tx })
    }

    /// Runs `f` on a hashing thread with that thread's reusable work area.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(f(memory));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("portcullis_hash_queue_rejections_total").increment(1);
                return Err(AppError::Unavailable {
                    message: "too many password checks in progress; retry shortly".into(),
                    retry_after: 1,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(AppError::internal(anyhow::anyhow!("hashing pool stopped")));
            }
        }
        rx.await
            .map_err(|_| AppError::internal(anyhow::anyhow!("hashing job was dropped")))
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // Waiting holds the lock, so idle threads queue on it; a job releases it.
        let next = match rx.lock() {
            Ok(guard) => guard.recv_timeout(KEEP_MEMORY_FOR),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(&mut memory),
            Err(RecvTimeoutError::Timeout) => {
                if !memory.is_empty() {
                    memory = Vec::new();
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_refuses_when_full() {
        let pool = HashPool::start(1, 1).unwrap();
        assert_eq!(pool.run(|m| m.len()).await.unwrap(), 0);
        // Occupy the thread, fill the one queue slot, then overflow.
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move |_| hold_rx.recv().ok()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|_| 1).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let overflow = pool.run(|_| 2).await;
        assert!(matches!(overflow, Err(AppError::Unavailable { .. })));
        hold_tx.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(queued.await.unwrap().unwrap(), 1);
    }
}
