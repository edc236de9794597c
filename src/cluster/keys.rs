//! Where everything lives in Redis. All of an app's keys share one hash tag, `{app}`, so one
//! script can change a channel, the app's channel index, its connection count and its pending
//! webhook departures atomically (and a Redis Cluster keeps an app on one shard). Node
//! bookkeeping is global to the prefix.

/// The keys and pub/sub channels of one cluster (one prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The base every key of `app` starts with; the scripts append to it.
    pub fn app(&self, app: &str) -> String {
        format!("{}:{{{app}}}", self.prefix)
    }

    /// Pub/sub channel of one Pusher channel's events.
    pub fn channel_topic(&self, app: &str, channel: &str) -> String {
        format!("{}:t:{app}:{channel}", self.prefix)
    }

    /// Pub/sub channel of an app's per-user messages (server-to-user, terminate, watchlist),
    /// which every node subscribes to.
    pub fn user_topic(&self, app: &str) -> String {
        format!("{}:u:{app}", self.prefix)
    }

    /// Every app's user topic, for PSUBSCRIBE: apps added while the node runs are covered too.
    pub fn user_topics_pattern(&self) -> String {
        let mut escaped = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        format!("{escaped}:u:*")
    }

    /// The app whose user topic `topic` is, if it is one.
    pub fn app_of_user_topic<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(&self.prefix)?.strip_prefix(":u:")
    }

    /// Sorted set: node id → time of its last heartbeat (ms).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Set of `app\nsocket_id` registered by a node, for sweeping after it dies.
    pub fn node_sockets(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// Hash of the webhook requests a node is delivering: id → request and deadline, so
    /// another node finishes them if it dies.
    pub fn node_webhooks(&self, node: &str) -> String {
        format!("{}:node:{node}:webhooks", self.prefix)
    }

    /// Held by the node sweeping a dead one.
    pub fn sweep_lock(&self, node: &str) -> String {
        format!("{}:sweep:{node}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apps_keys_share_one_hash_tag() {
        let keys = Keys::new("poxide");
        assert_eq!(keys.app("app_id"), "poxide:{app_id}");
        assert_eq!(
            keys.channel_topic("a", "presence-x"),
            "poxide:t:a:presence-x"
        );
        assert_eq!(keys.node_sockets("n1"), "poxide:node:n1");
        assert_eq!(keys.app_of_user_topic(&keys.user_topic("a")), Some("a"));
        assert_eq!(keys.app_of_user_topic("poxide:t:a:c"), None);
    }
}
