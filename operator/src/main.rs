//! `hookguard-operator`: `crd` prints the CRD.

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() != Some("crd") {
        eprintln!("usage: hookguard-operator crd");
        return ExitCode::from(64);
    }
    match hookguard_operator::crdgen::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hookguard-operator: cannot render the CRD: {error}");
            ExitCode::FAILURE
        }
    }
}
