//! Fork-join on scoped threads, shared by the parsers, the scorer and the file loader.

/// The number of cores to spread work over.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Joins a scoped thread. A panic in a worker is a bug: re-raise it, never hide it.
pub fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// Runs `work` on every item, each in a scoped thread of its own; results in item order.
pub fn map_parallel<I: Sync, R: Send>(items: &[I], work: impl Fn(&I) -> R + Sync) -> Vec<R> {
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .iter()
            .map(|item| s.spawn(move || work(item)))
            .collect();
        handles.into_iter().map(join).collect()
    })
}
