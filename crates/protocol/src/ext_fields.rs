//! [`ExtFields`]: the string-to-string map of a command's header.
//!
//! A request carries a dozen short fields, read a few times each and then
//! dropped. A map of owned strings costs two allocations per field (and a
//! cache miss for each when the memory comes back); this one keeps every key
//! and value in one string, back to back, with their places in a small
//! vector, so decoding a header allocates twice whatever its size. Lookups
//! scan the fields, which for a dozen short keys is faster than hashing.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::ops::Range;

/// The ext fields of a [`crate::RemotingCommand`]: each key at most once.
#[derive(Clone, Default)]
pub struct ExtFields {
    /// Every key and value, back to back (and values since replaced, until
    /// the next compaction).
    text: String,
    /// Where each field's key and value are in `text`, in the order they
    /// were added.
    fields: Vec<Field>,
}

#[derive(Clone)]
struct Field {
    key: Range<usize>,
    value: Range<usize>,
}

/// Past this many fields a decoded header finds repeated keys with a hash
/// map rather than by comparing with every field kept so far.
const SMALL: usize = 16;

impl ExtFields {
    /// No fields.
    pub fn new() -> Self {
        ExtFields::default()
    }

    /// Room for `fields` fields of `bytes` bytes of keys and values.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        ExtFields {
            text: String::with_capacity(bytes),
            fields: Vec::with_capacity(fields),
        }
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn key(&self, f: &Field) -> &str {
        &self.text[f.key.clone()]
    }

    fn value(&self, f: &Field) -> &str {
        &self.text[f.value.clone()]
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.fields.iter().position(|f| self.key(f) == key)
    }

    /// The value of `key`, exactly as sent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.value(&self.fields[i]))
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: &str, value: &str) {
        let value = self.push_text(value);
        self.set(key, value);
    }

    /// Sets `key` to `value` as it displays, written in place (a number
    /// allocates nothing of its own).
    pub fn insert_display(&mut self, key: &str, value: impl fmt::Display) {
        let value = self.push_display(value);
        self.set(key, value);
    }

    /// Points `key` at `value`, already in `text`.
    fn set(&mut self, key: &str, value: Range<usize>) {
        match self.position(key) {
            Some(i) => {
                self.fields[i].value = value;
                self.compact_if_sparse();
            }
            None => {
                let key = self.push_text(key);
                self.fields.push(Field { key, value });
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.position(key)?;
        let f = self.fields.remove(i);
        let value = self.value(&f).to_string();
        self.compact_if_sparse();
        Some(value)
    }

    /// Every field as (key, value), in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|f| (self.key(f), self.value(f)))
    }

    /// Every field sorted by key: the order both header encodings write.
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        let mut all: Vec<(&str, &str)> = self.iter().collect();
        all.sort_unstable();
        all
    }

    fn push_text(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    fn push_display(&mut self, value: impl fmt::Display) -> Range<usize> {
        let start = self.text.len();
        // Writing into a String cannot fail.
        let _ = write!(self.text, "{value}");
        start..self.text.len()
    }

    /// Appends a field as a decoder reads it, without looking for an
    /// earlier one of the same key; [`ExtFields::decoded`] settles repeats.
    pub(crate) fn push_decoded(&mut self, key: &str, value: &str) {
        let key = self.push_text(key);
        let value = self.push_text(value);
        self.fields.push(Field { key, value });
    }

    /// [`ExtFields::push_decoded`] of a value written as it displays.
    pub(crate) fn push_decoded_display(&mut self, key: &str, value: impl fmt::Display) {
        let key = self.push_text(key);
        let value = self.push_display(value);
        self.fields.push(Field { key, value });
    }

    /// After decoding: of fields sent with the same key, the last one
    /// stands (as in Java's map), in the place of the first. One pass that
    /// keeps the first of each key at the front; an earlier one is found by
    /// scanning the few kept so far, or, in a header of many fields, by a
    /// hash map, so a huge one costs n, not n².
    pub(crate) fn decoded(mut self) -> Self {
        let text = &self.text;
        let fields = &mut self.fields;
        let many = fields.len() > SMALL;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut kept = 0;
        for i in 0..fields.len() {
            let key = &text[fields[i].key.clone()];
            let earlier = if many {
                seen.get(key).copied()
            } else {
                (0..kept).find(|&j| &text[fields[j].key.clone()] == key)
            };
            match earlier {
                Some(j) => fields[j].value = fields[i].value.clone(),
                None => {
                    // Everything in kept..i is a repeat already settled.
                    fields.swap(kept, i);
                    if many {
                        seen.insert(key, kept);
                    }
                    kept += 1;
                }
            }
        }
        fields.truncate(kept);
        self
    }

    /// Rewrites `text` once most of it is values since replaced or
    /// removed, so a map edited over and over stays small.
    fn compact_if_sparse(&mut self) {
        let live: usize = self
            .fields
            .iter()
            .map(|f| f.key.len() + f.value.len())
            .sum();
        if self.text.len() <= 2 * live + 256 {
            return;
        }
        let mut text = String::with_capacity(live);
        for f in &mut self.fields {
            let key_start = text.len();
            text.push_str(&self.text[f.key.clone()]);
            let value_start = text.len();
            text.push_str(&self.text[f.value.clone()]);
            f.key = key_start..value_start;
            f.value = value_start..text.len();
        }
        self.text = text;
    }
}

