use clap::Parser;
use std::process::ExitCode;
use wopi_guard::cli::{Cli, Command};
use wopi_guard::config::Config;
use wopi_guard::diagnose;
use wopi_guard::logging::{self, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = if cli.log_text { LogFormat::Text } else { LogFormat::Json };
    match cli.command {
        Some(Command::Check { config }) => wopi_guard::check::run(&config),
        Some(Command::Discovery { source, timeout }) => diagnose::discovery_command(&source, timeout.into()),
        Some(Command::Sign { key, old_key, url, timestamp }) => {
            diagnose::sign_command(&key, old_key.as_ref(), &url, timestamp)
        }
        Some(Command::Explain { request, config, discovery, public_url, at }) => {
            diagnose::explain_command(&request, config.as_ref(), &discovery, public_url.as_deref(), at.map(Into::into))
        }
        Some(Command::Demo { listen, admin_listen, once }) => {
            logging::init(LogFormat::Text, std::io::stderr);
            exit(wopi_guard::demo::run(listen, admin_listen, once))
        }
        None => {
            let Some(path) = cli.config else {
                eprintln!("wopi-guard: pass --config FILE to run the proxy, or try `wopi-guard demo` (see --help)");
                return ExitCode::from(2);
            };
            logging::init(format, std::io::stderr);
            match Config::load(&path) {
                Ok(config) => {
                    for warning in config.warnings() {
                        tracing::warn!(%warning, "configuration");
                    }
                    exit(wopi_guard::proxy::run(&config, None))
                }
                Err(errors) => {
                    eprintln!("wopi-guard: {} is not valid:\n{errors}", path.display());
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wopi-guard: {e}");
            ExitCode::FAILURE
        }
    }
}
