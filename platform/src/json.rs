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
}
