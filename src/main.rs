use clap::Parser;

// glibc's malloc locks its arenas when a buffer allocated on one worker thread is freed on
// another, which Pingora's tasks do on every request (see benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use wopi_guard::cli::{Cli, Command};
use wopi_guard::config::{env_overrides, Config};
use wopi_guard::diagnose;
use wopi_guard::logging;
use wopi_guard::proxy::{ConfigLoader, ReloadSource};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A bad filter would silently log nothing: refuse it before anything runs.
    if let Some(filter) = std::env::var_os("WOPI_GUARD_LOG") {
        if let Err(e) = logging::check_filter(&filter.to_string_lossy()) {
            eprintln!("wopi-guard: WOPI_GUARD_LOG is not valid: {e}");
            return ExitCode::from(2);
        }
    }
    let env = env_overrides(std::env::vars());
    match cli.command {
        Some(Command::Check { config, flags, connect }) => {
            let mut overrides = env;
            overrides.extend(flags.flag_overrides());
            wopi_guard::check::run(config.as_deref(), &overrides, connect)
        }
        Some(Command::Discovery { source, timeout, ca_file, resolve_all: false }) => {
            diagnose::discovery_command(&source, timeout.into(), ca_file.as_deref())
        }
        Some(Command::Discovery { source, timeout, ca_file, resolve_all: true }) => {
            diagnose::discovery_every_node_command(&source, timeout.into(), ca_file.as_deref())
        }
        Some(Command::Sign { key, old_key, url, timestamp }) => {
            diagnose::sign_command(&key, old_key.as_ref(), &url, timestamp)
        }
        Some(Command::Explain { request, config, discovery, public_url, at }) => {
            diagnose::explain_command(&request, config.as_ref(), &discovery, public_url.as_deref(), at.map(Into::into))
        }
        #[cfg(feature = "demo")]
        Some(Command::Demo { listen, admin_listen, once }) => {
            logging::init(logging::LogFormat::Text, None, std::io::stderr);
            exit(wopi_guard::demo::run(listen, admin_listen, once))
        }
        None => {
            // Precedence: flags > environment > file > defaults.
            let mut overrides = env;
            overrides.extend(cli.flags.flag_overrides());
            let path = cli.config.clone();
            match Config::load_layered(path.as_deref(), &overrides) {
                Ok(config) => {
                    logging::init(config.log.format, Some(&config.log.level), std::io::stderr);
                    for warning in config.warnings() {
                        tracing::warn!(%warning, "configuration");
                    }
                    // SIGHUP re-reads the same file with the same environment and flags.
                    let loader: ConfigLoader = Box::new(move || Config::load_layered(path.as_deref(), &overrides));
                    exit(wopi_guard::proxy::run_with(&config, None, Some(ReloadSource::Sighup(loader))))
                }
                Err(errors) => {
                    let from = cli.config.as_ref().map_or("the configuration".to_string(), |p| p.display().to_string());
                    eprintln!("wopi-guard: {from} is not valid (see --help for the flags and WOPI_GUARD_* variables):\n{errors}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn exit<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wopi-guard: {e}");
            ExitCode::FAILURE
        }
    }
}
