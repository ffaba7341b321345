//! Async work from synchronous code that may be running on a runtime's thread: a `Drop`,
//! perhaps while a test unwinds, where blocking on the caller's runtime would panic.

use std::future::Future;

/// Runs `work` to its end on a thread and a current-thread runtime of its own, and waits
/// for it. A panic in `work` stays on that thread: clean-up must not turn one failure
/// into an abort.
pub fn block_on_own_thread(work: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(work);
    })
    .join();
}
