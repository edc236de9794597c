//! Reading the fields of a JSON object body without building a `Value` tree: each field stays
//! the raw JSON text it was sent as until it is read, and a field passed through (an event's
//! `data`) is never parsed at all.

use std::collections::HashMap;

use serde_json::{value::RawValue, Value};

use crate::error::ApiError;

/// A JSON object's fields, borrowed from the body. A repeated key keeps its last value.
pub struct Fields<'a>(HashMap<String, &'a RawValue>);

impl<'a> Fields<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Fields<'a>, ApiError> {
        match serde_json::from_slice(body) {
            Ok(map) => Ok(Fields(map)),
            // Only to say precisely what is wrong.
            Err(e) => Err(match serde_json::from_slice::<Value>(body) {
                Ok(_) => ApiError::InvalidBody("expected a JSON object".into()),
                Err(_) => ApiError::InvalidBody(e.to_string()),
            }),
        }
    }

    /// A field's JSON text; `None` when absent or `null`.
    pub fn raw(&self, field: &str) -> Option<&'a RawValue> {
        self.0.get(field).copied().filter(|raw| raw.get() != "null")
    }

    pub fn string(&self, field: &'static str) -> Result<Option<String>, ApiError> {
        self.raw(field)
            .map(|raw| {
                serde_json::from_str(raw.get())
                    .map_err(|_| ApiError::InvalidBody(format!("\"{field}\" must be a string")))
            })
            .transpose()
    }

    /// `batch`: the items of a batch body, each still raw.
    pub fn batch(&self) -> Result<Vec<&'a RawValue>, ApiError> {
        let raw = self.raw("batch").ok_or(ApiError::MissingField("batch"))?;
        serde_json::from_str(raw.get())
            .map_err(|_| ApiError::InvalidBody("\"batch\" must be an array".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_the_raw_text() {
        let body = br#"{"name":"a\"b","data":"{\"x\":1}","n":null,"k":5,"name":"last"}"#;
        let f = Fields::parse(body).unwrap();
        assert_eq!(f.string("name").unwrap().as_deref(), Some("last"));
        assert_eq!(f.raw("data").unwrap().get(), r#""{\"x\":1}""#);
        assert!(f.raw("n").is_none() && f.raw("missing").is_none());
        assert_eq!(
            f.string("k").unwrap_err(),
            ApiError::InvalidBody("\"k\" must be a string".into())
        );
        assert_eq!(
            Fields::parse(b"[1]").err(),
            Some(ApiError::InvalidBody("expected a JSON object".into()))
        );
        assert!(matches!(
            Fields::parse(b"{").err(),
            Some(ApiError::InvalidBody(_))
        ));
    }
}
