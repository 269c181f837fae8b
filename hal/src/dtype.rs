//! Element data types and the Rust types that carry them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE-754 binary32.
    F32,
    /// IEEE-754 binary16.
    F16,
    /// Signed 8-bit integer (quantized or raw).
    I8,
    /// Unsigned 8-bit integer (quantized or raw).
    U8,
    /// Signed 16-bit integer (quantized or raw).
    I16,
    /// Unsigned 16-bit integer (quantized or raw).
    U16,
    /// Signed 32-bit integer (accumulators, indices).
    I32,
}

impl DType {
    /// Every data type, in declaration order.
    pub const ALL: [DType; 7] = [
        DType::F32,
        DType::F16,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
    ];

    /// Size of one element in bytes.
    pub const fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }

    /// Whether this is an integer type.
    pub const fn is_integer(self) -> bool {
        !self.is_float()
    }

    /// Whether values of this type may carry quantization parameters (all integers; i32 only with zero point 0).
    pub const fn is_quantizable(self) -> bool {
        self.is_integer()
    }

    /// Whether this is an 8- or 16-bit integer, the types quantized activations are stored in.
    pub const fn is_narrow_integer(self) -> bool {
        matches!(self, DType::I8 | DType::U8 | DType::I16 | DType::U16)
    }

    /// Inclusive integer range of this type, or `None` for floats.
    pub const fn int_range(self) -> Option<(i64, i64)> {
        match self {
            DType::I8 => Some((i8::MIN as i64, i8::MAX as i64)),
            DType::U8 => Some((0, u8::MAX as i64)),
            DType::I16 => Some((i16::MIN as i64, i16::MAX as i64)),
            DType::U16 => Some((0, u16::MAX as i64)),
            DType::I32 => Some((i32::MIN as i64, i32::MAX as i64)),
            DType::F32 | DType::F16 => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::I32 => "i32",
        };
        f.write_str(s)
    }
}

/// A Rust type that stores elements of one [`DType`].
pub trait Element: bytemuck::Pod + Send + Sync + fmt::Debug + 'static {
    /// The data type this Rust type represents.
    const DTYPE: DType;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {
        $(impl Element for $t { const DTYPE: DType = DType::$d; })*
    };
}

element!(f32 => F32, half::f16 => F16, i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_rust_types() {
        assert_eq!(DType::F32.size_bytes(), std::mem::size_of::<f32>());
        assert_eq!(DType::F16.size_bytes(), std::mem::size_of::<half::f16>());
        assert_eq!(DType::I8.size_bytes(), 1);
        assert_eq!(DType::U16.size_bytes(), 2);
        assert_eq!(DType::I32.size_bytes(), 4);
    }

    #[test]
    fn ranges_and_classes() {
        assert_eq!(DType::I8.int_range(), Some((-128, 127)));
        assert_eq!(DType::U16.int_range(), Some((0, 65535)));
        assert_eq!(DType::F16.int_range(), None);
        assert!(DType::U8.is_quantizable());
        assert!(!DType::I32.is_narrow_integer() && DType::I32.is_quantizable());
        assert!(DType::F16.is_float() && !DType::F16.is_integer());
        assert_eq!(DType::I16.to_string(), "i16");
    }
}
