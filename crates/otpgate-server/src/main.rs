//! The `otpgate` command: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    otpgate_server::cli::main()
}
