//! `/_poxide/*`: thin handlers over the records. No signature: this API exists for test
//! machines, and is not mounted unless inspection is on.

use std::{collections::HashMap, sync::Arc, time::Duration};

use poem::{
    handler,
    http::StatusCode,
    web::{Data, Json, Path, Query},
    Body, IntoResponse, Response, Route,
};
use serde_json::{json, Value};

use super::records::{Filter, Inspector};
use crate::{error::ApiError, http, state::ServerState};

const DEFAULT_WAIT: Duration = Duration::from_millis(5000);
const LONGEST_WAIT: Duration = Duration::from_millis(30_000);

pub fn routes() -> Route {
    Route::new()
        .at("/events", poem::get(events))
        .at("/events/wait", poem::get(wait_event))
        .at("/webhooks", poem::get(webhooks))
        .at("/webhooks/wait", poem::get(wait_webhook))
        .at("/connections", poem::get(connections))
        .at("/channels/wait", poem::get(wait_channel))
        .at("/reset", poem::post(reset))
        .at("/apps/:app_id/events", poem::post(publish))
        .at("/apps/:app_id/batch_events", poem::post(publish_batch))
}

type Params = Query<HashMap<String, String>>;

fn inspector(state: &ServerState) -> &Arc<Inspector> {
    state
        .inspector
        .as_ref()
        .expect("mounted only with inspection on")
}

/// Why an inspection request got no answer: a bad parameter (400) or a wait that ran out
/// (408), each with a JSON `{"error": …}` body.
#[derive(Debug, thiserror::Error)]
enum InspectError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TimedOut(String),
}

impl poem::error::ResponseError for InspectError {
    fn status(&self) -> StatusCode {
        match self {
            InspectError::BadRequest(_) => StatusCode::BAD_REQUEST,
            InspectError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn as_response(&self) -> Response {
        let body = Json(json!({ "error": self.to_string() }));
        (self.status(), body).into_response()
    }
}

type Answer = Result<Json<Value>, InspectError>;

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, InspectError> {
    params
        .get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                InspectError::BadRequest(format!(
                    "{name} must be a non-negative integer, got {v:?}"
                ))
            })
        })
        .transpose()
}

fn filter(params: &HashMap<String, String>) -> Result<Filter, InspectError> {
    Ok(Filter {
        app_id: params.get("app_id").cloned(),
        channel: params.get("channel").cloned(),
        event: params.get("event").cloned(),
        name: params.get("name").cloned(),
        source: params.get("source").cloned(),
        after: number(params, "after")?,
    })
}

fn timeout(params: &HashMap<String, String>) -> Result<Duration, InspectError> {
    Ok(number(params, "timeout_ms")?
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(LONGEST_WAIT))
}

/// Waits as [`Inspector::wait`]; a wait that runs out is a 408.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    inspector: &Inspector,
    timeout: Duration,
    what: &str,
    found: impl FnMut() -> F,
) -> Result<T, InspectError> {
    inspector.wait(timeout, found).await.ok_or_else(|| {
        InspectError::TimedOut(format!("no {what} within {} ms", timeout.as_millis()))
    })
}

#[handler]
fn events(Data(state): Data<&Arc<ServerState>>, Query(params): Params) -> Answer {
    let f = filter(&params)?;
    Ok(Json(json!({ "events": inspector(state).events(&f) })))
}

#[handler]
async fn wait_event(Data(state): Data<&Arc<ServerState>>, Query(params): Params) -> Answer {
    let (f, timeout) = (filter(&params)?, timeout(&params)?);
    let inspector = inspector(state);
    let f = &f;
    let found = || async move { inspector.events(f).into_iter().next() };
    let event = wait_for(inspector, timeout, "matching event", found).await?;
    Ok(Json(json!({ "event": event })))
}

#[handler]
fn webhooks(Data(state): Data<&Arc<ServerState>>, Query(params): Params) -> Answer {
    let f = filter(&params)?;
    Ok(Json(json!({ "webhooks": inspector(state).webhooks(&f) })))
}

#[handler]
async fn wait_webhook(Data(state): Data<&Arc<ServerState>>, Query(params): Params) -> Answer {
    let (f, timeout) = (filter(&params)?, timeout(&params)?);
    let inspector = inspector(state);
    let f = &f;
    let found = || async move { inspector.webhooks(f).into_iter().next() };
    let webhook = wait_for(inspector, timeout, "matching webhook", found).await?;
    Ok(Json(json!({ "webhook": webhook })))
}

#[handler]
fn connections(Data(state): Data<&Arc<ServerState>>) -> Json<Value> {
    Json(json!({ "connections": inspector(state).connections() }))
}

/// 200 once `channel` of `app_id` has at least `subscribers` subscriptions: the end of
/// "sleep before trigger".
#[handler]
async fn wait_channel(Data(state): Data<&Arc<ServerState>>, Query(params): Params) -> Answer {
    let (Some(app_id), Some(channel)) = (params.get("app_id"), params.get("channel")) else {
        return Err(InspectError::BadRequest(
            "app_id and channel are required".into(),
        ));
    };
    let wanted = number(&params, "subscribers")?.unwrap_or(1) as usize;
    let timeout = timeout(&params)?;
    let found = || async move {
        let stats = state.adapter.channel_stats(app_id, channel).await.ok()?;
        (stats.subscription_count >= wanted).then_some(stats.subscription_count)
    };
    let what = format!("{wanted} subscribers on {channel}");
    let count = wait_for(inspector(state), timeout, &what, found).await?;
    Ok(Json(
        json!({ "channel": channel, "subscription_count": count }),
    ))
}

#[handler]
async fn reset(Data(state): Data<&Arc<ServerState>>) -> Json<Value> {
    super::reset(state).await;
    Json(json!({}))
}

async fn unsigned_body(
    state: &ServerState,
    app_id: &str,
    body: Body,
) -> Result<(Arc<crate::AppConfig>, Vec<u8>), ApiError> {
    let app = state
        .apps
        .by_id(app_id)
        .ok_or_else(|| ApiError::UnknownApp(app_id.to_string()))?;
    let body = http::auth::read_body(body, state.config.http_body_timeout).await?;
    Ok((app, body))
}

/// The REST publish body without a signature, for `curl` in a test script.
#[handler]
async fn publish(
    Data(state): Data<&Arc<ServerState>>,
    Path(app_id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (app, body) = unsigned_body(state, &app_id, body).await?;
    http::events::trigger(state, &app, &body).await.map(Json)
}

#[handler]
async fn publish_batch(
    Data(state): Data<&Arc<ServerState>>,
    Path(app_id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (app, body) = unsigned_body(state, &app_id, body).await?;
    http::events::batch(state, &app, &body).await.map(Json)
}
