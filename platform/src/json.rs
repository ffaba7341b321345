//! JSON request bodies read the way their OpenAPI schema describes them.

use serde_json::Value;

/// Turns whole-number floats (`2.0`) into integers throughout `v`. JSON Schema — so
/// the OpenAPI document, and every client generated from it — counts `2.0` as an
/// integer; serde does not, and a body the document allows (`{"quantity": 2.0}`) was
/// refused as malformed. Fractions stay floats and are refused where an integer is
/// wanted, as before.
pub fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Beyond 2^53 a float no longer names one integer.
            if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                *v = if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// A body as the type `T`, read the way its schema describes it ([`whole_numbers`]);
/// refused with the one sentence every API of ours gives for a body of the wrong shape
/// (axum's own wording, so clients see the same text as for axum's rejections).
pub fn read<T: serde::de::DeserializeOwned>(mut body: Value) -> Result<T, String> {
    whole_numbers(&mut body);
    serde_json::from_value(body)
        .map_err(|e| format!("Failed to deserialize the JSON body into the target type: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn whole_floats_become_integers_and_fractions_stay() {
        let mut v = json!({"a": 2.0, "b": [-3.0, 1.5], "c": {"d": 0.0, "e": "2.0"}, "f": 1e300});
        whole_numbers(&mut v);
        assert_eq!(
            v,
            json!({"a": 2, "b": [-3, 1.5], "c": {"d": 0, "e": "2.0"}, "f": 1e300})
        );
        assert!(v["a"].is_u64() && v["b"][0].is_i64());
    }

    #[test]
    fn a_body_is_read_with_whole_floats_or_refused_in_one_sentence() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            #[allow(dead_code)]
            quantity: u32,
        }
        assert!(read::<Body>(json!({"quantity": 2.0})).is_ok());
        let refused = read::<Body>(json!({"quantity": 2.5})).unwrap_err();
        assert!(
            refused.starts_with("Failed to deserialize the JSON body into the target type: "),
            "{refused}"
        );
    }
}
