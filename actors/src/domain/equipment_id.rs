//! The equipment id: `^[a-zA-Z0-9]{6,}$`, checked as a whole.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest id accepted: long enough for any serial number, short enough to bound logs and keys.
const MAX_LEN: usize = 128;

/// A valid equipment id. Only [`EquipmentId::parse`] builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EquipmentId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("equipment id must be at least 6 ASCII letters or digits")]
pub struct InvalidEquipmentId;

impl EquipmentId {
    pub fn parse(raw: &str) -> Result<Self, InvalidEquipmentId> {
        let valid = (6..=MAX_LEN).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric());
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidEquipmentId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EquipmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EquipmentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        EquipmentId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_six_or_more_letters_and_digits() {
        for ok in ["abc123", "ABCDEF", "a1b2c3d4e5f6", "000000"] {
            assert_eq!(EquipmentId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_short_punctuated_or_encoded_ids() {
        for bad in [
            "",
            "abc12",
            "abc-123",
            "abc_123",
            "abc123\n",
            "abc%0A123",
            "abc 123",
            "ábc1234",
        ] {
            assert_eq!(EquipmentId::parse(bad), Err(InvalidEquipmentId), "{bad:?}");
        }
        assert!(EquipmentId::parse(&"a".repeat(MAX_LEN + 1)).is_err());
    }
}
