//! Templates and matchers of the transcript format: `{{placeholder}}` substitution in what is
//! sent, and structural matching (with `{{any…}}`, `$json`, `$any`, `$message` and `$poxide`)
//! of what is received. Whether poxide's own choices are checked is the bindings' `strict`.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use super::transcript::{SignChannelInput, SignUserInput};
use crate::signature;

/// What placeholders resolve to in one scenario run.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    /// `app_id`, `key`, `secret`, `app2_id`, `key2`, `secret2`.
    pub credentials: HashMap<&'static str, String>,
    pub socket_ids: HashMap<String, String>,
    pub vars: HashMap<String, String>,
    /// What `{{ns}}` becomes: empty in-process, a per-scenario prefix against a shared server,
    /// so that scenarios running at once never meet on a channel or a user id.
    pub ns: String,
    /// Check `$message` texts and `$poxide` values exactly (otherwise: a non-empty string, and
    /// anything).
    pub strict: bool,
}

enum Piece<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("unclosed placeholder in {template:?}"))?;
        if start > 0 {
            out.push(Piece::Literal(&rest[..start]));
        }
        out.push(Piece::Placeholder(&rest[start + 2..start + end]));
        rest = &rest[start + end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest));
    }
    Ok(out)
}

const MATCHERS: [(&str, &str); 3] = [
    ("any", "(?s:.*?)"),
    ("any_socket_id", r"\d+\.\d+"),
    ("any_int", r"\d+"),
];

impl Bindings {
    fn resolve(&self, name: &str) -> Result<String, String> {
        if let Some(value) = self.credentials.get(name) {
            return Ok(value.clone());
        }
        if name == "ns" {
            return Ok(self.ns.clone());
        }
        if let Some(client) = name.strip_prefix("socket_id:") {
            return self
                .socket_ids
                .get(client)
                .cloned()
                .ok_or_else(|| format!("no socket id known for client {client:?}"));
        }
        if let Some(var) = name.strip_prefix("var:") {
            return self
                .vars
                .get(var)
                .cloned()
                .ok_or_else(|| format!("variable {var:?} is not set"));
        }
        if let Some(spec) = name.strip_prefix("repeat:") {
            let (count, text) = spec
                .split_once(':')
                .ok_or_else(|| format!("bad repeat placeholder {name:?}"))?;
            let count: usize = count
                .parse()
                .map_err(|_| format!("bad repeat count in {name:?}"))?;
            return Ok(text.repeat(count));
        }
        Err(format!("unknown placeholder {{{{{name}}}}}"))
    }

