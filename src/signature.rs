//! HMAC-SHA256 signatures (protocol §6 and §12.1): channel authorization, user sign-in, REST
//! request signing and webhook bodies. Verification is constant-time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::error::AuthError;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign(secret: &str, message: &str) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

/// Lowercase hex HMAC-SHA256 of raw bytes, e.g. a webhook body.
pub fn sign_bytes(secret: &str, message: &[u8]) -> String {
    hex::encode(mac_bytes(secret, message).finalize().into_bytes())
}

fn mac(secret: &str, message: &str) -> HmacSha256 {
    mac_bytes(secret, message.as_bytes())
}

fn mac_bytes(secret: &str, message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(message);
    mac
}

/// Whether `signature_hex` is the HMAC of `message`. Compares the decoded bytes in constant time;
/// uppercase hex is accepted as the same digest.
pub fn verify(secret: &str, message: &str, signature_hex: &str) -> bool {
    match hex::decode(signature_hex) {
        Ok(bytes) => mac(secret, message).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The string signed for a channel subscription. `channel_data` is included whenever the client
/// sent it, on private channels too, as pusher-http-node signs it (§6.1).
pub fn channel_string_to_sign(
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// `<app_key>:<signature>` as an auth endpoint returns it.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let string = channel_string_to_sign(socket_id, channel, channel_data);
    format!("{key}:{}", sign(secret, &string))
}

/// The string signed for `pusher:signin` (§6.2).
pub fn user_string_to_sign(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

pub fn user_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    format!(
        "{key}:{}",
        sign(secret, &user_string_to_sign(socket_id, user_data))
    )
}

/// Checks an `auth` token of the form `<app_key>:<hex signature>` against `string_to_sign`.
pub fn verify_auth_token(
    key: &str,
    secret: &str,
    token: &str,
    string_to_sign: &str,
) -> Result<(), AuthError> {
    let (given_key, signature) = token
        .split_once(':')
        .ok_or_else(|| AuthError::Malformed(token.to_string()))?;
    if given_key != key {
        return Err(AuthError::WrongKey(given_key.to_string()));
    }
    if verify(secret, string_to_sign, signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature {
            expected_input: string_to_sign.to_string(),
            got: signature.to_string(),
        })
    }
}

/// Lowercase hex MD5 of a request body, as `body_md5` carries it.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The REST string to sign: method, path and the sorted `key=value` query without
/// `auth_signature`, keys lowercased, values not escaped (§12.1).
pub fn rest_string_to_sign<'a>(
    method: &str,
    path: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .into_iter()
        .filter(|(k, _)| *k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query)
}

/// Query parameters for a signed REST request: the caller's own parameters plus `auth_key`,
/// `auth_timestamp`, `auth_version`, `body_md5` (when there is a body) and `auth_signature`.
pub fn sign_rest_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    timestamp: u64,
    body: &[u8],
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = extra.to_vec();
    params.push(("auth_key".into(), key.into()));
    params.push(("auth_timestamp".into(), timestamp.to_string()));
    params.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        params.push(("body_md5".into(), body_md5(body)));
    }
    let string = rest_string_to_sign(
        method,
        path,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    params.push(("auth_signature".into(), sign(secret, &string)));
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "7ad3773142a6692b25b8";
    const KEY: &str = "278d425bdf160c739803";

    #[test]
    fn protocol_reference_vectors() {
        let cases = [
            ("1234.1234:private-foobar", "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"),
            ("1234.1234::user::{\"id\":\"12345\"}", "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"),
            ("1234.1234:presence-foobar:{\"user_id\":10,\"user_info\":{\"name\":\"Mr. Pusher\"}}", "afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"),
            ("1234.1234:presence-foobar:{\"user_id\":10,\"user_info\":{\"name\":\"Mr. Channels\"}}", "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"),
            ("1234.1234:private-foobar:{\"user_id\":\"1\"}", "dfaa2efdf7f1d9341eda3dd4402578bade68221dd3869a5ec8cd9bd633a81a84"),
        ];
        for (input, expected) in cases {
            assert_eq!(sign(SECRET, input), expected, "{input}");
        }
        assert_eq!(
            user_auth(KEY, SECRET, "1234.1234", "{\"id\":\"12345\"}"),
            format!("{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba")
        );
    }

    #[test]
    fn rest_reference_vector() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
        let params =
            sign_rest_request(KEY, SECRET, "POST", "/apps/3/events", 1353088179, body, &[]);
        let signature = &params
            .iter()
            .find(|(k, _)| k == "auth_signature")
            .unwrap()
            .1;
        assert_eq!(
            signature,
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        assert_eq!(
            rest_string_to_sign(
                "post",
                "/apps/3/events",
                params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
            ),
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
    }

    #[test]
    fn webhook_reference_vector() {
        let body = br#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
        assert_eq!(
            sign_bytes(SECRET, body),
            "709fdb84c03664445f7698120b0edf0acc1ab1c8c6e93a0368c61841d6b998aa"
        );
    }

    #[test]
    fn auth_token_errors_are_specific() {
        let s = channel_string_to_sign("1.2", "private-a", None);
        assert_eq!(
            verify_auth_token(KEY, SECRET, "nocolon", &s),
            Err(AuthError::Malformed("nocolon".into()))
        );
        assert_eq!(
            verify_auth_token(KEY, SECRET, "other:abc", &s),
            Err(AuthError::WrongKey("other".into()))
        );
        assert_eq!(
            verify_auth_token(KEY, SECRET, &format!("{KEY}:zz"), &s),
            Err(AuthError::BadSignature {
                expected_input: "1.2:private-a".into(),
                got: "zz".into()
            })
        );
        let good = channel_auth(KEY, SECRET, "1.2", "private-a", None);
        assert_eq!(verify_auth_token(KEY, SECRET, &good, &s), Ok(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn sign_then_verify_round_trips(secret in ".{1,40}", message in ".{0,200}") {
            let sig = sign(&secret, &message);
            prop_assert_eq!(sig.len(), 64);
            prop_assert!(verify(&secret, &message, &sig));
        }

        #[test]
        fn one_flipped_byte_fails(secret in ".{1,40}", message in ".{0,200}", index in 0usize..64, flip in 1u8..16) {
            let sig = sign(&secret, &message);
            let mut bytes = hex::decode(&sig).unwrap();
            let i = index % bytes.len();
            bytes[i] ^= flip;
            prop_assert!(!verify(&secret, &message, &hex::encode(bytes)));
        }

        #[test]
        fn another_message_or_secret_fails(secret in "[a-z]{1,20}", message in "[a-z]{0,50}", extra in "[a-z]{1,5}") {
            let sig = sign(&secret, &message);
            let other_message = format!("{}{}", message, extra);
            let other_secret = format!("{}{}", secret, extra);
            prop_assert!(!verify(&secret, &other_message, &sig));
            prop_assert!(!verify(&other_secret, &message, &sig));
        }

        #[test]
        fn channel_auth_round_trips(a in 0u32.., b in 0u32.., channel in "private-[a-z]{1,20}", data in proptest::option::of("[ -~]{0,40}")) {
            let socket_id = format!("{}.{}", a, b);
            let token = channel_auth(KEY, SECRET, &socket_id, &channel, data.as_deref());
            let s = channel_string_to_sign(&socket_id, &channel, data.as_deref());
            prop_assert_eq!(verify_auth_token(KEY, SECRET, &token, &s), Ok(()));
        }
    }
}
