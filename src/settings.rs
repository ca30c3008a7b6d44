//! Typed key/value settings with a fixed table of valid keys: the engine behind the C params
//! objects (`duet_params_set_int(p, "num_beams", 4)`), the CLI's `--set KEY=VALUE` and JSON files.
//! Unknown keys are rejected with the list of valid ones; values are checked when they are set.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    IntList(Vec<i64>),
    /// Token sequences (`bad_words_ids`).
    IntLists(Vec<Vec<i64>>),
    StrList(Vec<String>),
}

/// The type a key accepts. `BoolOrStr` takes a bool or one of the listed words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Int,
    Float,
    Bool,
    Str,
    IntList,
    /// A list of integer lists, as JSON (`[[5, 6], [7]]`); a flat list (`[5, 7]` or `5,7`) is one
    /// single-integer list per item.
    IntLists,
    StrList,
    BoolOrWord(&'static [&'static str]),
}

/// One valid key: its name, type, a range check and one line of help.
#[derive(Clone, Copy)]
pub struct Spec {
    pub key: &'static str,
    pub kind: Kind,
    pub check: fn(&Value) -> Result<(), String>,
    /// The value when the key is not set, where it is one fixed value (written here only, shown
    /// by `duet params`); `None` where it depends on the model or is described in `help`.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

pub fn any(_: &Value) -> Result<(), String> {
    Ok(())
}

#[derive(Clone)]
pub struct Settings {
    specs: &'static [Spec],
    values: BTreeMap<&'static str, Value>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.values.iter()).finish()
    }
}

impl Settings {
    pub fn new(specs: &'static [Spec]) -> Self {
        Self { specs, values: BTreeMap::new() }
    }

