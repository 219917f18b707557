//! `wopi-guard check`: validate a file, print every problem and every warning.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

/// Prints the verdict on `path`; non-zero exit when the file is not valid.
pub fn run(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{}: {} problem(s)", path.display(), errors.0.len());
            for e in &errors.0 {
                println!("error: {}: {}", e.key, e.message);
            }
            ExitCode::from(1)
        }
    }
}
