//! `pusher:ping` → `pusher:pong` (protocol §3.2).

use crate::{frame, session::Session};

pub fn apply(session: &Session) {
    session.send(frame::pong());
}
