//! A fixed pool of password-hashing threads.
//!
//! Hashing is deliberately slow and memory-hard, so it never runs on the async
//! workers that serve token checks. A fixed pool (one thread per core by default),
//! rather than tokio's elastic blocking pool, bounds both CPU and memory: each thread
//! keeps one argon2 work area (19 MiB at OWASP parameters) and reuses it, which also
//! saves allocating and zero-filling it per hash; after a few idle seconds the area
//! is freed. Jobs wait in a bounded queue; when it is full the caller is told to come
//! back later (503) instead of queueing without limit.

use std::time::Duration;

use flume::{Receiver, RecvTimeoutError, Sender, TrySendError};

use argon2::Block;

use crate::error::AppError;

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// How long a hashing thread keeps its work area while idle.
const KEEP_MEMORY_FOR: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct HashPool {
    jobs: Sender<Job>,
}

impl HashPool {
    /// Starts `threads` hashing threads with room for `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        Self::start_keeping(threads, queue, KEEP_MEMORY_FOR)
    }

    /// As `start`, freeing an idle thread's work area after `keep`.
    fn start_keeping(threads: usize, queue: usize, keep: Duration) -> std::io::Result<Self> {
        // Multi-consumer, so every idle thread waits (and times out) on its own.
        let (tx, rx) = flume::bounded::<Job>(queue.max(1));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("portcullis-hash-{i}"))
                .spawn(move || worker(&rx, keep))?;
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

fn worker(rx: &Receiver<Job>, keep: Duration) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        match rx.recv_timeout(keep) {
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

    /// Every thread frees its work area once idle, not just one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_threads_free_their_memory() {
        let pool = HashPool::start_keeping(2, 8, Duration::from_millis(100)).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let grow = |pool: HashPool, barrier: std::sync::Arc<std::sync::Barrier>| async move {
            pool.run(move |m| {
                m.resize(1024, Block::default());
                barrier.wait();
            })
            .await
        };
        let (a, b) = tokio::join!(grow(pool.clone(), barrier.clone()), grow(pool.clone(), barrier.clone()));
        a.unwrap();
        b.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let size = |pool: HashPool, barrier: std::sync::Arc<std::sync::Barrier>| async move {
            pool.run(move |m| {
                barrier.wait();
                m.len()
            })
            .await
        };
        let (a, b) = tokio::join!(size(pool.clone(), barrier.clone()), size(pool.clone(), barrier));
        assert_eq!((a.unwrap(), b.unwrap()), (0, 0));
    }

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