impl PartialEq for ExtFields {
    /// The same fields, in any order.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for ExtFields {}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.sorted()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut out = ExtFields::new();
        out.extend(iter);
        out
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for ExtFields {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k.as_ref(), v.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_replace_remove() {
        let mut f = ExtFields::new();
        f.insert("topic", "orders");
        f.insert_display("queueId", 3);
        f.insert("topic", "payments");
        assert_eq!(f.len(), 2);
        assert_eq!(f.get("topic"), Some("payments"));
        assert_eq!(f.get("queueId"), Some("3"));
        assert_eq!(f.get("queue"), None);
        assert_eq!(f.remove("topic").as_deref(), Some("payments"));
        assert_eq!(f.remove("topic"), None);
        assert_eq!(f.iter().collect::<Vec<_>>(), vec![("queueId", "3")]);
    }

    #[test]
    fn a_value_replaced_many_times_keeps_the_text_small() {
        let mut f = ExtFields::new();
        f.insert("a", "1");
        for i in 0..100_000 {
            f.insert_display("offset", i);
        }
        assert_eq!(f.get("offset"), Some("99999"));
        assert_eq!(f.get("a"), Some("1"));
        assert!(f.text.len() < 1_024, "{} bytes", f.text.len());
    }

    #[test]
    fn repeated_keys_in_a_decoded_header_keep_the_last_value() {
        for n in [3, SMALL, SMALL + 1, 1_000] {
            let mut f = ExtFields::new();
            for i in 0..n {
                f.push_decoded_display(&format!("k{}", i % 3), i);
            }
            let f = f.decoded();
            assert_eq!(f.len(), 3, "{n} fields");
            for k in 0..3 {
                let last = (0..n).filter(|i| i % 3 == k).max().unwrap();
                assert_eq!(f.get(&format!("k{k}")), Some(last.to_string().as_str()));
            }
            // In the order the keys first came.
            let keys: Vec<&str> = f.iter().map(|(k, _)| k).collect();
            assert_eq!(keys, vec!["k0", "k1", "k2"]);
        }
    }

    #[test]
    fn equal_whatever_the_order() {
        let a: ExtFields = [("x", "1"), ("y", "2")].into_iter().collect();
        let b: ExtFields = [("y", "2"), ("x", "1")].into_iter().collect();
        let c: ExtFields = [("y", "2"), ("x", "3")].into_iter().collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(format!("{a:?}"), r#"{"x": "1", "y": "2"}"#);
    }
}
