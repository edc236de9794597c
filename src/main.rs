//! The `poxide` command: serve (the default) or run the conformance suite against a server.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Args, Parser, Subcommand};
use poxide::{config::Overrides, Config, Server};

mod allocator;

#[derive(Parser)]
#[command(version, about = "A server for the Pusher Channels protocol")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

// Parsed once at start-up: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Replay the conformance transcripts against a running server.
    Conformance(poxide::conformance::cli::ConformanceArgs),
    /// Grade a Pusher client library: play a scripted server to it through a driver program.
    ClientConformance(poxide::conformance::clients::cli::ClientConformanceArgs),
    /// List, add, remove or change the apps of an apps database (sqlite:// or postgres://).
    Apps(poxide::AppsArgs),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML file with server settings and one or more apps
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    /// Once accepting connections, write the URLs, port and apps as one JSON object here
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let runtime = allocator::runtime().expect("tokio runtime");
    match cli.command {
        Some(Command::Conformance(args)) => runtime.block_on(poxide::conformance::cli::run(args)),
        Some(Command::ClientConformance(args)) => {
            runtime.block_on(poxide::conformance::clients::cli::run(args))
        }
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Apps(args)) => runtime.block_on(poxide::apps_command(args)),
        None => runtime.block_on(serve(cli.serve)),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let (env, env_used) = Overrides::from_env(|name| std::env::var(name).ok());
    let (config, settings) =
        match Config::load_explained(args.config.as_deref(), &env, &args.overrides) {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("poxide: {e}");
                return ExitCode::from(2);
            }
        };
    let inspect = config.inspect;
    let cluster = config.cluster.as_ref().map(|c| {
        (
            poxide::config::hide_password(&c.redis_url),
            c.prefix.clone(),
        )
    });
    let tls_files = config.tls.as_ref().map(|t| t.cert.display().to_string());
    let loopback = config.host.is_loopback();
    // Before the server says it is listening: a SIGTERM right after that line must find the
    // handler in place.
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut server = Server::new(config);
    if let Some(path) = &args.config {
        server = server.apps_file(path.clone(), env, args.overrides.clone());
    }
    let server = match server.start().await {
        Ok(server) => server,
        Err(e @ poxide::StartError::Tls(_)) => {
            eprintln!("poxide: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("poxide: {e}");
            return ExitCode::from(1);
        }
    };
    tokio::spawn(allocator::collect_after_bursts(server.connection_gauge()));
    let served = server.apps();
    // A database may hold thousands: the first line names a few.
    const NAMED: usize = 10;
    let mut apps: Vec<String> = served
        .iter()
        .take(NAMED)
        .map(|a| format!("{} (key {})", a.id, a.key))
        .collect();
    if served.len() > NAMED {
        apps.push(format!("and {} more", served.len() - NAMED));
    }
    let credentials: Vec<serde_json::Value> = served
        .iter()
        .map(|a| serde_json::json!({"id": a.id, "key": a.key, "secret": a.secret}))
        .collect();
    // Poxa's defaults are public: fine on a developer's loopback, an open door elsewhere.
    let public_credentials = !loopback
        && served
            .iter()
            .any(|a| a.id == "app_id" || a.key == "app_key" || a.secret == "secret");
    // The first line says where to connect (tests and scripts wait for it).
    let mut also = Vec::new();
    if let (Some(addr), Some(cert)) = (server.tls_addr(), &tls_files) {
        if addr != server.local_addr() {
            also.push(format!("TLS (wss://, https://) on {addr} with {cert}"));
        }
    }
    if let Some(addr) = server.metrics_addr() {
        also.push(format!("metrics on http://{addr}/metrics"));
    }
    let scheme = if server.ws_url().starts_with("wss") {
        "wss://, https://"
    } else {
        "ws://, http://"
    };
    tracing::info!(
        apps = %apps.join(", "),
        "poxide listening on {} ({scheme}){}",
        server.local_addr(),
        also.iter().map(|a| format!("; {a}")).collect::<String>()
    );
    if !env_used.is_empty() {
        // Environment beats the config file; say so, or a stray PORT is a mystery.
        tracing::info!("environment variables read: {}", env_used.join(", "));
    }
    for s in &settings {
        tracing::info!("setting {} = {} (from the {})", s.key, s.value, s.source);
    }
    if let Some((url, prefix)) = &cluster {
        tracing::info!("cluster node on {url}, key prefix {prefix}");
    }
    if public_credentials {
        tracing::warn!(
            "the default app's public credentials (app_id / app_key / secret) are in use on a non-loopback address: anyone who reaches this port can publish; set your own"
        );
    }
    if inspect {
        tracing::warn!(
            "inspection API on: /_poxide/ shows every event and webhook and publishes without a signature; for test machines only"
        );
    }
    if let Some(path) = &args.ready_file {
        tokio::select! {
            written = write_ready_file(path, &server, credentials) => if let Err(e) = written {
                eprintln!("poxide: cannot write the ready file {}: {e}", path.display());
                let _ = server.shutdown().await;
                return ExitCode::from(1);
            },
            _ = &mut stop => return shutdown(server).await,
        }
    }
    let server = Arc::new(server);
    let hangups = reload_on_hangup(server.clone());
    stop.await;
    hangups.abort();
    let _ = hangups.await;
    let server = Arc::into_inner(server).expect("the SIGHUP task has ended");
    shutdown(server).await
}

/// SIGHUP reads the apps again (the `[[apps]]` of the config file, or the apps database) at
/// once; other settings need a restart.
fn reload_on_hangup(server: Arc<poxide::RunningServer>) -> tokio::task::JoinHandle<()> {
    // Installed before returning: a SIGHUP sent right after start-up must not end the process.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let Ok(mut hangup) = hangup else {
                return;
            };
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reading the apps again");
                server.reload_apps();
            }
        }
        #[cfg(not(unix))]
        drop(server);
    })
}

async fn shutdown(server: poxide::RunningServer) -> ExitCode {
    tracing::info!("shutting down");
    match server.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poxide: {e}");
            ExitCode::from(1)
        }
    }
}

/// Once the server accepts connections (a cluster node: once it has joined), writes what a
/// test harness needs to reach it, whole or not at all (through a rename).
async fn write_ready_file(
    path: &std::path::Path,
    server: &poxide::RunningServer,
    apps: Vec<serde_json::Value>,
) -> std::io::Result<()> {
    while !server.is_ready() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let addr = server.local_addr();
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let ready = serde_json::json!({
        "ws_url": server.ws_url(),
        "http_url": server.http_url(),
        "host": host,
        "port": addr.port(),
        "apps": apps,
    });
    let partial = path.with_extension("partial");
    std::fs::write(&partial, format!("{ready}\n"))?;
    std::fs::rename(&partial, path)
}

/// Human-readable lines by default; one JSON object a line with `POXIDE_LOG_FORMAT=json`, for
/// log shippers. `RUST_LOG` filters both (default `poxide=info`).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "poxide=info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("POXIDE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Installs the handlers now; the future resolves on SIGINT or SIGTERM.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
