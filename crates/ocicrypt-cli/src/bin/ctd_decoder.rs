//! `ctd-decoder`: containerd's stream processor for encrypted layers; see
//! [`ocicrypt_cli::ctd`] and the crate's README, "Using with containerd".

fn main() -> std::process::ExitCode {
    ocicrypt_cli::ctd::main_with_args(std::env::args_os())
}
