//! Who a client is, for limits per client: its IP address, taken from `X-Forwarded-For` only
//! when the TCP peer is one of the configured `trusted_proxies` (anyone else could write any
//! address in that header), and the per-app budget of new WebSocket connections per second for
//! each address (`connection_rate_per_ip`).

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};

use dashmap::DashMap;
use tokio::time::Instant;

use crate::{config::AppConfig, session::TokenBucket};

/// The client's address: the rightmost `X-Forwarded-For` entry that is not a trusted proxy,
/// when the peer itself is one; else the peer.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    forwarded_for
        .into_iter()
        .flat_map(|header| header.rsplit(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// Buckets kept before the idle (full) ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// New connections per second per app and client address.
#[derive(Default)]
pub struct ConnectionRates {
    buckets: DashMap<(String, IpAddr), Mutex<TokenBucket>>,
    admitted: AtomicUsize,
}

impl ConnectionRates {
    /// Whether `ip` may open another connection to `app` now.
    pub fn admit(&self, app: &AppConfig, ip: IpAddr) -> bool {
        let Some(rate) = app.connection_rate_per_ip else {
            return true;
        };
        let now = Instant::now();
        let admitted = self
            .buckets
            .entry((app.id.clone(), ip))
            .or_insert_with(|| Mutex::new(TokenBucket::new(rate as usize, rate)))
            .lock()
            .expect("not poisoned")
            .take(now);
        // One bucket per address that connected: the full ones (idle for a second or more) are
        // dropped once there are many, so a spray of addresses cannot grow the map for ever.
        if self.admitted.fetch_add(1, Ordering::Relaxed) % 1024 == 1023
            && self.buckets.len() > PRUNE_ABOVE
        {
            self.buckets
                .retain(|_, b| !b.get_mut().expect("not poisoned").is_full(now));
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let spoofed = Some("1.2.3.4, 203.0.113.7");
        assert_eq!(
            client_ip(client, spoofed, &[proxy]),
            client,
            "not from the proxy"
        );
        assert_eq!(client_ip(proxy, spoofed, &[proxy]), client);
        assert_eq!(
            client_ip(
                proxy,
                Some("203.0.113.7, 10.0.0.9"),
                &[proxy, "10.0.0.9".parse().unwrap()]
            ),
            client,
            "a chain of trusted proxies"
        );
        assert_eq!(client_ip(proxy, None, &[proxy]), proxy);
        assert_eq!(client_ip(proxy, Some("garbage"), &[proxy]), proxy);
    }

    #[tokio::test(start_paused = true)]
    async fn each_address_has_its_own_budget_and_idle_ones_are_pruned() {
        let app = AppConfig {
            connection_rate_per_ip: Some(2),
            ..AppConfig::default()
        };
        let rates = ConnectionRates::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!((0..3).filter(|_| rates.admit(&app, a)).count(), 2);
        assert!(rates.admit(&app, b));
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert!(rates.admit(&app, a), "one more token after half a second");
        for n in 0..PRUNE_ABOVE as u32 + 2048 {
            rates.admit(&app, IpAddr::from(n.to_be_bytes()));
        }
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        for n in 0..1024u32 {
            rates.admit(&app, IpAddr::from((n + 1_000_000).to_be_bytes()));
        }
        assert!(
            rates.buckets.len() <= 1024 + 1,
            "idle buckets dropped: {}",
            rates.buckets.len()
        );
    }
}
