//! The webhook journal of a cluster node: every request it is delivering is in a hash of its
//! own until delivered or given up, so when the node dies the node that sweeps it goes on
//! retrying until the request's retry window closes. At least once: a request the dead node
//! had sent without seeing the answer is sent again.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Inner;
use crate::{
    hub::{HubEvent, HubResult},
    webhook::{Journal, Request},
};

#[derive(Serialize, Deserialize)]
struct Entry {
    request: Request,
    deadline_ms: u64,
}

pub struct ClusterJournal {
    inner: Arc<Inner>,
}

impl ClusterJournal {
    pub fn new(inner: Arc<Inner>) -> Self {
        ClusterJournal { inner }
    }
}

#[async_trait]
impl Journal for ClusterJournal {
    async fn record(&self, request: &Request, deadline_ms: u64) -> Option<String> {
        let id = format!("{:016x}", rand::random::<u64>());
        let entry = serde_json::to_string(&Entry {
            request: request.clone(),
            deadline_ms,
        })
        .ok()?;
        let key = self.inner.keys.node_webhooks(&self.inner.node);
        self.inner
            .cmd::<()>(redis::cmd("HSET").arg(&key).arg(&id).arg(&entry))
            .await
            .ok()?;
        Some(id)
    }

    async fn done(&self, id: &str) {
        let key = self.inner.keys.node_webhooks(&self.inner.node);
        let _ = self
            .inner
            .cmd::<()>(redis::cmd("HDEL").arg(&key).arg(id))
            .await;
    }
}

/// Takes over the requests a dead node was delivering; returns how many.
pub async fn adopt(inner: &Inner, node: &str) -> HubResult<usize> {
    let key = inner.keys.node_webhooks(node);
    let (entries,): (Vec<String>,) = inner
        .pipe(redis::pipe().hvals(&key).del(&key).ignore())
        .await?;
    let mut adopted = 0;
    for entry in entries {
        if let Ok(Entry {
            request,
            deadline_ms,
        }) = serde_json::from_str(&entry)
        {
            adopted += 1;
            let _ = inner
                .events
                .send(HubEvent::Adopted {
                    request,
                    deadline_ms,
                })
                .await;
        }
    }
    Ok(adopted)
}
