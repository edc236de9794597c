//! Wiring: the shared server state, the routes, and [`Server`], which binds a port (0 for any
//! free port), runs until shut down and reports its address, so tests and other programs can
//! embed poxide.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use poem::{
    get,
    http::uri::Scheme,
    listener::{Acceptor, TcpAcceptor},
    post,
    web::{LocalAddr, RemoteAddr},
    EndpointExt, Route, Server as PoemServer,
};
use tokio::{net::TcpStream, sync::watch, task::JoinHandle};

use crate::{
    apps::Apps,
    config::Config,
    http,
    hub::{memory::MemoryAdapter, Adapter},
    shutdown::{self, Shutdown, ShutdownTrigger},
    subscription_count::SubscriptionCounts,
    upgrade,
    webhook::{WebhookStats, Webhooks},
};

/// How long shutdown waits for connections to say goodbye before the process may exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Everything a handler needs, passed explicitly as poem data.
pub struct ServerState {
    pub config: Config,
    pub apps: Apps,
    pub adapter: Arc<dyn Adapter>,
    pub shutdown: Shutdown,
    pub webhooks: Webhooks,
    pub subscription_counts: SubscriptionCounts,
    live_connections: watch::Sender<usize>,
}

impl ServerState {
    /// Counts a WebSocket connection as live until the guard drops, so shutdown can wait for it.
    pub fn connection_guard(&self) -> ConnectionGuard {
        self.live_connections.send_modify(|n| *n += 1);
        ConnectionGuard(self.live_connections.clone())
    }
}

pub struct ConnectionGuard(watch::Sender<usize>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// A poxide server, configured but not yet listening.
pub struct Server {
    config: Config,
    adapter: Arc<dyn Adapter>,
}

impl Server {
    pub fn new(config: Config) -> Self {
        Server {
            config,
            adapter: Arc::new(MemoryAdapter::new()),
        }
    }

    /// Replaces the in-memory hub, e.g. with one shared between nodes.
    pub fn with_adapter(mut self, adapter: Arc<dyn Adapter>) -> Self {
        self.adapter = adapter;
        self
    }

    /// Binds `config.host:config.port` and starts serving in the background.
    pub async fn start(self) -> io::Result<RunningServer> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::new(self.config.host, self.config.port))
                .await?;
        let addr = listener.local_addr()?;
        let acceptor = NoDelay(TcpAcceptor::from_tokio(listener)?);
        let (trigger, shutdown) = shutdown::channel();
        let (live_connections, live) = watch::channel(0);
        let state = Arc::new(ServerState {
            apps: Apps::new(&self.config.apps),
            webhooks: Webhooks::start(self.config.webhook_delivery.clone()),
            config: self.config,
            adapter: self.adapter,
            shutdown: shutdown.clone(),
            subscription_counts: SubscriptionCounts::default(),
            live_connections,
        });
        let app = routes().data(state.clone());
        let mut stop = shutdown;
        let task = tokio::spawn(async move {
            PoemServer::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move { stop.wait().await },
                    Some(SHUTDOWN_GRACE),
                )
                .await
        });
        Ok(RunningServer {
            state,
            addr,
            trigger,
            live,
            task,
        })
    }
}

/// Accepts with Nagle's algorithm off. Pusher traffic is many small frames (a subscription
/// reply, then a cached event right behind it); with Nagle on, the second waits for the client's
/// delayed ACK, about 40 ms.
struct NoDelay(TcpAcceptor);

impl Acceptor for NoDelay {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let accepted = self.0.accept().await?;
        accepted.0.set_nodelay(true)?;
        Ok(accepted)
    }
}

pub fn routes() -> Route {
    Route::new()
        .at("/app/:key", get(upgrade::app_socket))
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
        .at("/", upgrade::not_found)
        .at("/*path", upgrade::not_found)
}

/// A listening server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    state: Arc<ServerState>,
    addr: SocketAddr,
    trigger: ShutdownTrigger,
    live: watch::Receiver<usize>,
    task: JoinHandle<io::Result<()>>,
}

impl RunningServer {
    /// What happened to webhook events so far.
    pub fn webhook_stats(&self) -> &WebhookStats {
        self.state.webhooks.stats()
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
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.trigger.trigger();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.live.wait_for(|n| *n == 0)).await;
        self.task.await.map_err(io::Error::other)?
    }
}
