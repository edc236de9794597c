//! Every error poxide reports to a peer, and the one place where each maps to Pusher's wire form:
//! a WebSocket close code, a `pusher:error` code and message, a `pusher:subscription_error`
//! payload, or an HTTP status with a plain-text body (as hosted Pusher answers).

use thiserror::Error;

/// Problems that end a WebSocket connection. Each carries the close code of protocol §8; the
/// message is used both as the close reason and in the `pusher:error` sent just before closing.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CloseError {
    #[error("Application does not exist")]
    UnknownApp,
    /// The app is in the store with `enabled = false` (or was just disabled).
    #[error("Application is disabled")]
    AppDisabled,
    #[error("Application is over connection quota")]
    OverConnectionQuota,
    #[error("Path not found")]
    PathNotFound,
    #[error("Unsupported protocol version")]
    UnsupportedProtocol,
    /// The per-connection outgoing queue filled up: the client reads too slowly.
    #[error("Over capacity: client is not reading fast enough")]
    OverCapacity,
    #[error("Server is shutting down, please reconnect")]
    ShuttingDown,
    #[error("Pong reply not received")]
    PongNotReceived,
    /// The app called `terminate_connections` for the signed-in user.
    #[error("Connection terminated by the application")]
    Terminated,
    /// Authorized connections: neither signed in nor subscribed to an authorized channel in time.
    #[error("Connection not authorized within timeout")]
    NotAuthorizedInTime,
    /// The node lost its Redis, so the connection may have missed events: reconnect and
    /// resubscribe (pusher-js does so at once on 42xx).
    #[error("Cluster state was lost, please reconnect")]
    ClusterLost,
    /// The node cannot reach its Redis: try again later (pusher-js backs off on 41xx).
    #[error("Cluster state unavailable, please retry later")]
    ClusterUnavailable,
    /// `POST /_poxide/reset` of the test double.
    #[error("Reset by the test harness, please reconnect")]
    Reset,
    /// The browser's `Origin` is not among the app's `allowed_origins`.
    #[error("Origin not allowed: {0}")]
    OriginNotAllowed(String),
}

impl CloseError {
    pub fn code(&self) -> u16 {
        match self {
            CloseError::UnknownApp => 4001,
            CloseError::AppDisabled => 4003,
            CloseError::OverConnectionQuota => 4004,
            CloseError::PathNotFound => 4005,
            CloseError::UnsupportedProtocol => 4007,
            CloseError::OverCapacity => 4100,
            CloseError::ShuttingDown | CloseError::ClusterLost | CloseError::Reset => 4200,
            CloseError::ClusterUnavailable => 4100,
            CloseError::PongNotReceived => 4201,
            // 40xx: pusher-js does not reconnect, which is the point of both.
            CloseError::Terminated
            | CloseError::NotAuthorizedInTime
            | CloseError::OriginNotAllowed(_) => 4009,
        }
    }
}

/// Problems with one frame a client sent. The connection stays open; the client gets a
/// `pusher:error` (and, for failed subscriptions, a `pusher:subscription_error`).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("Binary frames are not supported: send JSON as text frames")]
    BinaryFrame,
    #[error("Message too large: {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("Invalid JSON: {0}")]
    InvalidJson(String),
    #[error("Invalid message: expected a JSON object")]
    NotAnObject,
    #[error("Invalid message: missing \"event\" string")]
    MissingEvent,
    #[error("Invalid message: \"{field}\" must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("Unsupported event: {0}")]
    UnknownPusherEvent(String),
    #[error("Unsupported event: {0} (client events must start with \"client-\")")]
    NotAClientEvent(String),
    #[error("Missing parameter: {0}")]
    MissingParameter(&'static str),
    #[error("Invalid channel name {name:?}: {reason}")]
    InvalidChannelName { name: String, reason: NameError },
    #[error("Invalid event name: {0}")]
    InvalidEventName(NameError),
    #[error("Existing subscription to channel {0}")]
    ExistingSubscription(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("Invalid channel_data: {0}")]
    InvalidChannelData(String),
    #[error("Cannot subscribe to {channel}: presence channel is full ({limit} members)")]
    PresenceFull { channel: String, limit: usize },
    #[error("Cannot subscribe to {0}: channels starting with # are reserved")]
    ReservedChannel(String),
    #[error("To send client events, you must enable this feature in the Settings page of your dashboard.")]
    ClientEventsDisabled,
    #[error("Cannot broadcast client event (connection not subscribed to channel {0})")]
    ClientEventNotSubscribed(String),
    #[error("Cannot broadcast client event (client events are only allowed on private and presence channels, not {0})")]
    ClientEventPublicChannel(String),
    #[error(
        "Cannot broadcast client event (client events are not supported on encrypted channel {0})"
    )]
    ClientEventEncryptedChannel(String),
    #[error("Client event rejected: data exceeds the allowed maximum ({limit} bytes)")]
    ClientEventTooLarge { limit: usize },
    #[error("Client event rejected due to rate limit")]
    ClientEventRateLimited,
    #[error("Invalid user_data: {0}")]
    InvalidUserData(String),
    #[error("Already signed in as user {0}: a connection signs in once")]
    AlreadySignedIn(String),
    #[error("Watchlist limit exceeded: only the first {0} user ids are watched")]
    WatchlistTooLong(usize),
    #[error("Cannot subscribe to {channel}: only a connection signed in as user {user_id} may")]
    NotThatUser { channel: String, user_id: String },
    #[error(
        "Cannot subscribe to {channel}: a connection may subscribe to at most {limit} channels"
    )]
    TooManyChannels { channel: String, limit: usize },
    #[error("Subscription rejected due to rate limit: at most {0} subscribes and unsubscribes per second")]
    SubscriptionRateLimited(u32),
    /// The shared state did not answer in time; the connection is closed with 4200 after it.
    #[error("Cluster state unavailable, please reconnect")]
    Unavailable,
}

