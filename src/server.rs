//! Wiring: the REST routes and [`Server`], which binds a port (0 for any free port), runs until
//! shut down and reports its address, so tests and other programs can embed poxide.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use poem::{endpoint::BoxEndpoint, get, post, EndpointExt, Route};
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use crate::{
    apps,
    cluster::ClusterAdapter,
    config::{AppConfig, Config, MetricsConfig, Overrides, DEFAULT_APPS_REFRESH},
    http,
    hub::{memory::MemoryAdapter, Adapter},
    listener,
    service::Rest,
    state::ServerState,
    tls::{Certificates, TlsError},
    transitions,
    webhook::WebhookStats,
};

/// How long shutdown waits for connections to say goodbye before the process may exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificate or key cannot be served (a configuration mistake: exit code 2).
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("{0}")]
    Cluster(String),
    #[error("{0}")]
    AppsStore(#[from] crate::apps::StoreError),
}

/// A poxide server, configured but not yet listening.
pub struct Server {
    config: Config,
    apps_file: Option<(PathBuf, Overrides, Overrides)>,
}

impl Server {
    pub fn new(config: Config) -> Self {
        Server {
            config,
            apps_file: None,
        }
    }

    /// The apps came from this file (read with these environment and flag overrides): read it
    /// again when it changes or on [`RunningServer::reload_apps`]. Ignored with an apps store.
    pub fn apps_file(mut self, path: PathBuf, env: Overrides, flags: Overrides) -> Self {
        self.apps_file = Some((path, env, flags));
        self
    }

    /// Binds `config.host:config.port` and starts serving in the background; in cluster mode
    /// the node joins the cluster in the background too (it refuses connections until then).
    pub async fn start(mut self) -> Result<RunningServer, StartError> {
        let certificates = match &self.config.tls {
            Some(tls) => Some(Arc::new(Certificates::new(tls.clone())?)),
            None => None,
        };
        let plain = match &self.config.tls {
            Some(tls) if tls.only => None,
            _ => Some(bind(self.config.host, self.config.port).await?),
        };
        let secure = match &mut self.config.tls {
            Some(tls) => {
                let bound = bind(self.config.host, tls.port).await?;
                // Port 0 picked one: what logs and hints name is the real one.
                tls.port = bound.1.port();
                Some(bound)
            }
            None => None,
        };
        let mut tasks = Vec::new();
        let (source, revision, refresh) = match &self.config.apps_store {
            Some(store_config) => {
                let store = apps::Store::open(&store_config.url).await?;
                let revision = store.revision().await?;
                self.config.apps = apps::load(&store, &apps::Apps::new(&[])).await?;
                if self.config.apps.is_empty() {
                    tracing::warn!(
                        "the apps database has no apps yet: add one with `poxide apps add`"
                    );
                }
                let source = Some(apps::Source::Database(store));
                (source, revision, store_config.refresh)
            }
            None => {
                let source = self
                    .apps_file
                    .take()
                    .map(|(path, env, flags)| apps::Source::File {
                        path,
                        env: Box::new(env),
                        flags: Box::new(flags),
                    });
                (source, 0, DEFAULT_APPS_REFRESH)
            }
        };
        let adapter: Arc<dyn Adapter> = match &self.config.cluster {
            Some(cluster) => {
                let apps = self.config.apps.iter().map(|a| a.id.clone()).collect();
                let grace = self.config.webhook_delivery.grace_ms;
                Arc::new(
                    ClusterAdapter::start(cluster, apps, grace)
                        .map_err(|e| StartError::Cluster(e.to_string()))?,
                )
            }
            None => Arc::new(MemoryAdapter::new()),
        };
        let state = Arc::new(ServerState::new(self.config, adapter));
        if let Some(events) = state.adapter.events() {
            tokio::spawn(transitions::follow(state.clone(), events));
        }
        let reload = Arc::new(Notify::new());
        if let Some(source) = source {
            let follow = apps::follow(source, state.clone(), refresh, reload.clone(), revision);
            tasks.push(tokio::spawn(follow));
        }
        let mut routes = routes(state.inspector.is_some(), state.console.is_some()).boxed();
        if state.happenings.wire_watched() {
            routes = routes.around(crate::record::observe_rest).boxed();
        }
        if state.metrics.is_some() {
            routes = routes.around(http::answered::observe).boxed();
        }
        let rest: Rest = Arc::new(routes.data(state.clone()).boxed());
        let metrics_addr = match &state.config.metrics {
            Some(m) => bind_metrics(m).await?.map(|(listener, addr)| {
                tasks.push(tokio::spawn(crate::metrics::serve(listener, state.clone())));
                addr
            }),
            None => None,
        };
        let plain_addr = match plain {
            Some((listener, addr)) => {
                tasks.push(tokio::spawn(listener::run(
                    listener,
                    state.clone(),
                    rest.clone(),
                    None,
                )));
                Some(addr)
            }
            None => None,
        };
        let tls_addr = match (secure, certificates) {
            (Some((listener, addr)), Some(certificates)) => {
                let acceptor = TlsAcceptor::from(certificates.server_config());
                tasks.push(tokio::spawn(listener::run(
                    listener,
                    state.clone(),
                    rest,
                    Some(acceptor),
                )));
                tasks.push(tokio::spawn(crate::tls::watch(
                    certificates,
                    state.shutdown.clone(),
                )));
                Some(addr)
            }
            _ => None,
        };
        Ok(RunningServer {
            state,
            reload,
            plain_addr,
            tls_addr,
            metrics_addr,
            tasks,
        })
    }
}

