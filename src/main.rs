//! Entry point: parse the configuration, set up logs, build the app, run it until a signal.

use anyhow::Context;
use clap::Parser;
use cpe_config::config::{Cli, Command};
use cpe_config::{startup::App, telemetry, tls};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tls::install_crypto_provider();
    let cli = Cli::parse();
    if let Some(command) = &cli.command {
        if let Some(exit) = cpe_config::client::run(command, &cli.config).await {
            return exit;
        }
    }
    telemetry::init(cli.config.log_format);
    let result = match cli.command {
        Some(Command::Certs { force, if_missing }) => generate_certs(&cli.config.certs_dir, force, if_missing),
        Some(Command::Healthcheck { url }) => cpe_config::healthcheck::run(&cli.config, url).await,
        Some(Command::Token { action }) => token(cli.config.http.tokens_file.as_deref(), action),
        Some(_) => unreachable!("client commands returned above"),
        None => {
            if let Err(problem) = cli.config.validate() {
                use clap::CommandFactory;
                let error = Cli::command().error(clap::error::ErrorKind::ArgumentConflict, problem);
                error.exit();
            }
            run(cli.config).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: cpe_config::config::Config) -> anyhow::Result<()> {
    cpe_config::limits::raise_open_file_limit();
    let signals = cpe_config::shutdown::Signals::install().context("cannot install signal handlers")?;
    let app = App::build(config).await.context("cannot start")?;
    app.run_until(signals.first_then_force()).await
}

fn generate_certs(dir: &std::path::Path, force: bool, if_missing: bool) -> anyhow::Result<()> {
    let (cert, key) = (dir.join(tls::CERT_FILE).exists(), dir.join(tls::KEY_FILE).exists());
    if if_missing && cert && key {
        tracing::info!(dir = %dir.display(), "a certificate pair exists already; left as it is");
        return Ok(());
    }
    if !force && (cert || key) {
        anyhow::bail!(
            "{} already holds a certificate or key; use `cpe-config certs --force` to replace them",
            dir.display()
        );
    }
    tls::generate_pair(dir, force)?;
    tracing::info!(dir = %dir.display(), "generated a self-signed pair for localhost, 127.0.0.1 and ::1");
    Ok(())
}

/// `cpe-config token create|list|remove`: a new token goes to stdout, once; only its hash is kept.
fn token(file: Option<&std::path::Path>, action: cpe_config::config::TokenCommand) -> anyhow::Result<()> {
    use cpe_config::config::TokenCommand;
    let file = file.context("give --tokens-file (or TOKENS_FILE): the file of the tokens")?;
    match action {
        TokenCommand::Create { name, scope, expires } => {
            let token = cpe_config::tokens::create(file, &name, scope, expires)?;
            cpe_config::say!("{token}");
            eprintln!(
                "token `{name}` ({}) added to {}; it is shown only now",
                scope.name(),
                file.display()
            );
        }
        TokenCommand::List => cpe_config::tokens::list(file)?
            .iter()
            .for_each(|line| cpe_config::say!("{line}")),
        TokenCommand::Remove { name } => {
            cpe_config::tokens::remove(file, &name)?;
            eprintln!(
                "token `{name}` removed from {}; running instances refuse it within seconds",
                file.display()
            );
        }
    }
    Ok(())
}
