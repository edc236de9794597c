//! Wiring: the REST routes and [`Server`], which binds a port (0 for any free port), runs until
//! shut down and reports its address, so tests and other programs can embed poxide.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use poem::{get, post, EndpointExt, Route};
use tokio::task::JoinHandle;

use crate::{
    cluster::ClusterAdapter,
    config::Config,
    http,
    hub::{memory::MemoryAdapter, Adapter},
    listener,
    service::Rest,
    state::ServerState,
    transitions,
    webhook::WebhookStats,
};

/// How long shutdown waits for connections to say goodbye before the process may exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A poxide server, configured but not yet listening.
pub struct Server {
    config: Config,
}

impl Server {
    pub fn new(config: Config) -> Self {
        Server { config }
    }

    /// Binds `config.host:config.port` and starts serving in the background; in cluster mode
    /// the node joins the cluster in the background too (it refuses connections until then).
    pub async fn start(self) -> io::Result<RunningServer> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::new(self.config.host, self.config.port))
                .await?;
        let addr = listener.local_addr()?;
        let adapter: Arc<dyn Adapter> = match &self.config.cluster {
            Some(cluster) => {
                let apps = self.config.apps.iter().map(|a| a.id.clone()).collect();
                let grace = self.config.webhook_delivery.grace_ms;
                Arc::new(
                    ClusterAdapter::start(cluster, apps, grace)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
                )
            }
            None => Arc::new(MemoryAdapter::new()),
        };
        let state = Arc::new(ServerState::new(self.config, adapter));
        if let Some(events) = state.adapter.events() {
            tokio::spawn(transitions::follow(state.clone(), events));
        }
        let routes = routes(state.inspector.is_some());
        let rest: Rest = if state.happenings.wire_watched() {
            Arc::new(
                routes
                    .around(crate::record::observe_rest)
                    .data(state.clone())
                    .boxed(),
            )
        } else {
            Arc::new(routes.data(state.clone()).boxed())
        };
        let task = tokio::spawn(listener::run(listener, state.clone(), rest));
        Ok(RunningServer { state, addr, task })
    }
}

/// The REST API and health checks, and with `inspect` the test double's `/_poxide/` API
/// (otherwise those paths are 404 like any other).
pub fn routes(inspect: bool) -> Route {
    let route = if inspect {
        Route::new().nest("/_poxide", crate::inspect::routes::routes())
    } else {
        Route::new()
    };
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
        .at("/", http::not_found)
        .at("/*path", http::not_found)
}

/// A listening server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    state: Arc<ServerState>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningServer {
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

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://host:port`, with 0.0.0.0 replaced by 127.0.0.1 so it is usable as a client URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.client_addr())
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.client_addr())
    }

    fn client_addr(&self) -> SocketAddr {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        addr
    }

    /// Closes every connection with 4200 (clients reconnect at once, e.g. to another node),
    /// stops accepting, and waits for both.
    pub async fn shutdown(self) -> io::Result<()> {
        self.state.shutdown.cancel();
        self.task.await.map_err(io::Error::other)?;
        self.state.tasks.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.state.tasks.wait()).await;
        self.state.adapter.shutdown().await;
        if let Some(recorder) = &self.state.recorder {
            recorder.flush();
        }
        Ok(())
    }
}