/// The metrics listener. On the default port, one already taken (another poxide on the same
/// machine, as CI doubles often are) costs the metrics, with a warning, not the server.
async fn bind_metrics(
    metrics: &MetricsConfig,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    match bind(metrics.host, metrics.port).await {
        Ok(bound) => Ok(Some(bound)),
        Err(StartError::Listen { addr, source })
            if source.kind() == io::ErrorKind::AddrInUse
                && *metrics == MetricsConfig::default() =>
        {
            tracing::warn!(
                "metrics off: {addr} is taken ({source}); set POXIDE_METRICS_PORT to another port, or 0"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn bind(host: IpAddr, port: u16) -> Result<(TcpListener, SocketAddr), StartError> {
    let addr = SocketAddr::new(host, port);
    let listen = |source| StartError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    Ok((listener, local))
}

/// The REST API and health checks; with `inspect` the test double's `/_poxide/` API, and with
/// `console` the web console's page and endpoints (otherwise those paths are 404 like any other).
pub fn routes(inspect: bool, console: bool) -> BoxEndpoint<'static> {
    let mut route = Route::new();
    if inspect {
        route = route.nest("/_poxide", crate::inspect::routes::routes());
    }
    if console {
        route = route
            .at("/", get(crate::console::routes::index))
            .nest("/console", crate::console::routes::routes());
    }
    route
        .at("/apps/:app_id/events", post(http::trigger))
        .at("/apps/:app_id/batch_events", post(http::batch_trigger))
        .at("/apps/:app_id/channels", get(http::list_channels))
        .at("/apps/:app_id/channels/:channel", get(http::channel_info))
        .at(
            "/apps/:app_id/channels/:channel/users",
            get(http::channel_users),
        )
        .at(
            "/apps/:app_id/users/:user_id/terminate_connections",
            post(http::terminate_user),
        )
        .at("/ping", get(http::health::ping))
        .at("/up", get(http::health::up))
        .at("/ready", get(http::health::ready))
        // pusher-js's HTTP fallbacks: `httpPath` is `/pusher` unless set, `''` gives `/app/…`.
        .at(
            "/pusher/app/:key/:server/:session/:kind",
            crate::xhr::endpoint(),
        )
        .at("/app/:key/:server/:session/:kind", crate::xhr::endpoint())
        // Not a `/*path` route: poem matches that one before `/` itself.
        .catch_error(|_: poem::error::NotFoundError| async { http::not_found_response() })
        .boxed()
}

/// A listening server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    state: Arc<ServerState>,
    /// Wakes the apps follower at once (SIGHUP).
    reload: Arc<Notify>,
    plain_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    /// The accept loops and the certificate watcher.
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// How many HTTP and WebSocket connections are being served now, readable from anywhere
    /// (the binary watches it to give memory back after a burst).
    pub fn connection_gauge(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let tasks = self.state.tasks.clone();
        move || tasks.len()
    }

    /// Reads the apps file or database again now instead of at the next check.
    pub fn reload_apps(&self) {
        self.reload.notify_one();
    }

    /// The apps served now, by id.
    pub fn apps(&self) -> Vec<Arc<AppConfig>> {
        self.state.apps.all()
    }

    /// What happened to webhook events so far.
    pub fn webhook_stats(&self) -> &WebhookStats {
        self.state.webhooks.stats()
    }

    pub(crate) fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Accepting connections: always for a single node, once it has joined for a cluster node.
    pub fn is_ready(&self) -> bool {
        self.state.adapter.ready() && !self.state.shutdown.is_cancelled()
    }

    /// The plain listener's address, or the TLS one's when it is the only one.
    pub fn local_addr(&self) -> SocketAddr {
        self.plain_addr
            .or(self.tls_addr)
            .expect("a server has a listener")
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `ws://host:port` (`wss://` with TLS only), with 0.0.0.0 replaced by 127.0.0.1 so it is
    /// usable as a client URL.
    pub fn ws_url(&self) -> String {
        self.url("ws", "wss")
    }

    pub fn http_url(&self) -> String {
        self.url("http", "https")
    }

    fn url(&self, plain: &str, tls: &str) -> String {
        let scheme = if self.plain_addr.is_some() {
            plain
        } else {
            tls
        };
        format!("{scheme}://{}", client_addr(self.local_addr()))
    }

    /// Closes every connection with 4200 (clients reconnect at once, e.g. to another node),
    /// stops accepting, and waits for both.
    pub async fn shutdown(self) -> io::Result<()> {
        self.state.shutdown.cancel();
        for task in self.tasks {
            task.await.map_err(io::Error::other)?;
        }
        self.state.tasks.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.state.tasks.wait()).await;
        self.state.adapter.shutdown().await;
        if let Some(recorder) = &self.state.recorder {
            recorder.flush();
        }
        Ok(())
    }
}

/// 0.0.0.0 replaced by 127.0.0.1, so the address is usable by a client.
fn client_addr(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    addr
}
