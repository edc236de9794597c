//! What a change of membership means for everyone else, whichever node or adapter saw it: the
//! `member_added` / `member_removed` frames to the other members, the occupied / vacated /
//! member / cache-miss webhooks, the subscription count, and watchlist online / offline.
//!
//! The hub reports each transition to exactly one caller (in a cluster, to the node whose
//! Redis script made it), so whatever is done here happens once.

use std::sync::Arc;

use crate::{
    channel::ChannelKind,
    config::AppConfig,
    frame::{self, Member},
    happenings::{Change, Happening},
    hub::{HubEvent, HubResult, Joined, Left},
    state::ServerState,
    subscription_count,
    webhook::WebhookEvent,
};

/// After `socket_id` joined `channel` (its first frames are already queued).
pub async fn joined(
    state: &Arc<ServerState>,
    app: &Arc<AppConfig>,
    channel: &str,
    socket_id: &str,
    member: Option<Member>,
    joined: &Joined,
) -> HubResult<()> {
    let webhooks = &state.webhooks;
    let membership = |change: Change| {
        state.happenings.emit(|| Happening::Membership {
            app: app.id.clone(),
            channel: channel.to_string(),
            change,
        })
    };
    if joined.occupied {
        membership(Change::Occupied);
    }
    if joined.occupied_webhook {
        webhooks.emit(
            app,
            WebhookEvent::ChannelOccupied {
                channel: channel.to_string(),
            },
        );
    }
    if let (true, Some(member)) = (joined.member_added, member) {
        membership(Change::MemberAdded {
            user_id: member.user_id.clone(),
        });
        state
            .adapter
            .publish(
                &app.id,
                channel,
                frame::member_added(channel, &member),
                Some(socket_id),
                None,
            )
            .await?;
        if joined.member_added_webhook {
            webhooks.emit(
                app,
                WebhookEvent::MemberAdded {
                    channel: channel.to_string(),
                    user_id: member.user_id,
                },
            );
        }
    }
    if ChannelKind::of(channel).cache && joined.first_cache_miss {
        membership(Change::CacheMiss);
        webhooks.emit(
            app,
            WebhookEvent::CacheMiss {
                channel: channel.to_string(),
            },
        );
    }
    subscription_count::changed(state, app, channel).await;
    Ok(())
}

/// After a connection left `channel`, by unsubscribing, disconnecting or being swept with its
/// dead node. Nothing here can be refused, so a failure to tell the others is only logged.
pub async fn left(state: &Arc<ServerState>, app: &Arc<AppConfig>, channel: &str, left: Left) {
    let webhooks = &state.webhooks;
    // A hub that settles the grace period sends these webhooks itself once it has passed.
    let settled_by_hub = state.adapter.settles_grace();
    let membership = |change: Change| {
        state.happenings.emit(|| Happening::Membership {
            app: app.id.clone(),
            channel: channel.to_string(),
            change,
        })
    };
    if let Some(user_id) = left.member_removed {
        membership(Change::MemberRemoved {
            user_id: user_id.clone(),
        });
        let frame = frame::member_removed(channel, &user_id);
        if let Err(e) = state
            .adapter
            .publish(&app.id, channel, frame, None, None)
            .await
        {
            // Only when the cluster lost Redis, which is logged once as such.
            tracing::debug!(app = %app.id, channel, "member_removed not delivered: {e}");
        }
        if !settled_by_hub {
            webhooks.emit(
                app,
                WebhookEvent::MemberRemoved {
                    channel: channel.to_string(),
                    user_id,
                },
            );
        }
    }
    if left.vacated {
        membership(Change::Vacated);
    }
    if left.vacated && !settled_by_hub {
        webhooks.emit(
            app,
            WebhookEvent::ChannelVacated {
                channel: channel.to_string(),
            },
        );
    }
    subscription_count::changed(state, app, channel).await;
}

/// A user's first connection signed in (`online`) or its last one went (`!online`): the
/// connections watching the user hear it.
pub async fn presence_of_user(
    state: &ServerState,
    app: &AppConfig,
    user_id: &str,
    online: bool,
) -> HubResult<()> {
    if !app.watchlist_events {
        return Ok(());
    }
    let id = [user_id.to_string()];
    let frame = if online {
        frame::watchlist_events(&id, &[])
    } else {
        frame::watchlist_events(&[], &id)
    };
    state
        .adapter
        .publish_to_watchers(&app.id, user_id, frame)
        .await
}

/// Applies what the hub reported by itself until the hub stops.
pub async fn follow(state: Arc<ServerState>, mut events: tokio::sync::mpsc::Receiver<HubEvent>) {
    while let Some(event) = events.recv().await {
        let app = |id: &str| state.apps.by_id(id);
        match event {
            HubEvent::Webhook(id, event) => {
                if let Some(app) = app(&id) {
                    state.webhooks.emit_settled(&app, event);
                }
            }
            HubEvent::Left {
                app: id,
                channel,
                left,
            } => {
                if let Some(app) = app(&id) {
                    self::left(&state, &app, &channel, left).await;
                }
            }
            HubEvent::Offline { app: id, user_id } => {
                let Some(app) = app(&id) else { continue };
                if let Err(e) = presence_of_user(&state, &app, &user_id, false).await {
                    tracing::debug!(app = %app.id, user_id, "offline not delivered: {e}");
                }
            }
            HubEvent::Adopted {
                request,
                deadline_ms,
            } => state.webhooks.adopt(request, deadline_ms),
        }
    }
}
