//! The shape of the model a calibration belongs to.

use crate::error::{Result, SparseAttnError};
use serde::{Deserialize, Serialize};

/// Shape of the model a calibration belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Model name (free text, shown in errors).
    pub name: String,
    /// Transformer layers.
    pub layers: usize,
    /// Query heads per layer.
    pub q_heads: usize,
    /// KV heads per layer.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
}

impl ModelShape {
    /// Checks that the numbers describe a model.
    pub fn validate(&self) -> Result<()> {
        for (f, v) in [
            ("layers", self.layers),
            ("q_heads", self.q_heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(SparseAttnError::config(f, "must be at least 1"));
            }
        }
        if !self.q_heads.is_multiple_of(self.kv_heads) {
            return Err(SparseAttnError::config(
                "kv_heads",
                format!(
                    "{} query heads cannot be grouped over {} KV heads",
                    self.q_heads, self.kv_heads
                ),
            ));
        }
        Ok(())
    }
}
