//! Thin entry point: parse the command line and dispatch (see `cli`).

fn main() -> std::process::ExitCode {
    secret_manager::cli::main()
}
