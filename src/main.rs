//! `ember`: an event-driven eventing broker with serverless serving, in one binary.

fn main() -> std::process::ExitCode {
    ember::cli::main()
}
