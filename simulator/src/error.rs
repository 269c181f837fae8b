//! The one error type of the simulator.

use shadowattn_hal::HalError;
use thiserror::Error;

/// Result alias for the simulator.
pub type Result<T, E = SimError> = std::result::Result<T, E>;

/// Everything that can go wrong in the simulator.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// A SoC profile that cannot be used; names the file, the key and the line.
    #[error("{file}:{line}: `{key}`: {detail}")]
    Profile {
        /// The profile file (or built-in name).
        file: String,
        /// 1-based line of the offending key (0 when unknown).
        line: usize,
        /// The key, as a dotted path.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A profile file that cannot be read.
    #[error("cannot read SoC profile {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A SoC name that is not a built-in profile.
    #[error("unknown SoC profile `{name}`; built in: {known}")]
    UnknownSoc {
        /// The name asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// A CPU placement that the SoC's clusters cannot run.
    #[error("CPU placement: {0}")]
    Placement(String),
    /// A step the profile has no price for.
    #[error("not priced: {0}")]
    Unpriced(String),
    /// A launch path name that is not one of the simulator's.
    #[error("unknown launch path `{name}`; known: {known}")]
    UnknownLaunchPath {
        /// The name asked for.
        name: String,
        /// The known names.
        known: String,
    },
    /// A model name that is not a built-in shape.
    #[error("unknown model shape `{name}`; built in: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// A fit of a profile to vendor estimates that cannot be made.
    #[error("cannot fit the profile: {0}")]
    Fit(String),
    /// A profile that cannot be written.
    #[error("cannot write the profile: {0}")]
    ProfileEdit(String),
    /// A profile without a number an edit of it sets (or reads).
    #[error("{file}: no `{key}` (a `{{ value, source }}` number)")]
    MissingKey {
        /// The profile file (or built-in name).
        file: String,
        /// The dotted key.
        key: String,
    },
    /// A HAL error (graph validation, buffers, …).
    #[error(transparent)]
    Hal(#[from] HalError),
    /// A schedule or stage description that is inconsistent.
    #[error("invalid schedule: {0}")]
    Schedule(String),
    /// A token count past the model's context length: the argument that asked for it, the
    /// value, the limit and where the limit comes from.
    #[error(
        "{argument} {value} is past the context length of {model}: {limit} tokens (from {origin})"
    )]
    PastContext {
        /// What asked for the tokens (a command-line option or a field).
        argument: String,
        /// The tokens asked for.
        value: usize,
        /// The model.
        model: String,
        /// The model's context length.
        limit: usize,
        /// Where the limit comes from.
        origin: String,
    },
    /// An attention shape that cannot be priced (zero sizes, heads that do not group, a chunk
    /// that does not fit the NPU's on-chip memory).
    #[error("cannot price attention: {0}")]
    Shape(String),
}

/// The checks every attention shape shares: each size at least 1, and query heads that group
/// evenly over the KV heads.
pub(crate) fn check_attention_sizes(
    sizes: &[(&str, usize)],
    q_heads: usize,
    kv_heads: usize,
) -> Result<()> {
    if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
        return Err(SimError::Shape(format!("{name} must be at least 1")));
    }
    if kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        return Err(SimError::Shape(format!(
            "{q_heads} query heads cannot be grouped over {kv_heads} KV heads"
        )));
    }
    Ok(())
}
