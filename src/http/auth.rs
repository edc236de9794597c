//! REST request authentication (protocol §12.1): app id, key, version, timestamp window,
//! `body_md5` over the raw bytes and the HMAC signature over every query parameter.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use poem::{FromRequest, Request, RequestBody};

use crate::{
    apps::Apps, config::AppConfig, error::ApiError, happenings::Happening, metrics::Limit,
    signature, state::ServerState,
};

/// Requests larger than this are refused before they are read whole.
const MAX_BODY_BYTES: usize = 1 << 20;

/// A REST request whose signature checked out: extracting one authenticates the request, so
/// a handler that takes it cannot forget to.
pub struct Signed {
    pub app: Arc<AppConfig>,
    pub params: Params,
    pub body: Vec<u8>,
}

impl<'a> FromRequest<'a> for Signed {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let state = req
            .data::<Arc<ServerState>>()
            .expect("routes carry the server state");
        let app_id = req.raw_path_param("app_id").unwrap_or_default();
        let app_id = percent_encoding::percent_decode_str(app_id).decode_utf8_lossy();
        let params = query_params(req);
        // The query carries everything but the body's digest, so an unsigned request is
        // refused before a byte of its body is read.
        let app = authenticate(state, &app_id, req, &params).inspect_err(|e| {
            let from = req.remote_addr();
            crate::log_limit::signature_failed(
                &app_id,
                &from
                    .as_socket_addr()
                    .map_or(from.to_string(), |a| a.to_string()),
                &format_args!("{} {}: {e}", req.method(), req.uri().path()),
            )
        })?;
        // Counted once the request is the app's own: strangers cannot spend its budget.
        if let Err(refused) = state.rest_limits.admit(&app) {
            state.happenings.emit(|| Happening::RateLimited {
                app: app.id.clone(),
                limit: Limit::Rest,
            });
            return Err(refused.into());
        }
        let declared = req
            .header(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ApiError::BodyTooLarge(MAX_BODY_BYTES).into());
        }
        let body = read_body(body.take()?, state.config.http_body_timeout).await?;
        check_body_md5(&params, &body)?;
        Ok(Signed { app, params, body })
    }
}

pub async fn read_body(
    body: poem::Body,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, ApiError> {
    let read = tokio::time::timeout(timeout, body.into_bytes_limit(MAX_BODY_BYTES));
    let bytes = read
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout.as_millis() as u64))?
        .map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => ApiError::BodyTooLarge(MAX_BODY_BYTES),
            other => ApiError::InvalidBody(other.to_string()),
        })?;
    Ok(bytes.to_vec())
}

/// A request with a body must carry its MD5 in the (signed) query.
pub fn check_body_md5(params: &Params, body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    let expected = signature::body_md5(body);
    match param(params, "body_md5") {
        None => Err(ApiError::BodyMd5Missing),
        Some(got) if !got.eq_ignore_ascii_case(&expected) => Err(ApiError::BodyMd5Mismatch {
            expected,
            got: got.to_string(),
        }),
        Some(_) => Ok(()),
    }
}

/// How far `auth_timestamp` may be from the server's clock.
const TIMESTAMP_WINDOW_SECS: i64 = 600;

/// The decoded query parameters of a request, in order.
pub type Params = Vec<(String, String)>;

pub fn query_params(req: &Request) -> Params {
    parse_query(req.uri().query())
}

pub fn parse_query(query: Option<&str>) -> Params {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Finds the app and checks the request's signature; returns the app for the handler.
pub fn authenticate(
    state: &ServerState,
    app_id: &str,
    req: &Request,
    params: &Params,
) -> Result<Arc<AppConfig>, ApiError> {
    verify_query(
        &state.apps,
        app_id,
        req.method().as_str(),
        req.uri().path(),
        params,
        unix_now(),
    )
}

/// The signature rules over a request's parts, at time `now` (Unix seconds).
pub fn verify_query(
    apps: &Apps,
    app_id: &str,
    method: &str,
    raw_path: &str,
    params: &Params,
    now: i64,
) -> Result<Arc<AppConfig>, ApiError> {
    let app = apps
        .by_id(app_id)
        .ok_or_else(|| ApiError::UnknownApp(app_id.to_string()))?;
    let required = |name: &'static str| param(params, name).ok_or(ApiError::MissingAuthParam(name));
    let key = required("auth_key")?;
    let timestamp = required("auth_timestamp")?;
    let version = required("auth_version")?;
    let given_signature = required("auth_signature")?;

    if key != app.key {
        return Err(ApiError::UnknownKey(key.to_string()));
    }
    if version != "1.0" {
        return Err(ApiError::BadAuthVersion(version.to_string()));
    }
    let given: i64 = timestamp
        .parse()
        .map_err(|_| ApiError::BadTimestamp(timestamp.to_string()))?;
    // Checked: a timestamp near i64::MIN or MAX must not wrap into the window.
    let within = now
        .checked_sub(given)
        .and_then(i64::checked_abs)
        .is_some_and(|d| d <= TIMESTAMP_WINDOW_SECS);
    if !within {
        return Err(ApiError::TimestampExpired {
            given: iso8601(given),
            now: iso8601(now),
        });
    }
    let pairs = || params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let string_to_sign = signature::rest_string_to_sign(method, raw_path, pairs());
    let mut signed = signature::verify(&app.secret, &string_to_sign, given_signature);
    // SDKs differ in whether they sign the path before or after percent-encoding channel names.
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    if !signed && decoded != raw_path {
        let alternative = signature::rest_string_to_sign(method, &decoded, pairs());
        signed = signature::verify(&app.secret, &alternative, given_signature);
    }
    // Said only to whoever holds the secret.
    if signed && !app.enabled {
        return Err(ApiError::AppDisabled(app.id.clone()));
    }
    if signed {
        return Ok(app);
    }
    Err(ApiError::BadSignature {
        string_to_sign,
        got: given_signature.to_string(),
    })
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as hosted Pusher prints timestamps in its 401 message.
pub fn iso8601(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(timestamp: &str) -> Params {
        let mut params: Params = vec![
            ("auth_key".into(), "app_key".into()),
            ("auth_timestamp".into(), timestamp.into()),
            ("auth_version".into(), "1.0".into()),
        ];
        let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let string_to_sign = signature::rest_string_to_sign("GET", "/apps/app_id/channels", pairs);
        params.push((
            "auth_signature".into(),
            signature::sign("secret", &string_to_sign),
        ));
        params
    }

    #[test]
    fn timestamps_far_out_of_range_are_expired_not_wrapped() {
        let apps = Apps::new(&[AppConfig::default()]);
        let now = 1_700_000_000;
        let check = |ts: &str| {
            verify_query(
                &apps,
                "app_id",
                "GET",
                "/apps/app_id/channels",
                &signed(ts),
                now,
            )
        };
        assert!(check("1700000600").is_ok());
        assert!(check("1699999400").is_ok());
        for ts in [
            "1700000601",
            "1699999399",
            &i64::MIN.to_string(),
            &(i64::MIN + now).to_string(),
            &i64::MAX.to_string(),
        ] {
            assert!(
                matches!(check(ts), Err(ApiError::TimestampExpired { .. })),
                "{ts}: {:?}",
                check(ts)
            );
        }
    }

    #[test]
    fn formats_timestamps_like_hosted_pusher() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_380_444_393), "2013-09-29T08:46:33Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59Z");
    }
}
