//! `ember`: an event-driven eventing broker with serverless serving, in one binary.

/// mimalloc: the hot paths allocate per event (headers, attribute maps, records) and glibc's
/// allocator showed up at ~10% of ingress CPU; mimalloc's thread-local free lists cost less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ember::cli::main()
}
