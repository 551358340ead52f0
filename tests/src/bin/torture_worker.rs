//! A worker process of the torture suite (started by the `torture` coordinator; see
//! `lockattr_tests::torture::worker`).

fn main() -> std::process::ExitCode {
    lockattr_tests::torture::worker::main()
}
