//! Result codes as `Result`s, for the call wrappers and the loader alike.

use super::types::ResultCode;
use crate::error::{NeuronError, Result};

/// A result code as a `Result`: 0 is success, anything else a [`NeuronError::Call`] naming it.
pub(crate) fn check(call: &'static str, rc: i32) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(NeuronError::Call {
            call,
            code: rc,
            name: ResultCode(rc).name(),
        })
    }
}
