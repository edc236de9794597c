//! Channel, event and socket-id names: what kind of channel a name denotes (protocol §4.1) and
//! which names are valid (§4.2).

use crate::error::NameError;

/// The kind of a channel, decided by its prefix alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelKind {
    pub access: Access,
    /// Cache channels replay their last event to new subscribers.
    pub cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Private,
    /// Private and end-to-end encrypted: the server relays ciphertext it cannot read.
    Encrypted,
    Presence,
    /// `#server-to-user-{id}` and any other `#` name: reserved for the server.
    Reserved,
}

pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

impl ChannelKind {
    /// Classifies by prefix, longest first so that `private-encrypted-cache-` is not taken for
    /// `private-`.
    pub fn of(name: &str) -> ChannelKind {
        const PREFIXES: [(&str, Access, bool); 7] = [
            ("private-encrypted-cache-", Access::Encrypted, true),
            ("private-encrypted-", Access::Encrypted, false),
            ("private-cache-", Access::Private, true),
            ("private-", Access::Private, false),
            ("presence-cache-", Access::Presence, true),
            ("presence-", Access::Presence, false),
            ("cache-", Access::Public, true),
        ];
        if name.starts_with('#') {
            return ChannelKind {
                access: Access::Reserved,
                cache: false,
            };
        }
        PREFIXES
            .iter()
            .find(|(prefix, _, _)| name.starts_with(prefix))
            .map(|&(_, access, cache)| ChannelKind { access, cache })
            .unwrap_or(ChannelKind {
                access: Access::Public,
                cache: false,
            })
    }

    /// Whether subscribing needs a signature from the app's auth endpoint.
    pub fn needs_auth(self) -> bool {
        matches!(
            self.access,
            Access::Private | Access::Encrypted | Access::Presence
        )
    }

    pub fn is_presence(self) -> bool {
        self.access == Access::Presence
    }
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

/// Checks a channel name's characters and length. A leading `#` is allowed here; whether the
/// caller may use a `#` channel is a separate question.
pub fn validate_channel_name(name: &str, max_len: usize) -> Result<(), NameError> {
    let body = name.strip_prefix('#').unwrap_or(name);
    if body.is_empty() {
        return Err(NameError::Empty);
    }
    check_length(name, max_len)?;
    if !body.chars().all(allowed_char) {
        return Err(NameError::BadCharacter);
    }
    Ok(())
}

/// Event names: non-empty and within the length limit. The charset is not enforced: no Pusher
/// server does, and SDKs send names such as `App\Events\OrderShipped` (Laravel).
pub fn validate_event_name(name: &str, max_len: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    check_length(name, max_len)
}

/// Limits count characters, as hosted Pusher documents them.
fn check_length(name: &str, max_len: usize) -> Result<(), NameError> {
    let len = name.chars().count();
    if len > max_len {
        return Err(NameError::TooLong {
            len,
            limit: max_len,
        });
    }
    Ok(())
}

/// `^\d+\.\d+$`, the form every server SDK checks.
pub fn is_valid_socket_id(id: &str) -> bool {
    match id.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies_every_prefix() {
        let cases = [
            ("private-encrypted-cache-x", Access::Encrypted, true),
            ("private-encrypted-x", Access::Encrypted, false),
            ("private-cache-x", Access::Private, true),
            ("private-x", Access::Private, false),
            ("presence-cache-x", Access::Presence, true),
            ("presence-x", Access::Presence, false),
            ("cache-x", Access::Public, true),
            ("#server-to-user-1", Access::Reserved, false),
            ("x", Access::Public, false),
            ("privatex", Access::Public, false),
            ("presencecache-x", Access::Public, false),
        ];
        for (name, access, cache) in cases {
            assert_eq!(
                ChannelKind::of(name),
                ChannelKind { access, cache },
                "{name}"
            );
        }
    }

    #[test]
    fn channel_name_limits() {
        assert_eq!(validate_channel_name(&"a".repeat(164), 164), Ok(()));
        assert_eq!(
            validate_channel_name(&"a".repeat(165), 164),
            Err(NameError::TooLong {
                len: 165,
                limit: 164
            })
        );
        assert_eq!(validate_channel_name("", 164), Err(NameError::Empty));
        assert_eq!(validate_channel_name("#", 164), Err(NameError::Empty));
        assert_eq!(
            validate_channel_name("a b", 164),
            Err(NameError::BadCharacter)
        );
        assert_eq!(
            validate_channel_name("a#b", 164),
            Err(NameError::BadCharacter)
        );
        assert_eq!(validate_channel_name("Az09_-=@,.;", 164), Ok(()));
        assert_eq!(validate_channel_name("#server-to-user-1", 164), Ok(()));
    }

    #[test]
    fn socket_ids() {
        assert!(is_valid_socket_id("123.456"));
        for bad in ["123", ".1", "1.", "1.2.3", "a.1", "1.-2", "", " 1.2"] {
            assert!(!is_valid_socket_id(bad), "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn names_from_the_allowed_set_within_the_limit_pass(name in "[A-Za-z0-9_\\-=@,.;]{1,164}") {
            prop_assert_eq!(validate_channel_name(&name, 164), Ok(()));
        }

        #[test]
        fn any_name_with_a_disallowed_character_fails(
            prefix in "[a-z]{0,10}",
            bad in "[^A-Za-z0-9_\\-=@,.;#]",
            suffix in "[a-z]{0,10}",
        ) {
            let name = format!("{prefix}{bad}{suffix}");
            prop_assert!(validate_channel_name(&name, 164).is_err());
        }

        #[test]
        fn validation_never_panics_and_agrees_with_its_definition(name in ".{0,200}") {
            let ok = validate_channel_name(&name, 164).is_ok();
            let body = name.strip_prefix('#').unwrap_or(&name);
            let expected = !body.is_empty()
                && name.chars().count() <= 164
                && body.chars().all(allowed_char);
            prop_assert_eq!(ok, expected);
        }

        #[test]
        fn socket_id_shape(a in "[0-9]{1,10}", b in "[0-9]{1,10}") {
            let id = format!("{}.{}", a, b);
            prop_assert!(is_valid_socket_id(&id));
        }
    }
}