impl From<crate::hub::Unavailable> for FrameError {
    fn from(_: crate::hub::Unavailable) -> Self {
        FrameError::Unavailable
    }
}

impl FrameError {
    /// The `code` of the `pusher:error` payload. Hosted Pusher sends `null` for everything but the
    /// 43xx family, and pusher-js only reads codes from close frames, so we follow it.
    pub fn code(&self) -> Option<u16> {
        match self {
            FrameError::ClientEventRateLimited | FrameError::SubscriptionRateLimited(_) => {
                Some(4301)
            }
            FrameError::WatchlistTooLong(_) => Some(4302),
            _ => None,
        }
    }

    /// For a failed subscription: the `type` and `status` of the channel-scoped
    /// `pusher:subscription_error` that pusher-js and Laravel Echo surface to the app.
    pub fn subscription_error_kind(&self) -> Option<(&'static str, u16)> {
        match self {
            FrameError::Auth(_)
            | FrameError::ReservedChannel(_)
            | FrameError::NotThatUser { .. } => Some(("AuthError", 401)),
            FrameError::PresenceFull { .. } | FrameError::TooManyChannels { .. } => {
                Some(("LimitReached", 4100))
            }
            FrameError::SubscriptionRateLimited(_) => Some(("LimitReached", 4301)),
            FrameError::InvalidChannelData(_) | FrameError::MissingParameter(_) => {
                Some(("InvalidRequest", 400))
            }
            _ => None,
        }
    }
}

/// Why a channel or event name was refused (protocol §4.2).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {limit} characters (got {len})")]
    TooLong { len: usize, limit: usize },
    #[error("only A-Z a-z 0-9 _ - = @ , . ; are allowed")]
    BadCharacter,
}

/// A channel or user authentication token that does not verify (protocol §6).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Missing parameter: data.auth (required to subscribe to {0})")]
    Missing(String),
    #[error("Invalid auth format: expected \"<app_key>:<signature>\", got {0:?}")]
    Malformed(String),
    #[error("Invalid key in subscription auth data: {0:?}")]
    WrongKey(String),
    #[error(
        "Invalid signature: Expected HMAC SHA256 hex digest of {expected_input}, but got {got}"
    )]
    BadSignature { expected_input: String, got: String },
}

