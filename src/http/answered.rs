//! Middleware of the REST routes with metrics on: reports each API call's endpoint, status and
//! time as it is answered.

use std::{sync::Arc, time::Instant};

use crate::{happenings::Happening, state::ServerState};

/// The API endpoint a path names, with its app id; `None` outside `/apps/`.
pub fn endpoint(path: &str) -> Option<(&str, &'static str)> {
    let rest = path.strip_prefix("/apps/")?;
    let (app, rest) = rest.split_once('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let name = match parts.as_slice() {
        ["events"] => "events",
        ["batch_events"] => "batch_events",
        ["channels"] => "channels",
        ["channels", _] => "channel",
        ["channels", _, "users"] => "users",
        ["users", _, "terminate_connections"] => "terminate_connections",
        _ => return None,
    };
    Some((app, name))
}

pub async fn observe<E: poem::Endpoint>(
    endpoint: Arc<E>,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    let state = req.data::<Arc<ServerState>>().cloned();
    let called = self::endpoint(req.uri().path()).map(|(app, name)| (app.to_string(), name));
    let started = Instant::now();
    let response = endpoint.get_response(req).await;
    if let (Some(state), Some((app, name))) = (state, called) {
        // A stranger's app id is not a label: labels must not grow with what clients send.
        let app = if state.apps.by_id(&app).is_some() {
            app
        } else {
            "unknown".to_string()
        };
        state.happenings.emit(|| Happening::ApiAnswered {
            app,
            endpoint: name,
            status: response.status().as_u16(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn paths_name_their_endpoint() {
        assert_eq!(endpoint("/apps/1/events"), Some(("1", "events")));
        assert_eq!(
            endpoint("/apps/1/batch_events"),
            Some(("1", "batch_events"))
        );
        assert_eq!(endpoint("/apps/1/channels"), Some(("1", "channels")));
        assert_eq!(endpoint("/apps/1/channels/a"), Some(("1", "channel")));
        assert_eq!(endpoint("/apps/1/channels/a/users"), Some(("1", "users")));
        assert_eq!(
            endpoint("/apps/1/users/u/terminate_connections"),
            Some(("1", "terminate_connections"))
        );
        assert_eq!(endpoint("/apps/1/nothing"), None);
        assert_eq!(endpoint("/ping"), None);
    }
}
