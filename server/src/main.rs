//! The `stockd` binary: everything lives in the `stockd_server` library so
//! the integration tests can reuse its client; this only sets the exit code.
#![forbid(unsafe_code)]

fn main() {
    match stockd_server::cli::main() {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("stockd: {error:#}");
            std::process::exit(stockd_server::wal_tools::exit_code(&error));
        }
    }
}
