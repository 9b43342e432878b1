//! The `portcullis` binary; the command line itself is `portcullis::cli`.

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
