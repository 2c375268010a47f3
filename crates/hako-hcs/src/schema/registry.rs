//! `RegistryChanges`: registry values HCS sets inside a container or utility VM at start.

use serde::{Deserialize, Serialize};

use super::is_default;

/// `RegistryChanges{AddValues, DeleteKeys}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegistryChanges {
    /// Values to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_values: Vec<RegistryValue>,
    /// Keys to delete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delete_keys: Vec<RegistryKey>,
}

/// A registry hive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryHive {
    /// HKLM\SYSTEM.
    System,
    /// HKLM\SOFTWARE.
    Software,
    /// HKLM\SECURITY.
    Security,
    /// HKLM\SAM.
    Sam,
}

/// `RegistryKey{Hive, Name, Volatile}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryKey {
    /// The hive.
    pub hive: RegistryHive,
    /// The key path below the hive.
    pub name: String,
    /// A volatile key.
    #[serde(default, skip_serializing_if = "is_default")]
    pub volatile: bool,
}

/// A registry value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryValueType {
    /// REG_NONE.
    None,
    /// REG_SZ.
    String,
    /// REG_EXPAND_SZ.
    ExpandedString,
    /// REG_MULTI_SZ.
    MultiString,
    /// REG_BINARY.
    Binary,
    /// REG_DWORD.
    DWord,
    /// REG_QWORD.
    QWord,
    /// A custom type.
    CustomType,
}

/// `RegistryValue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryValue {
    /// The key holding the value.
    pub key: RegistryKey,
    /// The value name.
    pub name: String,
    /// The value type.
    #[serde(rename = "Type")]
    pub value_type: RegistryValueType,
    /// The data of a string value.
    #[serde(default, skip_serializing_if = "is_default")]
    pub string_value: String,
    /// The data of a binary value (base64).
    #[serde(default, skip_serializing_if = "is_default")]
    pub binary_value: String,
    /// The data of a DWORD value.
    #[serde(default, skip_serializing_if = "is_default")]
    pub d_word_value: u32,
    /// The data of a QWORD value.
    #[serde(default, skip_serializing_if = "is_default")]
    pub q_word_value: u64,
}
