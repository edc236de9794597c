//! The database schema, as numbered migrations for each engine, and how a row maps to an
//! [`AppConfig`]: the credentials and `enabled` are columns; every other setting of an
//! `[[apps]]` entry that differs from its default is a key of the `settings` JSON object, with
//! the same name and meaning as in the TOML file.

use serde_json::{Map, Value};

use crate::config::{validate_apps, AppConfig};

/// One migration: its number and the statements that take the schema from the previous one.
pub struct Migration {
    pub version: i64,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Applied in order, each once, recorded in `poxide_schema_migrations`. Never edit one that has
/// shipped: add the next.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sqlite: "
        CREATE TABLE poxide_apps (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            secret TEXT NOT NULL,
            enabled BOOLEAN NOT NULL DEFAULT 1,
            settings TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE poxide_apps_revision (revision INTEGER NOT NULL);
        INSERT INTO poxide_apps_revision VALUES (0);
        CREATE TRIGGER poxide_apps_inserted AFTER INSERT ON poxide_apps
            BEGIN UPDATE poxide_apps_revision SET revision = revision + 1; END;
        CREATE TRIGGER poxide_apps_updated AFTER UPDATE ON poxide_apps
            BEGIN UPDATE poxide_apps_revision SET revision = revision + 1; END;
        CREATE TRIGGER poxide_apps_deleted AFTER DELETE ON poxide_apps
            BEGIN UPDATE poxide_apps_revision SET revision = revision + 1; END;
    ",
    postgres: "
        CREATE TABLE poxide_apps (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            secret TEXT NOT NULL,
            enabled BOOLEAN NOT NULL DEFAULT TRUE,
            settings JSONB NOT NULL DEFAULT '{}'
        );
        CREATE TABLE poxide_apps_revision (revision BIGINT NOT NULL);
        INSERT INTO poxide_apps_revision VALUES (0);
        CREATE FUNCTION poxide_apps_bump() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN UPDATE poxide_apps_revision SET revision = revision + 1; RETURN NULL; END
        $$;
        CREATE TRIGGER poxide_apps_changed
            AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON poxide_apps
            FOR EACH STATEMENT EXECUTE FUNCTION poxide_apps_bump();
    ",
}];

/// The latest schema version this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// An app as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: bool,
    /// A JSON object.
    pub settings: String,
}

const COLUMNS: [&str; 4] = ["id", "key", "secret", "enabled"];

impl Row {
    pub fn from_app(app: &AppConfig) -> Row {
        let defaults = serde_json::to_value(AppConfig::default()).expect("serializes");
        let mut settings = Map::new();
        if let (Value::Object(all), Value::Object(defaults)) =
            (serde_json::to_value(app).expect("serializes"), defaults)
        {
            for (name, value) in all {
                if !COLUMNS.contains(&name.as_str()) && defaults.get(&name) != Some(&value) {
                    settings.insert(name, value);
                }
            }
        }
        Row {
            id: app.id.clone(),
            key: app.key.clone(),
            secret: app.secret.clone(),
            enabled: app.enabled,
            settings: Value::Object(settings).to_string(),
        }
    }

    /// The app, checked as an `[[apps]]` entry would be; why not, in one line.
    pub fn to_app(&self) -> Result<AppConfig, String> {
        let mut settings = match serde_json::from_str::<Value>(&self.settings) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("settings is not a JSON object".into()),
            Err(e) => return Err(format!("settings is not JSON: {e}")),
        };
        for name in COLUMNS {
            if settings.contains_key(name) {
                return Err(format!("settings has {name:?}, which is a column"));
            }
        }
        settings.insert("id".into(), self.id.clone().into());
        settings.insert("key".into(), self.key.clone().into());
        settings.insert("secret".into(), self.secret.clone().into());
        settings.insert("enabled".into(), self.enabled.into());
        let app: AppConfig = serde_json::from_value(Value::Object(settings))
            .map_err(|e| format!("settings: {e}"))?;
        validate_apps(std::slice::from_ref(&app)).map_err(|e| e.to_string())?;
        Ok(app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookTarget;

    #[test]
    fn a_row_holds_only_what_differs_from_the_defaults_and_maps_back() {
        let mut app = AppConfig {
            id: "42".into(),
            key: "k".into(),
            secret: "s".into(),
            enabled: false,
            max_connections: Some(5),
            ..AppConfig::default()
        };
        app.webhooks
            .push(WebhookTarget::new("https://example.com/hook"));
        let row = Row::from_app(&app);
        assert_eq!(
            row.settings,
            r#"{"max_connections":5,"webhooks":[{"url":"https://example.com/hook","event_types":null}]}"#
        );
        assert!(!row.enabled);
        assert_eq!(row.to_app().unwrap(), app);
    }

    #[test]
    fn a_bad_row_says_why() {
        let row = |settings: &str| Row {
            id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
            enabled: true,
            settings: settings.into(),
        };
        assert_eq!(
            row("[]").to_app().unwrap_err(),
            "settings is not a JSON object"
        );
        assert!(row("{")
            .to_app()
            .unwrap_err()
            .starts_with("settings is not JSON"));
        assert_eq!(
            row(r#"{"secret":"x"}"#).to_app().unwrap_err(),
            "settings has \"secret\", which is a column"
        );
        assert!(row(r#"{"max_conections":1}"#)
            .to_app()
            .unwrap_err()
            .contains("unknown field `max_conections`"));
        assert_eq!(
            row(r#"{"payload_limit":0}"#).to_app().unwrap_err(),
            "invalid value for apps[0].payload_limit: \"0\" (a positive integer)"
        );
    }
}
