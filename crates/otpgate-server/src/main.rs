//! The `otpgate` command: parses the command line and hands over to the library.

/// mimalloc: the issuer allocates per request on every worker thread, where glibc's malloc
/// spent ~15 % of the CPU of a check under load (scripts/bench-issuer.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    otpgate_server::cli::main()
}
