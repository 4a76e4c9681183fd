//! Dropping a large or slow-to-destroy value off the caller's thread: a
//! live period's broker state (100,000 messages take tens of milliseconds
//! to free) or a given-up Kafka producer (its destruction joins
//! librdkafka's threads).

/// Drops `value` on a thread of its own named `name`. If the thread cannot
/// start, the value went with the failed spawn's closure: dropped already.
#[cfg(not(madsim))]
pub(crate) fn drop_elsewhere<T: Send + 'static>(name: &str, value: T) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || drop(value));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, thread = name, "cannot start a thread to drop a value");
    }
}

/// Under madsim everything runs on the simulation's one thread: dropped here.
#[cfg(madsim)]
pub(crate) fn drop_elsewhere<T: Send + 'static>(_name: &str, value: T) {
    drop(value);
}
