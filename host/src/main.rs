use std::process::ExitCode;

fn main() -> ExitCode {
    coffer::cli::main()
}