    /// Replaces every placeholder; matchers are not allowed in what is sent.
    pub fn substitute(&self, template: &str) -> Result<String, String> {
        let mut out = String::with_capacity(template.len());
        for piece in pieces(template)? {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Placeholder(name) => out.push_str(&self.resolve(name)?),
            }
        }
        Ok(out)
    }

    /// Applies [`Bindings::substitute`] to every string inside a JSON value.
    pub fn substitute_json(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) => Value::String(self.substitute(s)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.substitute_json(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.substitute_json(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Whether `actual` matches the expected template string.
    pub fn matches_text(&self, template: &str, actual: &str) -> Result<bool, String> {
        let mut pattern = String::from("^");
        for piece in pieces(template)? {
            match piece {
                Piece::Literal(text) => pattern.push_str(&regex::escape(text)),
                Piece::Placeholder(name) => match MATCHERS.iter().find(|(m, _)| *m == name) {
                    Some((_, re)) => pattern.push_str(re),
                    None => pattern.push_str(&regex::escape(&self.resolve(name)?)),
                },
            }
        }
        pattern.push('$');
        let re = Regex::new(&pattern).map_err(|e| format!("bad template {template:?}: {e}"))?;
        Ok(re.is_match(actual))
    }

    /// Structural match; the error names the path of the first difference.
    pub fn match_json(&self, expected: &Value, actual: &Value) -> Result<(), String> {
        self.match_at("$", expected, actual)
    }

    fn match_at(&self, path: &str, expected: &Value, actual: &Value) -> Result<(), String> {
        if is_any(expected) {
            return Ok(());
        }
        if let Some((inner, protocol)) = poxide_choice(expected) {
            return match (self.strict, protocol) {
                (true, _) => self.match_at(path, inner, actual),
                (false, Some(protocol)) => self.match_at(path, protocol, actual),
                (false, None) => Ok(()),
            };
        }
        if let Some(Value::String(kind)) = single(expected, "$type") {
            let is = match kind.as_str() {
                "integer" => actual.is_i64() || actual.is_u64(),
                "number" => actual.is_number(),
                "string" => actual.is_string(),
                "object" => actual.is_object(),
                "array" => actual.is_array(),
                "boolean" => actual.is_boolean(),
                other => return Err(format!("{path}: unknown $type {other:?}")),
            };
            return if is {
                Ok(())
            } else {
                Err(format!("{path}: expected a {kind}, got {actual}"))
            };
        }
        if let Some(Value::Array(items)) = single(expected, "$unordered") {
            let Value::Array(actual_items) = actual else {
                return Err(format!("{path}: expected an array, got {actual}"));
            };
            if items.len() != actual_items.len() {
                return Err(format!(
                    "{path}: expected {} elements, got {}: {actual}",
                    items.len(),
                    actual_items.len()
                ));
            }
            let mut left: Vec<&Value> = actual_items.iter().collect();
            for (i, item) in items.iter().enumerate() {
                let found = left
                    .iter()
                    .position(|a| self.match_at(path, item, a).is_ok())
                    .ok_or_else(|| {
                        format!("{path}: nothing matches element {i} ({item}) in {actual}")
                    })?;
                left.remove(found);
            }
            return Ok(());
        }
        if let Some(inner) = single(expected, "$message") {
            return match actual {
                Value::String(_) if self.strict => self.match_at(path, inner, actual),
                Value::String(text) if !text.is_empty() => Ok(()),
                _ => Err(format!(
                    "{path}: expected a non-empty message, got {actual}"
                )),
            };
        }
        if let Some(inner) = single(expected, "$data") {
            // A string carrying JSON as poxide sends it; unless strict, the value itself too.
            return match actual {
                Value::String(_) => {
                    self.match_at(path, &serde_json::json!({"$json": inner}), actual)
                }
                _ if !self.strict => self.match_at(path, inner, actual),
                _ => Err(format!(
                    "{path}: expected a JSON-encoded string, got {actual}"
                )),
            };
        }
        if single(expected, "$absent") == Some(&Value::Bool(true)) {
            return Err(format!("{path}: expected no such key, got {actual}"));
        }
        if let Some(inner) = json_pattern(expected) {
            let Value::String(text) = actual else {
                return Err(format!(
                    "{path}: expected a JSON-encoded string, got {actual}"
                ));
            };
            let parsed: Value = serde_json::from_str(text)
                .map_err(|e| format!("{path}: string is not JSON ({e}): {text:?}"))?;
            return self.match_at(&format!("{path}<json>"), inner, &parsed);
        }
        match (expected, actual) {
            (Value::Object(exp), Value::Object(act)) => {
                // Keys are templates too (channel names carry `{{ns}}`), without matchers.
                let mut keys = Vec::with_capacity(exp.len());
                for (key, exp_value) in exp {
                    let key = self.substitute(key)?;
                    match act.get(&key) {
                        Some(act_value) => {
                            self.match_at(&format!("{path}.{key}"), exp_value, act_value)?
                        }
                        None if self.may_be_absent(exp_value) => {}
                        None => return Err(format!("{path}: missing key {key:?} in {actual}")),
                    }
                    keys.push(key);
                }
                if let Some(extra) = act.keys().find(|k| !keys.contains(k)) {
                    return Err(format!("{path}: unexpected key {extra:?} in {actual}"));
                }
                Ok(())
            }
            (Value::Array(exp), Value::Array(act)) => {
                if exp.len() != act.len() {
                    return Err(format!(
                        "{path}: expected {} elements, got {}: {actual}",
                        exp.len(),
                        act.len()
                    ));
                }
                for (i, (e, a)) in exp.iter().zip(act).enumerate() {
                    self.match_at(&format!("{path}[{i}]"), e, a)?;
                }
                Ok(())
            }
            (Value::String(template), Value::String(text)) => {
                if self.matches_text(template, text)? {
                    Ok(())
                } else {
                    Err(format!("{path}: expected {template:?}, got {text:?}"))
                }
            }
            (e, a) if e == a => Ok(()),
            (e, a) => Err(format!("{path}: expected {e}, got {a}")),
        }
    }
}

impl Bindings {
    /// What a correct backend answers a `sign_channel` step with: `key:signature`, signed with
    /// the input's secret if it names one.
    pub fn channel_token(
        &self,
        input: &SignChannelInput,
        key: &str,
        secret: &str,
    ) -> Result<String, String> {
        let socket_id = self.substitute(&format!("{{{{socket_id:{}}}}}", input.client))?;
        let channel = self.substitute(&input.channel)?;
        let data = input
            .channel_data
            .as_deref()
            .map(|d| self.substitute(d))
            .transpose()?;
        let secret = input.secret.as_deref().unwrap_or(secret);
        Ok(signature::channel_auth(
            key,
            secret,
            &socket_id,
            &channel,
            data.as_deref(),
        ))
    }

    /// Likewise for a `sign_user` step.
    pub fn user_token(
        &self,
        input: &SignUserInput,
        key: &str,
        secret: &str,
    ) -> Result<String, String> {
        let socket_id = self.substitute(&format!("{{{{socket_id:{}}}}}", input.client))?;
        let data = self.substitute(&input.user_data)?;
        let secret = input.secret.as_deref().unwrap_or(secret);
        Ok(signature::user_auth(key, secret, &socket_id, &data))
    }

    /// Whether an object member whose expected value is this may be missing altogether.
    fn may_be_absent(&self, expected: &Value) -> bool {
        if let Some((inner, protocol)) = poxide_choice(expected) {
            return match (self.strict, protocol) {
                (true, _) => self.may_be_absent(inner),
                (false, Some(protocol)) => self.may_be_absent(protocol),
                (false, None) => true,
            };
        }
        is_any(expected) || single(expected, "$absent") == Some(&Value::Bool(true))
    }
}

fn is_any(value: &Value) -> bool {
    single(value, "$any") == Some(&Value::Bool(true))
}

fn json_pattern(value: &Value) -> Option<&Value> {
    single(value, "$json")
}

/// `{"$poxide": V}` or `{"$poxide": V, "$protocol": P}`: poxide's choice V, and what the
/// protocol requires instead (anything, when absent).
fn poxide_choice(value: &Value) -> Option<(&Value, Option<&Value>)> {
    match value {
        Value::Object(m) if m.len() == 1 => m.get("$poxide").map(|v| (v, None)),
        Value::Object(m) if m.len() == 2 => Some((m.get("$poxide")?, Some(m.get("$protocol")?))),
        _ => None,
    }
}

/// The value of a one-member object `{"<marker>": value}`.
fn single<'a>(value: &'a Value, marker: &str) -> Option<&'a Value> {
    match value {
        Value::Object(m) if m.len() == 1 => m.get(marker),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bindings() -> Bindings {
        let mut b = Bindings::default();
        b.credentials.insert("key", "app_key".into());
        b.socket_ids.insert("alice".into(), "1.2".into());
        b
    }

    #[test]
    fn substitutes_placeholders() {
        let b = bindings();
        assert_eq!(b.substitute("/app/{{key}}?x").unwrap(), "/app/app_key?x");
        assert_eq!(b.substitute("{{socket_id:alice}}:c").unwrap(), "1.2:c");
        assert_eq!(b.substitute("{{repeat:3:ab}}").unwrap(), "ababab");
        assert!(b.substitute("{{socket_id:bob}}").is_err());
        assert!(b.substitute("{{any}}").is_err());
    }

    #[test]
    fn matches_structurally() {
        let b = bindings();
        let expected =
            json!({"event": "e", "data": {"$json": {"socket_id": "{{any_socket_id}}", "n": 1}}});
        assert!(b
            .match_json(
                &expected,
                &json!({"event": "e", "data": "{\"socket_id\":\"3.4\",\"n\":1}"})
            )
            .is_ok());
        // An object where a string-encoded one is expected fails.
        assert!(b
            .match_json(
                &expected,
                &json!({"event": "e", "data": {"socket_id": "3.4", "n": 1}})
            )
            .is_err());
        // Extra and missing keys fail.
        assert!(b
            .match_json(&json!({"a": 1}), &json!({"a": 1, "b": 2}))
            .is_err());
        assert!(b
            .match_json(&json!({"a": 1, "b": 2}), &json!({"a": 1}))
            .is_err());
        assert!(b
            .match_json(&json!({"a": 1, "b": {"$any": true}}), &json!({"a": 1}))
            .is_ok());
        assert!(b.match_json(&json!("x{{any}}z"), &json!("x.*z")).is_ok());
        assert!(b
            .match_json(&json!("{{socket_id:alice}}"), &json!("1.2"))
            .is_ok());
        assert!(b
            .match_json(&json!("{{socket_id:alice}}"), &json!("1x2"))
            .is_err());
        assert!(b.match_json(&json!([1, 2]), &json!([1])).is_err());
    }

    #[test]
    fn poxide_choices_are_checked_only_when_strict() {
        let mut b = bindings();
        let expected =
            json!({"message": {"$message": "Exact {{any_int}} words"}, "code": {"$poxide": 4301}});
        let reworded = json!({"message": "Other words", "code": 4300});
        let empty = json!({"message": "", "code": 4301});
        let exact = json!({"message": "Exact 7 words", "code": 4301});
        assert!(b.match_json(&expected, &reworded).is_ok());
        assert!(b.match_json(&expected, &json!({"message": "x"})).is_ok());
        assert!(b.match_json(&expected, &empty).is_err());
        assert!(b
            .match_json(&expected, &json!({"message": 5, "code": 4301}))
            .is_err());
        b.strict = true;
        assert!(b.match_json(&expected, &exact).is_ok());
        assert!(b.match_json(&expected, &reworded).is_err());
        assert!(b
            .match_json(&expected, &json!({"message": "Exact 7 words"}))
            .is_err());
    }

    #[test]
    fn data_may_be_an_object_and_keys_may_be_required_absent_unless_strict() {
        let mut b = bindings();
        let expected =
            json!({"data": {"$data": {"n": 1}}, "extra": {"$poxide": {"$absent": true}}});
        let encoded = json!({"data": "{\"n\":1}"});
        let object = json!({"data": {"n": 1}});
        let with_extra = json!({"data": "{\"n\":1}", "extra": {}});
        assert!(b.match_json(&expected, &encoded).is_ok());
        assert!(b.match_json(&expected, &object).is_ok());
        assert!(b.match_json(&expected, &with_extra).is_ok());
        assert!(b
            .match_json(&expected, &json!({"data": "{\"n\":2}"}))
            .is_err());
        b.strict = true;
        assert!(b.match_json(&expected, &encoded).is_ok());
        assert!(b.match_json(&expected, &object).is_err());
        assert!(b.match_json(&expected, &with_extra).is_err());
    }

    #[test]
    fn a_protocol_rule_may_stand_in_for_poxide_choice() {
        let mut b = bindings();
        let expected = json!({
            "timeout": {"$poxide": 120, "$protocol": {"$type": "integer"}},
            "ids": {"$poxide": ["a", "b"], "$protocol": {"$unordered": ["a", "b"]}}
        });
        assert!(b
            .match_json(&expected, &json!({"timeout": 30, "ids": ["b", "a"]}))
            .is_ok());
        assert!(b
            .match_json(&expected, &json!({"timeout": "30", "ids": ["b", "a"]}))
            .is_err());
        assert!(b
            .match_json(&expected, &json!({"ids": ["b", "a"]}))
            .is_err());
        assert!(b
            .match_json(&expected, &json!({"timeout": 30, "ids": ["b", "b"]}))
            .is_err());
        b.strict = true;
        assert!(b
            .match_json(&expected, &json!({"timeout": 120, "ids": ["a", "b"]}))
            .is_ok());
        assert!(b
            .match_json(&expected, &json!({"timeout": 120, "ids": ["b", "a"]}))
            .is_err());
        assert!(b
            .match_json(&expected, &json!({"timeout": 30, "ids": ["a", "b"]}))
            .is_err());
    }

    #[test]
    fn keys_and_values_carry_the_namespace() {
        let mut b = bindings();
        b.ns = "q7-".into();
        assert_eq!(
            b.substitute("presence-{{ns}}room").unwrap(),
            "presence-q7-room"
        );
        let expected = json!({"channels": {"presence-{{ns}}room": {}}});
        assert!(b
            .match_json(&expected, &json!({"channels": {"presence-q7-room": {}}}))
            .is_ok());
        assert!(b
            .match_json(&expected, &json!({"channels": {"presence-room": {}}}))
            .is_err());
        assert!(b
            .match_json(
                &expected,
                &json!({"channels": {"presence-q7-room": {}, "presence-x": {}}})
            )
            .is_err());
    }
}
