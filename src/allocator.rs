//! The memory allocator (mimalloc, chosen in `main.rs`) and when it gives memory back.
//!
//! Start-up parses the whole configuration and builds every broker on the main thread,
//! allocating and freeing several times what Ember then keeps (with ten thousand triggers, tens
//! of megabytes). mimalloc returns freed pages to the system only after a delay, when the
//! thread that freed them allocates again — and the main thread allocates almost nothing once
//! Ember runs, so those pages would stay resident for good. [`release_startup_memory`] returns
//! them at once. Transparent huge pages are off (the `no_thp` feature): with them, a few live
//! objects keep whole 2 MiB pages resident.

// Links mimalloc, which provides `mi_collect`, into every binary using this library.
use mimalloc as _;

unsafe extern "C" {
    /// mimalloc's `mi_collect`: frees the calling thread's unused pages and, with `force`,
    /// purges every page freed to the allocator's arenas.
    fn mi_collect(force: bool);
}

/// Gives the memory freed during start-up back to the system; call on the thread that did the
/// start-up, once it is done.
pub fn release_startup_memory() {
    // SAFETY: `mi_collect` may be called at any time from any thread; it only releases memory
    // the allocator holds unused.
    unsafe { mi_collect(true) }
}
