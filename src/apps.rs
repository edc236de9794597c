//! The configured applications, looked up by key (WebSocket) or id (REST).

use std::{collections::HashMap, sync::Arc};

use crate::config::AppConfig;

#[derive(Debug, Default)]
pub struct Apps {
    by_id: HashMap<String, Arc<AppConfig>>,
    by_key: HashMap<String, Arc<AppConfig>>,
}

impl Apps {
    pub fn new(apps: &[AppConfig]) -> Self {
        let mut registry = Apps::default();
        for app in apps {
            let app = Arc::new(app.clone());
            registry.by_id.insert(app.id.clone(), app.clone());
            registry.by_key.insert(app.key.clone(), app);
        }
        registry
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<AppConfig>> {
        self.by_id.get(id)
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<AppConfig>> {
        self.by_key.get(key)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }
}
