//! `poxide apps list|add|remove|set`: edits the apps of a database store, so nobody writes SQL
//! by hand. Running nodes see each change within their refresh interval.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};
use rand::Rng;
use serde_json::Value;

use super::store::{Row, Store};
use crate::config::{validate_apps, AppConfig, Config, Overrides};

#[derive(Args)]
pub struct AppsArgs {
    /// The apps database: sqlite:///path/apps.db or postgres://user:password@host/db
    /// [env: POXIDE_APPS_DATABASE_URL]
    #[arg(long)]
    database_url: Option<String>,
    /// A configuration file whose [apps_store] names the database
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: AppsCommand,
}

#[derive(Subcommand)]
enum AppsCommand {
    /// One line per app: id, key, enabled, and the settings that differ from the defaults
    List {
        /// Every app as a JSON object with all its settings (secrets included)
        #[arg(long)]
        json: bool,
    },
    /// Add an app; prints its id, key and secret (generated unless given)
    Add {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        /// Settings as NAME=VALUE, with the names of an [[apps]] entry (VALUE is JSON, or a
        /// plain string): max_connections=100 client_events=false
        settings: Vec<String>,
    },
    /// Remove an app: its open connections are closed with 4001
    Remove { id: String },
    /// Change an app: enabled=false (its connections close with 4003), secret=NEW,
    /// max_connections=null, webhooks='[{"url":"https://example.com/hook"}]'
    Set {
        id: String,
        settings: Vec<String>,
        /// Replace the secret with a generated one, and print it
        #[arg(long)]
        rotate_secret: bool,
    },
}

pub async fn run(args: AppsArgs) -> ExitCode {
    match execute(args).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("poxide apps: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn usage(message: impl std::fmt::Display) -> Failure {
    (2, message.to_string())
}

fn failed(e: impl std::fmt::Display) -> Failure {
    (1, e.to_string())
}

async fn execute(args: AppsArgs) -> Result<String, Failure> {
    let (env, _) = Overrides::from_env(|name| std::env::var(name).ok());
    let flags = Overrides {
        apps_database_url: args.database_url.clone(),
        ..Overrides::default()
    };
    let config = Config::load(args.config.as_deref(), &env, &flags).map_err(usage)?;
    let Some(store) = &config.apps_store else {
        return Err(usage(
            "no apps database: give --database-url, POXIDE_APPS_DATABASE_URL, or a --config with [apps_store] (apps in a TOML file are edited in the file; send the server SIGHUP to reload it)",
        ));
    };
    let store = Store::open(&store.url).await.map_err(failed)?;
    match args.command {
        AppsCommand::List { json } => list(&store, json).await,
        AppsCommand::Add {
            id,
            key,
            secret,
            settings,
        } => {
            let mut app = AppConfig {
                id: id
                    .unwrap_or_else(|| rand::rng().random_range(1_000_000..10_000_000).to_string()),
                key: key.unwrap_or_else(|| random_hex(20)),
                secret: secret.unwrap_or_else(|| random_hex(20)),
                ..AppConfig::default()
            };
            apply_settings(&mut app, &settings)?;
            store.insert(Row::from_app(&app)).await.map_err(failed)?;
            Ok(credentials(&app))
        }
        AppsCommand::Remove { id } => match store.remove(&id).await.map_err(failed)? {
            true => Ok(format!("removed {id}\n")),
            false => Err(failed(format!("no app with id {id:?}"))),
        },
        AppsCommand::Set {
            id,
            settings,
            rotate_secret,
        } => {
            let Some(row) = store.get(&id).await.map_err(failed)? else {
                return Err(failed(format!("no app with id {id:?}")));
            };
            let mut app = row.to_app().map_err(failed)?;
            apply_settings(&mut app, &settings)?;
            if rotate_secret {
                app.secret = random_hex(20);
            }
            if !store.update(Row::from_app(&app)).await.map_err(failed)? {
                return Err(failed(format!("no app with id {id:?}")));
            }
            Ok(if rotate_secret {
                credentials(&app)
            } else {
                format!("updated {id}\n")
            })
        }
    }
}

async fn list(store: &Store, json: bool) -> Result<String, Failure> {
    let rows = store.load().await.map_err(failed)?;
    if json {
        let apps: Vec<Value> = rows
            .iter()
            .map(|row| match row.to_app() {
                Ok(app) => serde_json::to_value(app).expect("serializes"),
                Err(why) => serde_json::json!({"id": row.id, "invalid": why}),
            })
            .collect();
        return Ok(format!("{}\n", Value::Array(apps)));
    }
    let mut out = String::new();
    for row in rows {
        let state = if row.enabled { "enabled" } else { "disabled" };
        let note = match row.to_app() {
            Ok(_) => String::new(),
            Err(why) => format!("  INVALID: {why}"),
        };
        out.push_str(&format!(
            "{}\t{}\t{state}\t{}{note}\n",
            row.id, row.key, row.settings
        ));
    }
    Ok(out)
}

fn credentials(app: &AppConfig) -> String {
    format!("id={}\nkey={}\nsecret={}\n", app.id, app.key, app.secret)
}

fn random_hex(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("a hex digit"))
        .collect()
}

/// Applies `NAME=VALUE` settings through the same deserializer as the TOML file, so a misspelt
/// name or a wrong type is refused with serde's own message.
fn apply_settings(app: &mut AppConfig, settings: &[String]) -> Result<(), Failure> {
    let mut value = serde_json::to_value(&*app).expect("serializes");
    for setting in settings {
        let Some((name, raw)) = setting.split_once('=') else {
            return Err(usage(format!("{setting:?} is not NAME=VALUE")));
        };
        if name == "id" {
            return Err(usage("an app's id cannot change: add a new app instead"));
        }
        // A string setting takes VALUE as it is, even when it looks like a number.
        let parsed = match (value.get(name), serde_json::from_str(raw)) {
            (Some(Value::String(_)), _) | (_, Err(_)) => Value::String(raw.into()),
            (_, Ok(v)) => v,
        };
        value[name] = parsed;
    }
    *app = serde_json::from_value(value).map_err(|e| usage(e.to_string()))?;
    validate_apps(std::slice::from_ref(app)).map_err(usage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_json_or_strings_and_checked_like_the_file() {
        let mut app = AppConfig::default();
        apply_settings(
            &mut app,
            &[
                "max_connections=5".into(),
                "enabled=false".into(),
                "secret=1234".into(),
                "allowed_origins=[\"https://a.example\"]".into(),
            ],
        )
        .unwrap();
        assert_eq!(app.max_connections, Some(5));
        assert!(!app.enabled);
        assert_eq!(app.secret, "1234", "a number-looking secret stays a string");
        assert_eq!(app.allowed_origins, ["https://a.example"]);
        let err = |s: &str| apply_settings(&mut AppConfig::default(), &[s.into()]).unwrap_err();
        assert!(err("max_conections=5")
            .1
            .contains("unknown field `max_conections`"));
        assert_eq!(
            err("payload_limit=0").1,
            "invalid value for apps[0].payload_limit: \"0\" (a positive integer)"
        );
        assert_eq!(err("id=9").0, 2);
        assert_eq!(err("nonsense").1, "\"nonsense\" is not NAME=VALUE");
    }
}
