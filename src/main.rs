//! The `poxide` command: serve (the default) or run the conformance suite against a server.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use poxide::{config::Overrides, Config, Server};

/// With glibc's allocator the server's memory grew steadily under connection churn (5 to 9 MiB a
/// minute with 10 000 churning connections, even with `malloc_trim` every 5 s); with mimalloc it
/// stays flat, and what a burst of connections frees is reused by the next ones (not returned
/// to the system: see the soak results).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "A server for the Pusher Channels protocol")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Replay the conformance transcripts against a running server.
    Conformance(poxide::conformance::cli::ConformanceArgs),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML file with server settings and one or more apps.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on (0 picks a free one).
    #[arg(long)]
    port: Option<String>,
    /// Id of the default (first) app.
    #[arg(long)]
    app_id: Option<String>,
    /// Key of the default app.
    #[arg(long)]
    app_key: Option<String>,
    /// Secret of the default app.
    #[arg(long)]
    app_secret: Option<String>,
    /// Largest event data in bytes.
    #[arg(long)]
    payload_limit: Option<String>,
    /// Seconds of silence before the server pings a client.
    #[arg(long)]
    activity_timeout: Option<String>,
    /// Milliseconds to wait for an answer to a server ping before closing with 4201.
    #[arg(long)]
    pong_timeout_ms: Option<String>,
    /// Send the default app's webhooks (all events) to this http:// URL.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Join the cluster of nodes that share this Redis (redis://host:6379/0).
    #[arg(long)]
    redis_url: Option<String>,
    /// Prefix of every Redis key and channel of the cluster (default poxide).
    #[arg(long)]
    redis_prefix: Option<String>,
    /// Milliseconds of silence after which a node is dead (default 10000).
    #[arg(long)]
    node_timeout_ms: Option<String>,
    /// Serve the test double's inspection API under /_poxide/ (unsigned: test machines only).
    #[arg(long)]
    inspect: bool,
    /// Once accepting connections, write the URLs, port and apps as one JSON object here.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Write every exchange of the default app as conformance transcripts into this directory.
    #[arg(long)]
    record: Option<String>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            host: self.host.clone(),
            port: self.port.clone(),
            app_id: self.app_id.clone(),
            app_key: self.app_key.clone(),
            app_secret: self.app_secret.clone(),
            payload_limit: self.payload_limit.clone(),
            activity_timeout: self.activity_timeout.clone(),
            pong_timeout_ms: self.pong_timeout_ms.clone(),
            webhook_url: self.webhook_url.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            node_timeout_ms: self.node_timeout_ms.clone(),
            inspect: self.inspect.then(|| "true".to_string()),
            socket_id_seed: None,
            record: self.record.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match cli.command {
        Some(Command::Conformance(args)) => runtime.block_on(poxide::conformance::cli::run(args)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        None => runtime.block_on(serve(cli.serve)),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let (env, env_used) = Overrides::from_env(|name| std::env::var(name).ok());
    let config = match Config::load(args.config.as_deref(), &env, &args.overrides()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("poxide: {e}");
            return ExitCode::from(2);
        }
    };
    let apps: Vec<String> = config
        .apps
        .iter()
        .map(|a| format!("{} (key {})", a.id, a.key))
        .collect();
    let credentials: Vec<serde_json::Value> = config
        .apps
        .iter()
        .map(|a| serde_json::json!({"id": a.id, "key": a.key, "secret": a.secret}))
        .collect();
    let inspect = config.inspect;
    // Poxa's defaults are public: fine on a developer's loopback, an open door elsewhere.
    let public_credentials = !config.host.is_loopback()
        && config
            .apps
            .iter()
            .any(|a| a.id == "app_id" || a.key == "app_key" || a.secret == "secret");
    // Before the server says it is listening: a SIGTERM right after that line must find the
    // handler in place.
    let stop = stop_signal();
    tokio::pin!(stop);
    let server = match Server::new(config).start().await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("poxide: cannot listen: {e}");
            return ExitCode::from(1);
        }
    };
    if !env_used.is_empty() {
        // Environment beats the config file; say so, or a stray PORT is a mystery.
        tracing::info!("settings from the environment: {}", env_used.join(", "));
    }
    tracing::info!(apps = %apps.join(", "), "poxide listening on {}", server.local_addr());
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
    stop.await;
    shutdown(server).await
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