    pub fn specs(&self) -> &'static [Spec] {
        self.specs
    }

    fn spec(&self, key: &str) -> Result<&'static Spec> {
        self.specs.iter().find(|s| s.key == key).ok_or_else(|| Error::UnknownParam {
            key: key.to_string(),
            valid: self.specs.iter().map(|s| s.key).collect::<Vec<_>>().join(", "),
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    pub fn unset(&mut self, key: &str) -> Result<()> {
        let spec = self.spec(key)?;
        self.values.remove(spec.key);
        Ok(())
    }

    /// Settings of `over` replace those of `self`.
    pub fn overlaid(&self, over: &Settings) -> Settings {
        let mut out = self.clone();
        out.values.extend(over.values.iter().map(|(k, v)| (*k, v.clone())));
        out
    }

    fn store(&mut self, spec: &'static Spec, value: Value) -> Result<()> {
        (spec.check)(&value).map_err(|reason| Error::invalid_param(spec.key, reason))?;
        self.values.insert(spec.key, value);
        Ok(())
    }

    pub fn set_int(&mut self, key: &str, v: i64) -> Result<()> {
        let spec = self.spec(key)?;
        let value = match spec.kind {
            Kind::Int => Value::Int(v),
            Kind::Float => Value::Float(v as f64),
            Kind::Bool | Kind::BoolOrWord(_) if v == 0 || v == 1 => Value::Bool(v == 1),
            Kind::IntList => Value::IntList(vec![v]),
            Kind::IntLists => Value::IntLists(vec![vec![v]]),
            _ => return Err(type_error(spec, "an integer")),
        };
        self.store(spec, value)
    }

    pub fn set_float(&mut self, key: &str, v: f64) -> Result<()> {
        let spec = self.spec(key)?;
        let value = match spec.kind {
            Kind::Float => Value::Float(v),
            Kind::Int if v.fract() == 0.0 && v.is_finite() && v.abs() < 9.0e15 => Value::Int(v as i64),
            _ => return Err(type_error(spec, "a number")),
        };
        self.store(spec, value)
    }

    pub fn set_bool(&mut self, key: &str, v: bool) -> Result<()> {
        let spec = self.spec(key)?;
        match spec.kind {
            Kind::Bool | Kind::BoolOrWord(_) => self.store(spec, Value::Bool(v)),
            _ => Err(type_error(spec, "a boolean")),
        }
    }

    /// Sets any key from text, as the CLI's `--set` and configuration strings do: numbers,
    /// `true`/`false`, comma-separated or JSON lists.
    pub fn set_str(&mut self, key: &str, text: &str) -> Result<()> {
        let spec = self.spec(key)?;
        let t = text.trim();
        let bad = |what: &str| Error::invalid_param(spec.key, format!("expected {what}, got `{text}`"));
        let value = match spec.kind {
            Kind::Int => Value::Int(t.parse().map_err(|_| bad("an integer"))?),
            Kind::Float => Value::Float(t.parse().map_err(|_| bad("a number"))?),
            Kind::Bool => Value::Bool(parse_bool(t).ok_or_else(|| bad("true or false"))?),
            Kind::BoolOrWord(words) => match parse_bool(t) {
                Some(b) => Value::Bool(b),
                None if words.contains(&t) => Value::Str(t.to_string()),
                None => return Err(bad(&format!("true, false or one of {words:?}"))),
            },
            Kind::Str => Value::Str(text.to_string()),
            Kind::IntList => {
                let inner = t.trim_start_matches('[').trim_end_matches(']');
                let items = inner
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<i64>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| bad("a list of integers"))?;
                Value::IntList(items)
            }
            Kind::IntLists if t.starts_with("[[") || t.starts_with("[ [") || t.contains("[[") => {
                let lists: Vec<Vec<i64>> = serde_json::from_str(t).map_err(|_| bad("a JSON array of integer arrays"))?;
                if lists.iter().any(Vec::is_empty) {
                    return Err(bad("non-empty integer arrays"));
                }
                Value::IntLists(lists)
            }
            Kind::IntLists => {
                let inner = t.trim_start_matches('[').trim_end_matches(']');
                let items = inner
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<i64>().map(|i| vec![i]))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| bad("a list of integers or a JSON array of integer arrays"))?;
                Value::IntLists(items)
            }
            Kind::StrList => {
                if t.starts_with('[') {
                    let items: Vec<String> = serde_json::from_str(t).map_err(|_| bad("a JSON array of strings"))?;
                    Value::StrList(items)
                } else {
                    Value::StrList(vec![text.to_string()])
                }
            }
        };
        self.store(spec, value)
    }

    /// Sets a key from a JSON value (generation_config.json, `--set` from JSON params).
    pub fn set_json(&mut self, key: &str, v: &serde_json::Value) -> Result<()> {
        use serde_json::Value as J;
        match v {
            J::Bool(b) => self.set_bool(key, *b),
            J::Number(n) if n.is_i64() => self.set_int(key, n.as_i64().unwrap_or_default()),
            J::Number(n) => self.set_float(key, n.as_f64().unwrap_or(f64::NAN)),
            J::String(s) => self.set_str(key, s),
            J::Array(_) => self.set_str(key, &v.to_string()),
            J::Null => self.unset(key),
            J::Object(_) => Err(Error::invalid_param(key, "objects are not accepted")),
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.values.get(key) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        match self.values.get(key) {
            Some(Value::Float(v)) => Some(*v),
            Some(Value::Int(v)) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.values.get(key) {
            Some(Value::Bool(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(Value::Str(v)) => Some(v),
            _ => None,
        }
    }

    pub fn int_list(&self, key: &str) -> Option<&[i64]> {
        match self.values.get(key) {
            Some(Value::IntList(v)) => Some(v),
            _ => None,
        }
    }

    pub fn int_lists(&self, key: &str) -> Option<&[Vec<i64>]> {
        match self.values.get(key) {
            Some(Value::IntLists(v)) => Some(v),
            _ => None,
        }
    }

    pub fn str_list(&self, key: &str) -> Option<&[String]> {
        match self.values.get(key) {
            Some(Value::StrList(v)) => Some(v),
            _ => None,
        }
    }
}

fn parse_bool(t: &str) -> Option<bool> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn type_error(spec: &Spec, given: &str) -> Error {
    let expected = match spec.kind {
        Kind::Int => "an integer",
        Kind::Float => "a number",
        Kind::Bool => "a boolean",
        Kind::BoolOrWord(_) => "a boolean or a word",
        Kind::Str => "a string",
        Kind::IntList => "a list of integers",
        Kind::IntLists => "a list of integer lists",
        Kind::StrList => "a list of strings",
    };
    Error::invalid_param(spec.key, format!("expects {expected}, was given {given}"))
}

/// Range checks shared by the spec tables.
pub mod check {
    use super::Value;

    pub fn int_in(v: &Value, lo: i64, hi: i64) -> Result<(), String> {
        match v {
            Value::Int(i) if (lo..=hi).contains(i) => Ok(()),
            Value::Int(i) => Err(format!("{i} is outside [{lo}, {hi}]")),
            _ => Ok(()),
        }
    }

    pub fn finite(v: &Value) -> Result<(), String> {
        match v {
            Value::Float(f) if !f.is_finite() => Err(format!("{f} is not a finite number")),
            _ => Ok(()),
        }
    }

    pub fn positive(v: &Value) -> Result<(), String> {
        finite(v)?;
        match v {
            Value::Float(f) if *f <= 0.0 => Err(format!("{f} must be greater than 0")),
            _ => Ok(()),
        }
    }

    /// A float that stays above 0 as a float32 (the engine's precision): 1e-300 would be 0.
    pub fn positive_f32(v: &Value) -> Result<(), String> {
        positive(v)?;
        match v {
            Value::Float(f) if (*f as f32) <= 0.0 || (*f as f32).is_infinite() => Err(format!("{f} is 0 or infinite in float32")),
            _ => Ok(()),
        }
    }

    /// A thread count: 0 (the runtime's choice) up to the cores this process may use.
    pub fn thread_count(v: &Value) -> Result<(), String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        match v {
            Value::Int(i) if *i > cores => Err(format!("{i} threads on a machine with {cores} usable cores")),
            _ => int_in(v, 0, cores),
        }
    }

    /// A text value must be one of `words`.
    pub fn one_of(v: &Value, words: &[&str]) -> Result<(), String> {
        match v {
            Value::Str(s) if !words.contains(&s.as_str()) => Err(format!("`{s}` is not one of {}", words.join(", "))),
            _ => Ok(()),
        }
    }

    pub fn token_ids(v: &Value) -> Result<(), String> {
        match v {
            Value::Int(i) if *i < 0 => Err(format!("token id {i} is negative")),
            Value::IntList(l) if l.iter().any(|i| *i < 0) => Err("token ids must not be negative".into()),
            Value::IntLists(l) if l.iter().flatten().any(|i| *i < 0) => Err("token ids must not be negative".into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SPECS: &[Spec] = &[
        Spec { key: "n", kind: Kind::Int, check: |v| check::int_in(v, 1, 8), default: None, help: "" },
        Spec { key: "t", kind: Kind::Float, check: check::positive, default: None, help: "" },
        Spec { key: "b", kind: Kind::BoolOrWord(&["never"]), check: any, default: None, help: "" },
        Spec { key: "ids", kind: Kind::IntList, check: check::token_ids, default: None, help: "" },
        Spec { key: "s", kind: Kind::StrList, check: any, default: None, help: "" },
        Spec { key: "seqs", kind: Kind::IntLists, check: check::token_ids, default: None, help: "" },
    ];

    #[test]
    fn unknown_keys_list_the_valid_ones() {
        let mut s = Settings::new(SPECS);
        let e = s.set_int("nope", 1).unwrap_err();
        assert!(matches!(e, Error::UnknownParam { .. }));
        assert!(e.to_string().contains("n, t, b, ids, s"), "{e}");
    }

    #[test]
    fn values_are_checked_and_converted() {
        let mut s = Settings::new(SPECS);
        assert!(s.set_int("n", 0).is_err());
        assert!(s.set_int("n", 9).is_err());
        s.set_int("n", 4).unwrap();
        assert_eq!(s.int("n"), Some(4));
        s.set_int("t", 2).unwrap();
        assert_eq!(s.float("t"), Some(2.0));
        assert!(s.set_float("t", f64::NAN).is_err());
        assert!(s.set_float("t", -1.0).is_err());
        assert!(s.set_float("n", 2.5).is_err());
        assert!(s.set_str("n", "four").is_err());
        s.set_str("b", "never").unwrap();
        assert_eq!(s.str("b"), Some("never"));
        s.set_str("b", "true").unwrap();
        assert_eq!(s.bool("b"), Some(true));
        assert!(s.set_str("b", "sometimes").is_err());
        s.set_str("ids", "[1, 2]").unwrap();
        assert_eq!(s.int_list("ids"), Some(&[1, 2][..]));
        assert!(s.set_str("ids", "1,-2").is_err());
        s.set_str("s", r#"["a","b"]"#).unwrap();
        assert_eq!(s.str_list("s").unwrap().len(), 2);
        s.set_json("n", &serde_json::json!(null)).unwrap();
        assert!(!s.is_set("n"));
        s.set_json("seqs", &serde_json::json!([[5, 6], [7]])).unwrap();
        assert_eq!(s.int_lists("seqs"), Some(&[vec![5, 6], vec![7]][..]));
        s.set_str("seqs", "5, 7").unwrap();
        assert_eq!(s.int_lists("seqs"), Some(&[vec![5], vec![7]][..]));
        s.set_int("seqs", 3).unwrap();
        assert_eq!(s.int_lists("seqs"), Some(&[vec![3]][..]));
        assert!(s.set_str("seqs", "[[1], []]").is_err());
        assert!(s.set_str("seqs", "[[1, -2]]").is_err());
    }
}