/// Problems with a REST API request. Bodies are plain text, as hosted Pusher sends them; the
/// server SDKs show that text to the developer.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("Unknown app id: {0}")]
    UnknownApp(String),
    #[error("Application is disabled: {0}")]
    AppDisabled(String),
    #[error("Missing parameter: {0}")]
    MissingAuthParam(&'static str),
    #[error("Unknown auth_key: {0}")]
    UnknownKey(String),
    #[error("Unsupported auth_version: {0} (expected 1.0)")]
    BadAuthVersion(String),
    #[error("Invalid auth_timestamp: {0}")]
    BadTimestamp(String),
    #[error("Timestamp expired: Given timestamp ({given}) not within 600s of server time ({now})")]
    TimestampExpired { given: String, now: String },
    #[error("Invalid body_md5: the MD5 of the request body is {expected}, but body_md5 was {got}")]
    BodyMd5Mismatch { expected: String, got: String },
    #[error("Missing parameter: body_md5 (required when the request has a body)")]
    BodyMd5Missing,
    #[error("Invalid signature: you should have sent HmacSHA256Hex({string_to_sign:?}, your_secret_key), but you sent \"{got}\"")]
    BadSignature { string_to_sign: String, got: String },
    #[error("Invalid JSON body: {0}")]
    InvalidBody(String),
    #[error("Missing parameter: {0}")]
    MissingField(&'static str),
    #[error("Invalid channel name {name:?}: {reason}")]
    InvalidChannelName { name: String, reason: NameError },
    #[error("Invalid event name: {0}")]
    InvalidEventName(NameError),
    #[error("Invalid socket_id: {0:?}")]
    InvalidSocketId(String),
    #[error("Too many channels: {0} given, at most 100 are allowed per event")]
    TooManyChannels(usize),
    #[error("Too many events in batch: {0} given, at most 10 are allowed")]
    BatchTooLarge(usize),
    #[error("Invalid info attribute {attribute:?}: {reason}")]
    BadInfo {
        attribute: String,
        reason: &'static str,
    },
    #[error("Channel {0} is not a presence channel")]
    NotPresence(String),
    #[error("Cannot trigger on {0}: channels starting with # are reserved")]
    ReservedChannel(String),
    #[error("The data content of this event exceeds the allowed maximum ({limit} bytes). See http://pusher.com/docs/server_api_guide/server_publishing_events for more info")]
    PayloadTooLarge { limit: usize },
    #[error("Request body too large: at most {0} bytes are accepted")]
    BodyTooLarge(usize),
    #[error("Request body not received within {0} ms")]
    BodyTimeout(u64),
    #[error("Cluster state unavailable: the node cannot reach its Redis in time, try again")]
    Unavailable,
    #[error("Too many requests: this app may make {0} REST requests per second")]
    RateLimited(u32),
    #[error("The console is turned off for this app")]
    ConsoleOff,
    #[error("Too many consoles open: at most {0} at once")]
    TooManyConsoles(usize),
    #[error(
        "The list of apps is shown only to a page opened on this machine (loopback, no proxy)"
    )]
    NotLoopback,
}

impl From<crate::hub::Unavailable> for ApiError {
    fn from(_: crate::hub::Unavailable) -> Self {
        ApiError::Unavailable
    }
}

impl ApiError {
    pub fn status(&self) -> u16 {
        use ApiError::*;
        match self {
            UnknownApp(_) => 404,
            MissingAuthParam(_)
            | UnknownKey(_)
            | BadAuthVersion(_)
            | BadTimestamp(_)
            | TimestampExpired { .. }
            | BodyMd5Mismatch { .. }
            | BodyMd5Missing
            | BadSignature { .. } => 401,
            PayloadTooLarge { .. } | BodyTooLarge(_) => 413,
            BodyTimeout(_) => 408,
            Unavailable | TooManyConsoles(_) => 503,
            RateLimited(_) => 429,
            ConsoleOff | NotLoopback | AppDisabled(_) => 403,
            InvalidBody(_)
            | MissingField(_)
            | InvalidChannelName { .. }
            | InvalidEventName(_)
            | InvalidSocketId(_)
            | TooManyChannels(_)
            | BatchTooLarge(_)
            | BadInfo { .. }
            | NotPresence(_)
            | ReservedChannel(_) => 400,
        }
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> poem::http::StatusCode {
        poem::http::StatusCode::from_u16(ApiError::status(self))
            .unwrap_or(poem::http::StatusCode::BAD_REQUEST)
    }

    /// Plain text as hosted Pusher answers, but a rate limit: JSON with `Retry-After`, as
    /// HTTP clients and proxies expect of a 429.
    fn as_response(&self) -> poem::Response {
        let response = poem::Response::builder().status(poem::error::ResponseError::status(self));
        match self {
            ApiError::RateLimited(_) => response
                .header(poem::http::header::RETRY_AFTER, "1")
                .content_type("application/json")
                .body(serde_json::json!({ "error": self.to_string() }).to_string()),
            _ => response.body(self.to_string()),
        }
    }
}
