//! [`KVTable`]: a string map, the answer to GET_KVLIST_BY_NAMESPACE and to
//! REGISTER_BROKER, and the body of GET_BROKER_RUNTIME_INFO.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::body::lenient;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KVTable {
    #[serde(deserialize_with = "lenient::null_default")]
    pub table: HashMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let mut t = KVTable::default();
        t.table.insert("k".into(), "v".into());
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"table":{"k":"v"}}"#);
        assert_eq!(
            serde_json::from_str::<KVTable>("{}").unwrap(),
            KVTable::default()
        );
    }
}
