//! The apps this node serves right now, looked up by key (WebSocket) or id (REST): one
//! snapshot, replaced whole when the store changes, with a generation number that open
//! connections compare (one relaxed load, no lock) to learn that their app may have changed.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, RwLock,
};

use std::collections::HashMap;

use crate::config::AppConfig;

/// One consistent set of apps.
#[derive(Debug, Default)]
pub struct Snapshot {
    by_id: HashMap<String, Arc<AppConfig>>,
    by_key: HashMap<String, Arc<AppConfig>>,
}

impl Snapshot {
    fn new(apps: Vec<Arc<AppConfig>>) -> Self {
        let mut snapshot = Snapshot::default();
        for app in apps {
            snapshot.by_key.insert(app.key.clone(), app.clone());
            snapshot.by_id.insert(app.id.clone(), app);
        }
        snapshot
    }
}

/// What a replacement changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |ids: &[String]| {
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        };
        write!(
            f,
            "added {}; removed {}; changed {}",
            list(&self.added),
            list(&self.removed),
            list(&self.changed)
        )
    }
}

pub struct Apps {
    current: RwLock<Arc<Snapshot>>,
    /// Bumped by every replacement that changed something.
    generation: AtomicU64,
}

impl Apps {
    pub fn new(apps: &[AppConfig]) -> Self {
        let snapshot = Snapshot::new(apps.iter().cloned().map(Arc::new).collect());
        Apps {
            current: RwLock::new(Arc::new(snapshot)),
            generation: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Arc<Snapshot>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.read().clone()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<AppConfig>> {
        self.read().by_id.get(id).cloned()
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<AppConfig>> {
        self.read().by_key.get(key).cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.snapshot().by_id.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Every app, by id.
    pub fn all(&self) -> Vec<Arc<AppConfig>> {
        let mut apps: Vec<Arc<AppConfig>> = self.snapshot().by_id.values().cloned().collect();
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        apps
    }

    /// Changes with every replacement that changed an app: a connection that saw another
    /// number looks its app up again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `apps` (already validated) in place of the current ones. An app whose settings are
    /// unchanged keeps its `Arc`; the generation moves only when something changed.
    pub fn replace(&self, apps: Vec<AppConfig>) -> Changes {
        let mut changes = Changes::default();
        let old = self.snapshot();
        let mut kept = Vec::with_capacity(apps.len());
        for app in apps {
            match old.by_id.get(&app.id) {
                Some(before) if **before == app => kept.push(before.clone()),
                Some(_) => {
                    changes.changed.push(app.id.clone());
                    kept.push(Arc::new(app));
                }
                None => {
                    changes.added.push(app.id.clone());
                    kept.push(Arc::new(app));
                }
            }
        }
        let next = Snapshot::new(kept);
        changes.removed = old
            .by_id
            .keys()
            .filter(|id| !next.by_id.contains_key(*id))
            .cloned()
            .collect();
        for list in [
            &mut changes.added,
            &mut changes.removed,
            &mut changes.changed,
        ] {
            list.sort();
        }
        if !changes.is_empty() {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, key: &str) -> AppConfig {
        AppConfig {
            id: id.into(),
            key: key.into(),
            ..AppConfig::default()
        }
    }

    #[test]
    fn a_replacement_says_what_changed_and_moves_the_generation_only_then() {
        let apps = Apps::new(&[app("1", "k1"), app("2", "k2")]);
        let first = apps.by_id("1").unwrap();

        let same = apps.replace(vec![app("1", "k1"), app("2", "k2")]);
        assert!(same.is_empty());
        assert_eq!(apps.generation(), 0);

        let mut rotated = app("2", "k2");
        rotated.secret = "new".into();
        let changes = apps.replace(vec![app("1", "k1"), rotated, app("3", "k3")]);
        assert_eq!(
            changes,
            Changes {
                added: vec!["3".into()],
                removed: vec![],
                changed: vec!["2".into()],
            }
        );
        assert_eq!(apps.generation(), 1);
        assert!(
            Arc::ptr_eq(&first, &apps.by_id("1").unwrap()),
            "unchanged app kept"
        );
        assert_eq!(apps.by_key("k2").unwrap().secret, "new");
        assert_eq!(apps.ids(), ["1", "2", "3"]);

        let changes = apps.replace(vec![app("3", "k3")]);
        assert_eq!(changes.removed, ["1", "2"]);
        assert!(apps.by_key("k1").is_none());
        assert_eq!(
            changes.to_string(),
            "added none; removed 1, 2; changed none"
        );
    }
}
