//! poxide as the Pusher double of a Rust test suite: a server on a free port with inspection
//! on, and the records read directly, so a `cargo test` of an app that uses a Pusher SDK needs
//! nothing else.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use poxide::testing::TestServer;
//!
//! let server = TestServer::builder().start().await.unwrap();
//! // The app under test publishes; here, through the unsigned endpoint a test script may use.
//! reqwest::Client::new()
//!     .post(format!("{}/_poxide/apps/app_id/events", server.http_url()))
//!     .body(r#"{"name":"order-created","channel":"orders","data":"{\"id\":7}"}"#)
//!     .send()
//!     .await
//!     .unwrap();
//! let event = server
//!     .wait_for_event("orders", "order-created", Duration::from_secs(5))
//!     .await
//!     .expect("the app published it");
//! assert_eq!(event.event.data, r#"{"id":7}"#);
//! assert_eq!(server.events().len(), 1);
//! // Options for a pusher-js client in a browser test, pointed at this server.
//! assert_eq!(server.pusher_js_options()["wsPort"], server.port());
//! server.reset().await;
//! assert!(server.events().is_empty());
//! server.shutdown().await;
//! # });
//! ```

use std::{io, sync::Arc, time::Duration};

use serde_json::{json, Value};

use crate::{
    config::{AppConfig, Config},
    inspect::{self, Filter, Inspector},
    server::{RunningServer, Server},
};

pub use crate::{
    happenings::{Published, Source},
    inspect::{ConnectionRecord, Delivery, EventRecord, WebhookRecord},
};

/// Builds a [`TestServer`]: loopback, a free port, inspection on, Poxa's default app unless
/// told otherwise.
pub struct TestServerBuilder {
    config: Config,
}

impl TestServerBuilder {
    /// Replaces the apps (the first is the one [`TestServer::app`] returns).
    pub fn apps(mut self, apps: Vec<AppConfig>) -> Self {
        self.config.apps = apps;
        self
    }

    /// Changes any other setting.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    pub async fn start(self) -> io::Result<TestServer> {
        let mut config = self.config;
        config.inspect = true;
        config.validate().map_err(io::Error::other)?;
        let app = config.apps[0].clone();
        let server = Server::new(config)
            .start()
            .await
            .map_err(io::Error::other)?;
        let inspector = server.state().inspector.clone().expect("inspection is on");
        Ok(TestServer {
            server,
            inspector,
            app,
        })
    }
}

/// A running poxide with inspection on.
pub struct TestServer {
    server: RunningServer,
    inspector: Arc<Inspector>,
    app: AppConfig,
}

impl TestServer {
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            config: Config {
                host: [127, 0, 0, 1].into(),
                port: 0,
                // Many doubles run at once: none takes the metrics port.
                metrics: None,
                ..Config::default()
            },
        }
    }

    pub fn ws_url(&self) -> String {
        self.server.ws_url()
    }

    pub fn http_url(&self) -> String {
        self.server.http_url()
    }

    pub fn port(&self) -> u16 {
        self.server.local_addr().port()
    }

    /// The first app: its id, key and secret are what the app under test must use.
    pub fn app(&self) -> &AppConfig {
        &self.app
    }

    /// Every event published so far (REST, client events, server-to-user), oldest first.
    pub fn events(&self) -> Vec<EventRecord> {
        self.inspector.events(&Filter::default())
    }

    /// The first event on `channel` named `event`, already published or arriving within
    /// `timeout`.
    pub async fn wait_for_event(
        &self,
        channel: &str,
        event: &str,
        timeout: Duration,
    ) -> Option<EventRecord> {
        let filter = Filter {
            channel: Some(channel.to_string()),
            event: Some(event.to_string()),
            ..Filter::default()
        };
        let (inspector, filter) = (&self.inspector, &filter);
        inspector
            .wait(timeout, || async move {
                inspector.events(filter).into_iter().next()
            })
            .await
    }

    /// Every webhook event emitted so far, with what became of its deliveries.
    pub fn webhooks(&self) -> Vec<WebhookRecord> {
        self.inspector.webhooks(&Filter::default())
    }

    pub fn connections(&self) -> Vec<ConnectionRecord> {
        self.inspector.connections()
    }

    /// Closes every connection with 4200 and forgets records, caches and pending webhooks.
    pub async fn reset(&self) {
        inspect::reset(self.server.state()).await;
    }

    /// The options of a pusher-js client pointed at this server, as JSON to paste into a
    /// browser test: `new Pusher(key, options)`.
    pub fn pusher_js_options(&self) -> Value {
        json!({
            "cluster": "mt1",
            "wsHost": "127.0.0.1",
            "wsPort": self.port(),
            "forceTLS": false,
            "enabledTransports": ["ws"],
        })
    }

    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
    }
}
