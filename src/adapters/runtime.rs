//! The tokio runtime an async adapter's connections do their I/O on: the one it was built in, or
//! a small one of its own, so that its connections work from plain threads and any executor. Shared
//! by the `tokio-postgres`, async Redis and `mysql_async` adapters.

use std::sync::Arc;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// The runtime the connections' I/O runs on: one the factory started (shut down when the factory
/// and the last connection are gone), or one the user handed in.
#[derive(Clone)]
pub(crate) enum RuntimeRef {
    Owned(Arc<OwnedRuntime>),
    Borrowed(Handle),
}

impl RuntimeRef {
    pub(crate) fn handle(&self) -> &Handle {
        match self {
            RuntimeRef::Owned(owned) => owned.handle(),
            RuntimeRef::Borrowed(handle) => handle,
        }
    }

    /// `"owned"` or `"borrowed"`, for `Debug`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RuntimeRef::Owned(_) => "owned",
            RuntimeRef::Borrowed(_) => "borrowed",
        }
    }
}

/// A runtime that may be dropped anywhere, including inside another runtime: it shuts down in
/// the background instead of blocking (which tokio forbids in async contexts).
pub(crate) struct OwnedRuntime(Option<Runtime>);

impl OwnedRuntime {
    /// One worker thread, named `thread_name`.
    pub(crate) fn start(thread_name: &str) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()?;
        Ok(OwnedRuntime(Some(runtime)))
    }

    fn handle(&self) -> &Handle {
        match &self.0 {
            Some(runtime) => runtime.handle(),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts a spawned task if the future waiting for it is dropped (a cancelled create must not
/// leave a connect running for nobody).
pub(crate) struct AbortOnDrop<T>(pub(crate) Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    /// The task's output, or `gone()` if the runtime shut down under it.
    pub(crate) async fn join<E>(mut self, gone: impl Fn() -> E) -> Result<T, E> {
        let handle = self.0.as_mut().ok_or_else(&gone)?;
        let result = handle.await.map_err(|_| gone());
        self.0 = None;
        result
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}
