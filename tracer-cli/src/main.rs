//! The `tracer` binary: everything is in the library, see [`tracer_cli::cli`].

fn main() -> std::process::ExitCode {
    tracer_cli::cli::main()
}
