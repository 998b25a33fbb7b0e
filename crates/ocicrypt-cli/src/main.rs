//! The `ocicrypt` command; see the crate's README or `ocicrypt --help`.

fn main() -> std::process::ExitCode {
    ocicrypt_cli::main_with_args(std::env::args_os())
}
